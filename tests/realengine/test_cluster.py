"""The suite's Kubernetes cluster (`scripts/cluster`) behaves as the charts and the Pulumi
kubernetes provider rely on: a real API server, controller manager and scheduler; three nodes
simulated by kwok on which pods become Ready and run-to-completion pods succeed; the default
StorageClass binding claims like K3s's local-path; Pod Security and strict field validation
enforced by the API server itself.

Marker `kube_cluster` (and `docker_engine`, as every real-engine test): skipped without the
cluster on a workstation, failing under CI=true."""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from base64 import b64decode, urlsafe_b64decode
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from catalog.settings import ROOT
from tests.realengine.conftest import Cluster

pytestmark = pytest.mark.kube_cluster

NODES = {"node-1", "node-2", "node-3"}
HELM = ROOT / ".venv" / "bin" / "helm"
T = TypeVar("T")


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of the test's own, deleted afterwards (without waiting)."""
    name = "t-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    cluster.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait", timeout=180)
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false")


def apply(cluster: Cluster, namespace: str, *documents: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-",
                    input=yaml.safe_dump_all(documents))


def pods(cluster: Cluster, namespace: str, selector: str) -> list[dict[str, Any]]:
    return cluster.get("pods", "-n", namespace, "-l", selector)["items"]


def until(what: str, check: Callable[[], T], timeout: float = 60) -> T:
    """Polls `check()` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.5)


def container(name: str = "app", **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "registry.example/app:1",
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}, **extra}


def deployment(name: str, replicas: int, **pod_spec: Any) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [container()], **pod_spec}}}}


def test_three_ready_nodes_of_a_real_control_plane(cluster: Cluster) -> None:
    nodes = cluster.get("nodes")["items"]
    assert {n["metadata"]["name"] for n in nodes} == NODES
    for node in nodes:
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True", node["metadata"]["name"]
        assert node["metadata"]["labels"]["kubernetes.io/hostname"] == node["metadata"]["name"]
        assert node["status"]["allocatable"]["cpu"] == "8"
        assert not node["spec"].get("taints")
    version = json.loads(cluster.kubectl("get", "--raw", "/version").stdout)
    assert re.fullmatch(r"v1\.34\.\d+", version["gitVersion"]), version
    # the control plane's own health checks, and the default StorageClass
    assert "readyz check passed" in cluster.kubectl("get", "--raw", "/readyz?verbose").stdout
    classes = cluster.get("storageclass")["items"]
    default = [c["metadata"]["name"] for c in classes if c["metadata"].get("annotations", {})
               .get("storageclass.kubernetes.io/is-default-class") == "true"]
    assert default == ["local-path"]


def test_a_namespace_gets_its_service_account_and_tokens(cluster: Cluster,
                                                         namespace: str) -> None:
    until("the default ServiceAccount", lambda: cluster.kubectl(
        "get", "serviceaccount", "default", "-n", namespace, check=False).returncode == 0)
    until("the root CA ConfigMap", lambda: cluster.kubectl(
        "get", "configmap", "kube-root-ca.crt", "-n", namespace, check=False).returncode == 0)
    token = cluster.kubectl("create", "token", "default", "-n", namespace).stdout.strip()
    payload = token.split(".")[1]
    claims = json.loads(urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["iss"] == "https://kubernetes.default.svc.cluster.local"
    assert claims["sub"] == f"system:serviceaccount:{namespace}:default"
    # the API server authenticates the token alone (no client certificate), and RBAC denies
    # the ServiceAccount what nobody granted it
    review = api(cluster, token, "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                 {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    assert review["status"]["userInfo"]["username"] == claims["sub"]
    with pytest.raises(urllib.error.HTTPError) as denied:
        api(cluster, token, "GET", f"/api/v1/namespaces/{namespace}/pods")
    assert denied.value.code == 403


def api(cluster: Cluster, token: str, method: str, path: str,
        body: dict[str, Any] | None = None) -> dict[str, Any]:
    """A request to the API server as the bearer of `token`, trusting the cluster's CA."""
    server = yaml.safe_load(cluster.kubeconfig.read_text())["clusters"][0]["cluster"]
    context = ssl.create_default_context(
        cadata=b64decode(server["certificate-authority-data"]).decode())
    request = urllib.request.Request(
        server["server"] + path, method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, context=context, timeout=30) as response:
        return json.loads(response.read())


