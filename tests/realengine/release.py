"""The chart's release on the suite's cluster, shared by the modules that test it: `helm`
against the cluster, what keeps pods from running, the release's objects, and an install
(`helm install|upgrade --wait` plus the API server's strict field validation).

test_helm_cluster, test_self_healing and test_helm_upgrade run one after another on one
release (conftest: `release`, and the modules' order); a module that needs another starts
from `clear_cluster`."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.realengine.conftest import HELM, RELEASE, RELEASE_NS, WORKLOADS, Cluster, not_ready
from tests.realengine.pods import instance_pods, key, ready


def helm(cluster: Cluster, *args: str, check: bool = True, timeout: float = 1500
         ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(HELM), "--kubeconfig", str(cluster.kubeconfig), *args],
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args[:2])} exited {proc.returncode}:\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}\n"
                             f"{diagnose(cluster)}")
    return proc


def diagnose(cluster: Cluster) -> str:
    """What keeps pods from running: warnings, and each unready pod's containers' states and
    last log lines."""
    lines = [f"{e['involvedObject'].get('namespace')}/{e['involvedObject']['name']}: "
             f"{e['reason']}: {e['message'][:200]}"
             for e in cluster.items("events", "-A", "--field-selector", "type=Warning")][-30:]
    for pod in instance_pods(cluster, RELEASE):
        if ready(pod):
            continue
        states = [f"{c['name']}: {json.dumps(c.get('state'))[:200]}"
                  for c in (*pod["status"].get("initContainerStatuses", []),
                            *pod["status"].get("containerStatuses", []))]
        logs = cluster.kubectl("logs", "-n", pod["metadata"]["namespace"],
                               pod["metadata"]["name"], "--all-containers", "--tail", "5",
                               check=False).stdout[-800:]
        lines.append(f"{key(pod)} on {pod['spec'].get('nodeName')}:\n  " + "\n  ".join(states)
                     + f"\n{logs}")
    return "\n".join(lines)


def ours(cluster: Cluster, kinds: str) -> list[dict[str, Any]]:
    return cluster.items(kinds, "-A", "-l", f"app.kubernetes.io/instance={RELEASE}")


def install(cluster: Cluster, chart: Path, *args: str, verb: str = "install") -> float:
    """`helm install|upgrade --wait` (the seconds it took), then every object of the chart
    through the API server's strict field validation (helm 3 does not ask for it): a dry-run
    server-side apply of each (an unknown or duplicate field is an error, not a warning;
    immutable fields the server filled in, such as a bound claim's volume, stay as they are)."""
    start = time.monotonic()
    helm(cluster, verb, RELEASE, str(chart), "-n", RELEASE_NS, "--create-namespace", "--wait",
         "--timeout", "20m", *args)
    took = time.monotonic() - start
    assert not not_ready(ours(cluster, WORKLOADS)), diagnose(cluster)
    rendered = helm(cluster, "template", RELEASE, str(chart), "-n", RELEASE_NS, *args).stdout
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "--dry-run=server",
                    "--validate=strict", "-f", "-", input=rendered, timeout=600)
    return took


KINDS = "namespaces,configmaps,secrets,services,deployments,statefulsets,daemonsets,pvc," \
        "networkpolicies,endpointslices,poddisruptionbudgets,cronjobs"
DROP_META = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields")
DROP_PREFIXES = ("meta.helm.sh/", "pulumi.com/", "deployment.kubernetes.io/",
                 "kubectl.kubernetes.io/", "pv.kubernetes.io/", "volume.kubernetes.io/",
                 "volume.beta.kubernetes.io/", "endpoints.kubernetes.io/")
DROP_LABELS = ("app.kubernetes.io/managed-by", "helm.sh/chart")


def normalised(cluster: Cluster) -> dict[str, Any]:
    """The estate's objects as the API server holds them, without what the server or the tool
    fills in (ids, status, bookkeeping annotations, cluster IPs, a bound claim's volume, the
    controllers' EndpointSlices) and with Secret values reduced to their keys (generated
    values differ by design)."""
    out: dict[str, Any] = {}
    for item in cluster.items(KINDS, "-A"):
        meta = item["metadata"]
        namespace = meta.get("namespace") or meta["name"]
        labels = meta.get("labels") or {}
        if not namespace.startswith("manacore-") or namespace == RELEASE_NS or labels.get(
                "endpointslice.kubernetes.io/managed-by", "").endswith(".k8s.io") or (
                item["kind"] == "ConfigMap" and meta["name"] == "kube-root-ca.crt"):
            continue
        item = json.loads(json.dumps(item))
        item.pop("status", None)
        for name in DROP_META:
            item["metadata"].pop(name, None)
        scrub(item)
        spec = item.get("spec") or {}
        for name in ("clusterIP", "clusterIPs", "volumeName"):
            spec.pop(name, None)
        if item["kind"] == "Secret":
            item["data"] = sorted(item.get("data") or {})
        out[f"{item['kind']} {meta.get('namespace', '')}/{meta['name']}"] = item
    return out


def scrub(value: Any) -> None:
    """Drops the tools' own labels and annotations from every metadata in the object (its
    own, pod templates', claim templates')."""
    if isinstance(value, dict):
        meta = value.get("metadata")
        if isinstance(meta, dict):
            for field in ("annotations", "labels"):
                kept = {k: v for k, v in (meta.pop(field, None) or {}).items()
                        if not k.startswith(DROP_PREFIXES) and k not in DROP_LABELS}
                if kept:
                    meta[field] = kept
        for v in value.values():
            scrub(v)
    elif isinstance(value, list):
        for v in value:
            scrub(v)
