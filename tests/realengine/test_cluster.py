"""The suite's Kubernetes cluster (`scripts/cluster`) behaves as the charts and the Pulumi
kubernetes provider rely on: a real API server, controller manager and scheduler; real nodes
where pods run (containerd, CNI, kube-proxy, CoreDNS, kube-router), and three nodes simulated
by kwok, tainted so that only scheduling tests go there; the default StorageClass binding
claims with K3s's local-path-provisioner; Pod Security and strict field validation enforced by
the API server itself.

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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from catalog.settings import ROOT
from tests.realengine.conftest import REAL_NODE, Cluster
from tests.realengine.pods import cluster_fact, until

pytestmark = pytest.mark.kube_cluster

SIMULATED = {"kwok-1", "kwok-2", "kwok-3"}  # harness/cluster/bootstrap.yaml
HELM = ROOT / ".venv" / "bin" / "helm"
IMAGE = cluster_fact("HELPER_IMAGE")  # the harness's BusyBox, on every real node


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


def container(name: str = "app", command: tuple[str, ...] = ("sleep", "3600"),
              **extra: Any) -> dict[str, Any]:
    """A container of the harness's BusyBox (real nodes hold it; kwok runs nothing)."""
    return {"name": name, "image": IMAGE, "imagePullPolicy": "Never", "command": list(command),
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}, **extra}


SIMULATED_ONLY = {"nodeSelector": {"type": "kwok"}, "tolerations": [{
    "key": "manacore.dev/simulated", "operator": "Exists", "effect": "NoSchedule"}]}


def real_nodes(cluster: Cluster) -> set[str]:
    return {n["metadata"]["name"] for n in cluster.get("nodes")["items"]
            if REAL_NODE.fullmatch(n["metadata"]["name"])}


def deployment(name: str, replicas: int, **pod_spec: Any) -> dict[str, Any]:
    """A test Deployment; its pods (a shell as PID 1 ignores SIGTERM) are killed at once when
    deleted instead of after the default 30 s grace."""
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [container()],
                                           "terminationGracePeriodSeconds": 0, **pod_spec}}}}


def test_real_and_simulated_nodes_of_a_real_control_plane(cluster: Cluster) -> None:
    nodes = {n["metadata"]["name"]: n for n in cluster.get("nodes")["items"]}
    real = real_nodes(cluster)
    assert len(real) >= 2 and set(nodes) == real | SIMULATED
    for name, node in nodes.items():
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True", name
        assert node["metadata"]["labels"]["kubernetes.io/hostname"] == name
        taints = {t["key"] for t in node["spec"].get("taints") or []}
        if name in real:  # a kubelet on containerd, with its own address and pod range
            info = node["status"]["nodeInfo"]
            assert info["kubeletVersion"].startswith("v1.34.")
            assert info["containerRuntimeVersion"].startswith("containerd://2.")
            assert not taints and node["spec"]["podCIDR"]
        else:
            assert node["status"]["allocatable"]["cpu"] == "8"
            assert taints == {"manacore.dev/simulated"}
    version = json.loads(cluster.kubectl("get", "--raw", "/version").stdout)
    assert re.fullmatch(r"v1\.34\.\d+", version["gitVersion"]), version
    # the control plane's own health checks, and the default StorageClass
    assert "readyz check passed" in cluster.kubectl("get", "--raw", "/readyz?verbose").stdout
    classes = cluster.get("storageclass")["items"]
    default = [c for c in classes if c["metadata"].get("annotations", {})
               .get("storageclass.kubernetes.io/is-default-class") == "true"]
    assert [c["metadata"]["name"] for c in default] == ["local-path"]
    assert default[0]["provisioner"] == "rancher.io/local-path"


def test_pods_resolve_cluster_names_and_reach_services_across_nodes(
        cluster: Cluster, namespace: str) -> None:
    """CoreDNS answers cluster.local names; a Service's virtual IP (kube-proxy) reaches a pod
    on another node (the routes between the nodes' pod ranges)."""
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
        "labelSelector": {"matchLabels": {"app": "echo"}},
        "topologyKey": "kubernetes.io/hostname"}]}}
    server = deployment("echo", 1, affinity=anti)
    server["spec"]["template"]["spec"]["containers"] = [container(
        command=("httpd", "-f", "-p", "8080", "-h", "/etc"))]
    client = deployment("client", 1, affinity={"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchLabels": {"app": "echo"}},
            "topologyKey": "kubernetes.io/hostname"}]}})
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo"},
               "spec": {"selector": {"app": "echo"}, "ports": [{"port": 80,
                                                                "targetPort": 8080}]}}
    apply(cluster, namespace, server, client, service)
    for name in ("echo", "client"):
        cluster.kubectl("wait", "-n", namespace, "--for=condition=Available",
                        f"deployment/{name}", "--timeout=120s", timeout=150)
    echo, = pods(cluster, namespace, "app=echo")
    me, = pods(cluster, namespace, "app=client")
    assert echo["spec"]["nodeName"] != me["spec"]["nodeName"]
    # a new Service reaches every node's kube-proxy and CoreDNS a moment after its pod is
    # Ready: the client asks again, as any client would, for up to a minute
    fetched = until("the Service answering from the other node", lambda: cluster.kubectl(
        "exec", "-n", namespace, me["metadata"]["name"], "--", "wget", "-qO-", "-T", "5",
        f"http://echo.{namespace}.svc.cluster.local/hostname", check=False).stdout.strip(),
        timeout=60, every=2)
    assert fetched == echo["metadata"]["name"]


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
    """Scheduling alone, on the simulated nodes (more of them than this host runs)."""
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
        "labelSelector": {"matchLabels": {"app": "web"}},
        "topologyKey": "kubernetes.io/hostname"}]}}
    apply(cluster, namespace, deployment("web", 2, affinity=anti, **SIMULATED_ONLY))
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

    items = until("three replicas running and one unschedulable", unschedulable, timeout=60)
    assert {p["spec"]["nodeName"] for p in items if p["spec"].get("nodeName")} == SIMULATED