def test_required_anti_affinity_spreads_replicas_over_nodes(cluster: Cluster,
                                                            namespace: str) -> None:
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
        "labelSelector": {"matchLabels": {"app": "web"}},
        "topologyKey": "kubernetes.io/hostname"}]}}
    apply(cluster, namespace, deployment("web", 2, affinity=anti))
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Available", "deployment/web",
                    "--timeout=60s")
    placed = [p["spec"]["nodeName"] for p in pods(cluster, namespace, "app=web")]
    assert len(placed) == 2 and len(set(placed)) == 2, placed
    # a fourth replica has no node left: the scheduler keeps it Pending
    cluster.kubectl("scale", "-n", namespace, "deployment/web", "--replicas=4")

    def unschedulable() -> list[dict[str, Any]] | None:
        items = pods(cluster, namespace, "app=web")
        pending = [p for p in items if any(
            c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable"
            for c in p["status"].get("conditions", []))]
        running = [p for p in items if p["status"].get("phase") == "Running"]
        return items if len(items) == 4 and len(pending) == 1 and len(running) == 3 else None

    items = until("three replicas running and one unschedulable", unschedulable)
    assert {p["spec"]["nodeName"] for p in items if p["spec"].get("nodeName")} == NODES


def test_a_daemonset_has_one_ready_pod_per_node(cluster: Cluster, namespace: str) -> None:
    labels = {"app": "agent"}
    apply(cluster, namespace, {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels}, "spec": {"containers": [container()]}}}})
    cluster.kubectl("rollout", "status", "-n", namespace, "daemonset/agent", "--timeout=60s")
    status = cluster.get("daemonset", "agent", "-n", namespace)["status"]
    assert status["desiredNumberScheduled"] == status["numberReady"] == 3, status
    items = pods(cluster, namespace, "app=agent")
    assert sorted(p["spec"]["nodeName"] for p in items) == sorted(NODES)
    assert all(c["ready"] for p in items for c in p["status"]["containerStatuses"])


def test_a_claim_of_the_default_class_binds_on_its_first_pods_node(cluster: Cluster,
                                                                   namespace: str) -> None:
    apply(cluster, namespace, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}}})
    claim = cluster.get("pvc", "data", "-n", namespace)
    assert claim["spec"]["storageClassName"] == "local-path"  # the default, set on admission
    time.sleep(2)  # WaitForFirstConsumer, as K3s's local-path: no volume without a pod
    assert cluster.get("pvc", "data", "-n", namespace)["status"]["phase"] == "Pending"
    volume = {"name": "data", "persistentVolumeClaim": {"claimName": "data"}}
    apply(cluster, namespace, deployment("db", 1, volumes=[volume]))
    cluster.kubectl("wait", "-n", namespace, "--for=jsonpath={.status.phase}=Bound", "pvc/data",
                    "--timeout=60s")
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Available", "deployment/db",
                    "--timeout=60s")
    claim = cluster.get("pvc", "data", "-n", namespace)
    pv = cluster.get("pv", claim["spec"]["volumeName"])
    assert pv["spec"]["capacity"]["storage"] == "2Gi"
    assert pv["spec"]["claimRef"]["uid"] == claim["metadata"]["uid"]
    node = pods(cluster, namespace, "app=db")[0]["spec"]["nodeName"]
    term = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
    assert term["key"] == "kubernetes.io/hostname" and term["values"] == [node]
    assert Path(pv["spec"]["hostPath"]["path"]).is_dir()
    # the claim deleted, its volume goes too (reclaim policy Delete)
    cluster.kubectl("delete", "-n", namespace, "deployment/db", "pvc/data", "--wait")
    until("the released volume deleted", lambda: cluster.kubectl(
        "get", "pv", pv["metadata"]["name"], check=False).returncode != 0)


