"""The chart on a real API server (`scripts/cluster`): `helm install --wait`, `upgrade`,
`uninstall` with the real helm binary, every object admitted with strict server-side field
validation, every pod the controllers create admitted by Pod Security "restricted" (where the
namespace enforces it), and every workload Ready on the simulated nodes.

Installs run one after another under one release name; each test starts from a cluster
without the chart's namespaces.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import resolved
from tests.realengine.conftest import (
    HELM,
    RELEASE,
    RELEASE_NS,
    WORKLOADS,
    Cluster,
    benchmark_time,
    clear_cluster,
    not_ready,
)


def helm(cluster: Cluster, *args: str, check: bool = True, timeout: float = 1200
         ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(HELM), "--kubeconfig", str(cluster.kubeconfig), *args],
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args[:2])} exited {proc.returncode}:\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}\n"
                             f"{diagnose(cluster)}")
    return proc


def ours(cluster: Cluster, kinds: str) -> list[dict[str, Any]]:
    return cluster.items(kinds, "-A", "-l", f"app.kubernetes.io/instance={RELEASE}")


def diagnose(cluster: Cluster) -> str:
    """Why workloads are not Ready: the controllers' failed pod creations (Pod Security's
    rejections show here) and pods that are not ready."""
    lines = []
    for event in cluster.items("events", "-A", "--field-selector", "type=Warning"):
        lines.append(f"{event['involvedObject'].get('namespace')}/"
                     f"{event['involvedObject']['name']}: {event['reason']}: "
                     f"{event['message'][:300]}")
    return "\n".join(lines[-40:])


def install(cluster: Cluster, chart: Path, *args: str, verb: str = "install") -> None:
    """`helm install|upgrade --wait`, then every object of the chart through the API server's
    strict field validation (helm 3 does not ask for it): a dry-run server-side apply of each
    (an unknown or duplicate field is an error, not a warning; immutable fields the server
    filled in, such as a bound claim's volume, stay as they are)."""
    helm(cluster, verb, RELEASE, str(chart), "-n", RELEASE_NS, "--create-namespace", "--wait",
         "--timeout", "15m", *args)
    assert not not_ready(ours(cluster, WORKLOADS)), diagnose(cluster)
    rendered = helm(cluster, "template", RELEASE, str(chart), "-n", RELEASE_NS, *args).stdout
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "--dry-run=server",
                    "--validate=strict", "-f", "-", input=rendered, timeout=600)


@pytest.fixture
def clean(cluster: Cluster) -> Iterator[Cluster]:
    clear_cluster(cluster)
    yield cluster


def secret_values(cluster: Cluster) -> dict[tuple[str, str], dict[str, str]]:
    return {(s["metadata"]["namespace"], s["metadata"]["name"]): s.get("data") or {}
            for s in ours(cluster, "secrets")}


def claims(cluster: Cluster) -> dict[tuple[str, str], str]:
    return {(c["metadata"]["namespace"], c["metadata"]["name"]): c["metadata"]["uid"]
            for c in cluster.items("pvc", "-A")}


def generations(cluster: Cluster) -> dict[str, int]:
    return {f"{w['kind']}/{w['metadata']['name']}": w["metadata"]["generation"]
            for w in ours(cluster, WORKLOADS)}