def test_a_daemonset_has_one_ready_pod_per_real_node(cluster: Cluster, namespace: str) -> None:
    """One running pod on each real node, none on the simulated ones (their taint)."""
    labels = {"app": "agent"}
    apply(cluster, namespace, {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels}, "spec": {"containers": [container()]}}}})
    cluster.kubectl("rollout", "status", "-n", namespace, "daemonset/agent", "--timeout=120s",
                    timeout=150)
    real = real_nodes(cluster)
    status = cluster.get("daemonset", "agent", "-n", namespace)["status"]
    assert status["desiredNumberScheduled"] == status["numberReady"] == len(real), status
    items = pods(cluster, namespace, "app=agent")
    assert sorted(p["spec"]["nodeName"] for p in items) == sorted(real)
    assert all(c["ready"] for p in items for c in p["status"]["containerStatuses"])


def test_a_claim_of_the_default_class_binds_on_its_first_pods_node(cluster: Cluster,
                                                                   namespace: str) -> None:
    """local-path, as on K3s: no volume until a pod uses the claim; then a folder on that
    pod's node, which the pod writes, and which goes with the claim."""
    apply(cluster, namespace, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}}})
    claim = cluster.get("pvc", "data", "-n", namespace)
    assert claim["spec"]["storageClassName"] == "local-path"  # the default, set on admission
    time.sleep(2)  # WaitForFirstConsumer: no volume without a pod
    assert cluster.get("pvc", "data", "-n", namespace)["status"]["phase"] == "Pending"
    volume = {"name": "data", "persistentVolumeClaim": {"claimName": "data"}}
    db = deployment("db", 1, volumes=[volume])
    db["spec"]["template"]["spec"]["containers"] = [container(
        command=("sh", "-c", "echo kept > /data/marker && sleep 3600"),
        volumeMounts=[{"name": "data", "mountPath": "/data"}])]
    apply(cluster, namespace, db)
    cluster.kubectl("wait", "-n", namespace, "--for=jsonpath={.status.phase}=Bound", "pvc/data",
                    "--timeout=120s", timeout=150)
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Available", "deployment/db",
                    "--timeout=120s", timeout=150)
    claim = cluster.get("pvc", "data", "-n", namespace)
    pv = cluster.get("pv", claim["spec"]["volumeName"])
    assert pv["spec"]["capacity"]["storage"] == "2Gi"
    assert pv["spec"]["claimRef"]["uid"] == claim["metadata"]["uid"]
    node = pods(cluster, namespace, "app=db")[0]["spec"]["nodeName"]
    assert REAL_NODE.fullmatch(node)
    term = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
    assert term["key"] == "kubernetes.io/hostname" and term["values"] == [node]
    # the folder is the node's own: in its mount namespace, under the node's folder here
    folder = Path(cluster_fact("RUN")) / "nodes" / node / "root" / pv["spec"]["hostPath"][
        "path"].lstrip("/")
    until("the pod's file in the node's folder", lambda: (folder / "marker").is_file())
    assert (folder / "marker").read_text() == "kept\n"
    # the claim deleted, its volume and folder go too (reclaim policy Delete)
    cluster.kubectl("delete", "-n", namespace, "deployment/db", "pvc/data", "--wait",
                    timeout=180)
    until("the released volume deleted", lambda: cluster.kubectl(
        "get", "pv", pv["metadata"]["name"], check=False).returncode != 0, timeout=120)
    until("its folder removed", lambda: not folder.exists(), timeout=60)


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
    manifest["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Never"
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
    once = {"restartPolicy": "Never", "containers": [container(command=("true",))]}
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
        "spec": {"restartPolicy": "Never", "containers": [container(command=("true",))]}}
    for name, doc in {"web": deployment("web", 2), "db": statefulset, "test": test_pod}.items():
        (chart / "templates" / f"{name}.yaml").write_text(yaml.safe_dump(doc))
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig),
           **{f"HELM_{kind}_HOME": str(tmp_path / kind.lower())
              for kind in ("CACHE", "CONFIG", "DATA")}}
    helm = [str(HELM), "--namespace", namespace]
    run = subprocess.run([*helm, "install", "smoke", str(chart), "--wait", "--timeout", "3m"],
                         capture_output=True, text=True, env=env, timeout=240)
    assert run.returncode == 0, run.stderr
    run = subprocess.run([*helm, "test", "smoke", "--timeout", "1m"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "Phase:          Succeeded" in run.stdout
    claim = cluster.get("pvc", "data-db-0", "-n", namespace)
    assert claim["status"]["phase"] == "Bound"