def test_pod_security_restricted_rejects_a_privileged_pod(cluster: Cluster,
                                                         namespace: str) -> None:
    cluster.kubectl("label", "namespace", namespace,
                    "pod-security.kubernetes.io/enforce=restricted")
    privileged = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "privileged"},
                  "spec": {"containers": [container(securityContext={"privileged": True})]}}
    refused = cluster.kubectl("create", "-n", namespace, "-f", "-", check=False,
                              input=json.dumps(privileged))
    assert refused.returncode != 0
    assert 'is forbidden: violates PodSecurity "restricted:latest"' in refused.stderr
    assert "privileged" in refused.stderr
    assert cluster.kubectl("get", "pod", "privileged", "-n", namespace,
                           check=False).returncode != 0
    compliant = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "compliant"}, "spec": {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container(securityContext={
            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}})]}}
    admitted = cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(compliant))
    assert "Warning" not in admitted.stderr
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", "pod/compliant",
                    "--timeout=60s")


def test_strict_field_validation_rejects_an_unknown_field(cluster: Cluster,
                                                          namespace: str) -> None:
    manifest = deployment("strict", 1)
    manifest["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    doc = json.dumps(manifest)
    refused = cluster.kubectl("create", "-n", namespace, "--validate=strict", "-f", "-",
                              input=doc, check=False)
    assert refused.returncode != 0
    assert "Error from server (BadRequest)" in refused.stderr  # the API server's, not kubectl's
    assert 'strict decoding error: unknown field "spec.template.spec.containers[0].' \
           'imagePullPolicyy"' in refused.stderr
    applied = cluster.kubectl("apply", "--server-side", "-n", namespace, "--validate=strict",
                              "-f", "-", input=doc, check=False)
    assert applied.returncode != 0 and "imagePullPolicyy" in applied.stderr
    # the same object with validation off is created (the field dropped): it was the directive
    cluster.kubectl("create", "-n", namespace, "--validate=false", "-f", "-", input=doc)
    spec = cluster.get("deployment", "strict", "-n", namespace)["spec"]["template"]["spec"]
    assert "imagePullPolicyy" not in spec["containers"][0]


def test_jobs_and_test_pods_run_to_completion(cluster: Cluster, namespace: str) -> None:
    once = {"restartPolicy": "Never", "containers": [container()]}
    apply(cluster, namespace,
          {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate"},
           "spec": {"backoffLimit": 0, "template": {"spec": once}}},
          {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "smoke-test"}, "spec": once})
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Complete", "job/migrate",
                    "--timeout=60s")
    cluster.kubectl("wait", "-n", namespace, "--for=jsonpath={.status.phase}=Succeeded",
                    "pod/smoke-test", "--timeout=60s")
    state = cluster.get("pod", "smoke-test", "-n", namespace)["status"]["containerStatuses"][0]
    assert state["state"]["terminated"]["exitCode"] == 0


def test_helm_install_waits_and_helm_test_passes(cluster: Cluster, namespace: str,
                                                 tmp_path: Path) -> None:
    """What a chart's install relies on: `--wait` sees a Deployment available, a StatefulSet
    ready and its claim bound; `helm test` sees its test pod succeed."""
    chart = tmp_path / "smoke"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: smoke\nversion: 0.1.0\n")
    labels = {"app": "db"}
    statefulset = {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
        "spec": {"serviceName": "db", "replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                     container(volumeMounts=[{"name": "data", "mountPath": "/data"}])]}},
                 "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                     "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}}]}}
    test_pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "smoke-test", "annotations": {"helm.sh/hook": "test"}},
        "spec": {"restartPolicy": "Never", "containers": [container()]}}
    for name, doc in {"web": deployment("web", 2), "db": statefulset, "test": test_pod}.items():
        (chart / "templates" / f"{name}.yaml").write_text(yaml.safe_dump(doc))
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig),
           **{f"HELM_{kind}_HOME": str(tmp_path / kind.lower())
              for kind in ("CACHE", "CONFIG", "DATA")}}
    helm = [str(HELM), "--namespace", namespace]
    start = time.monotonic()
    run = subprocess.run([*helm, "install", "smoke", str(chart), "--wait", "--timeout", "2m"],
                         capture_output=True, text=True, env=env, timeout=180)
    assert run.returncode == 0, run.stderr
    assert time.monotonic() - start < 60
    run = subprocess.run([*helm, "test", "smoke", "--timeout", "1m"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "Phase:          Succeeded" in run.stdout
    claim = cluster.get("pvc", "data-db-0", "-n", namespace)
    assert claim["status"]["phase"] == "Bound"