def test_default_install_upgrade_and_uninstall(clean: Cluster, chart: Path) -> None:
    cluster = clean
    with benchmark_time("helm install --wait (default values)"):
        install(cluster, chart)
    # the namespaces enforce "restricted" where no host access is needed
    enforced = {n["metadata"]["name"]: n["metadata"]["labels"].get(
        "pod-security.kubernetes.io/enforce") for n in cluster.items("namespaces")
        if n["metadata"]["name"].startswith("manacore-")}
    assert "restricted" in enforced.values()
    secrets, held = secret_values(cluster), claims(cluster)
    assert held

    # unchanged values: no Secret value rotates, no claim is replaced, nothing rolls
    before = generations(cluster)
    with benchmark_time("helm upgrade --wait (unchanged values)"):
        install(cluster, chart, verb="upgrade")
    assert secret_values(cluster) == secrets
    assert claims(cluster) == held
    assert generations(cluster) == before

    # one changed value rolls only what depends on it
    gateway = resolved("k3s")["gateway"]
    install(cluster, chart, "--set", "services.gateway.resources.limits.memory=320Mi",
            "--set", "services.gateway.resources.requests.memory=320Mi", verb="upgrade")
    after = generations(cluster)
    rolled = sorted(k for k in after if after[k] != before.get(k))
    assert rolled == [f"Deployment/{gateway.name}"], rolled
    assert secret_values(cluster) == secrets

    # uninstall keeps every claim, and the namespaces that hold them
    helm(cluster, "uninstall", RELEASE, "-n", RELEASE_NS, "--wait")
    assert set(claims(cluster)) == set(held)


def test_node_exporter_runs_on_every_node_and_is_scraped_on_each(clean: Cluster,
                                                                 chart: Path) -> None:
    """SPEC "Scale": one Ready node-exporter pod per node, and VictoriaMetrics' scrape
    configuration resolves the headless Service, whose endpoints are those pods, one per
    node, not one pod behind a virtual IP."""
    cluster = clean
    install(cluster, chart)
    nodes = {n["metadata"]["name"] for n in cluster.items("nodes")}
    assert len(nodes) >= 3
    exporter = resolved("k3s")["node-exporter"]
    ds = next(d for d in ours(cluster, "daemonsets") if d["metadata"]["name"] == exporter.name)
    assert ds["status"]["numberReady"] == len(nodes)
    pods = [p for p in cluster.items("pods", "-n", ds["metadata"]["namespace"])
            if p["metadata"]["name"].startswith(exporter.name)]
    assert {p["spec"]["nodeName"] for p in pods} == nodes
    slices = cluster.items("endpointslices", "-n", ds["metadata"]["namespace"], "-l",
                 f"kubernetes.io/service-name={exporter.name}")
    endpoints = [e for s in slices for e in s["endpoints"] if e["conditions"].get("ready")]
    assert {e["nodeName"] for e in endpoints} == nodes
    service = next(s for s in ours(cluster, "services")
                   if s["metadata"]["name"] == exporter.name)
    assert service["spec"]["clusterIP"] == "None"
    vm = resolved("k3s")["victoriametrics"]
    scrape = next(yaml.safe_load(text) for c in ours(cluster, "configmaps")
                  if c["metadata"]["labels"].get("app.kubernetes.io/name") == vm.id
                  for key, text in (c.get("data") or {}).items() if key.endswith("scrape.yml"))
    job = next(j for j in scrape["scrape_configs"]
               if exporter.name in json.dumps(j.get("dns_sd_configs", [])))
    assert job["dns_sd_configs"][0]["type"] == "A"


def test_b2b_install_single_namespace_external_postgres_existing_secret(
        clean: Cluster, chart: Path) -> None:
    """ci/b2b-values.yaml: a subset of services in one namespace, PostgreSQL outside the
    chart, every secret from the customer's own Secret."""
    cluster = clean
    values = yaml.safe_load((chart / "ci" / "b2b-values.yaml").read_text())
    namespace = values.get("namespaces", {}).get("name") or RELEASE_NS
    cluster.kubectl("create", "namespace", namespace)
    keys = yaml.safe_load((chart / "values.yaml").read_text())["secrets"]
    cluster.kubectl("create", "secret", "generic", values["existingSecret"], "-n", namespace,
                    *(f"--from-literal={k}=b2b-{k.lower().replace('_', '-')}" for k in keys))
    # the customer's storage class is theirs; this cluster's is local-path
    install(cluster, chart, "-f", str(chart / "ci" / "b2b-values.yaml"),
            "--set", "storageClass=local-path")
    deployed = {w["metadata"]["namespace"] for w in ours(cluster, WORKLOADS)}
    assert deployed == {namespace}
    assert not [s for s in ours(cluster, "statefulsets")
                if s["metadata"]["name"] == resolved("k3s")["postgres"].name]
