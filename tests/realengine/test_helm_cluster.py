"""The chart on the suite's cluster (`scripts/cluster`), with the real `helm`: on real nodes
(kubelets on containerd, CoreDNS, kube-router enforcing NetworkPolicies, local-path claims),
pods really run the harness's images — the real PostgreSQL, Redis, Synapse, exporters and
VictoriaMetrics, the wiring stand-in for the rest — under the chart's security contexts,
probes, init containers, DNS names and policies.

One release (conftest: `release`), installed once with the default values (every object also
through the API server's strict field validation); the tests run in file order on it and
leave it installed: test_backup_k3s runs its backup jobs next, test_self_healing drains and
loses nodes under it, and test_helm_upgrade ends with its upgrade and uninstall and the B2B
example. What a test disturbs
on purpose (a deleted pod, a killed process) it records, and a later test checks that nothing
else restarted.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest
import yaml

from catalog.resolve import ResolvedService
from catalog.settings import ROOT
from tests.conftest import resolved
from tests.realengine.conftest import (
    MARKER_DATABASE,
    REAL_NODE,
    RELEASE,
    RELEASE_NS,
    WORKLOADS,
    Cluster,
    benchmark,
)
from tests.realengine.pods import (
    can_connect,
    exec_in,
    instance_pods,
    internet_server,
    key,
    main_container_started,
    node_of,
    pods_of,
    ready,
    ready_since,
    restarted,
    restarts,
    until,
)
from tests.realengine.release import diagnose, helm, ours

pytestmark = pytest.mark.kube_cluster
ESTATE = resolved("k3s")
STEADY_SECONDS = 120  # "no restart in the first minutes of steady state"


def test_every_pod_runs_ready_on_a_real_node(cluster: Cluster, release: dict[str, Any]) -> None:
    pods = release["pods"]
    workloads = cluster.items(WORKLOADS, "-A", "-l", f"app.kubernetes.io/instance={RELEASE}")
    assert len(pods) >= len(workloads) > 30
    for pod in pods:
        assert REAL_NODE.fullmatch(node_of(pod)), f"{key(pod)} on {node_of(pod)}"
        assert pod["status"]["phase"] == "Running", key(pod)
        assert all(c["ready"] for c in pod["status"]["containerStatuses"]), key(pod)
        # no crash on the way up: a container that restarted crashed or failed its probes
        assert restarts(pod) == 0, f"{restarted([pod])}: {diagnose(cluster)}"
    nodes = {node_of(p) for p in pods}
    assert len(nodes) >= 2, f"every pod on {nodes}: no traffic crosses nodes"
    # Pod Security: "restricted" enforced wherever no host access is needed, and the pods
    # exist, so the API server admitted each of them there
    enforced = {n["metadata"]["name"]: n["metadata"]["labels"].get(
        "pod-security.kubernetes.io/enforce") for n in cluster.items("namespaces")}
    host = {s.namespace for s in ESTATE.services if s.host_access}
    for pod in pods:
        namespace = pod["metadata"]["namespace"]
        assert enforced[namespace] == ("privileged" if namespace in host else "restricted")


def dependencies(s: ResolvedService) -> list[ResolvedService]:
    present = {t.id for t in ESTATE.services}
    return [ESTATE[d] for d in s.hard if d in present and not ESTATE[d].native]


def test_init_containers_hold_each_dependent_until_its_dependencies_are_ready(
        cluster: Cluster, release: dict[str, Any]) -> None:
    """Each hard dependent's main container started only after every hard dependency had a
    Ready pod (the init containers wait for the dependency's Service, which routes only to
    Ready pods): container start times against readiness, as the Docker suite reads engine
    events."""
    checked = []
    for s in ESTATE.services:
        deps = dependencies(s)
        if not deps or s.native:
            continue
        for pod in pods_of(cluster, s, RELEASE):
            started = main_container_started(pod)
            inits = {c["name"]: c for c in pod["status"].get("initContainerStatuses", [])}
            for t in deps:
                wait = inits[f"wait-{t.name}"]
                assert wait["state"]["terminated"]["exitCode"] == 0, (key(pod), t.id)
                first_ready = min(ready_since(p) for p in pods_of(cluster, t, RELEASE))
                # timestamps have whole seconds
                assert started >= first_ready - 1, (
                    f"{key(pod)} started {first_ready - started:.0f} s before {t.id} was Ready")
                checked.append((s.id, t.id))
    assert len(checked) > 20, checked
    benchmark(f"init containers: {len(checked)} hard dependencies held until Ready")


def test_the_wiring_every_standin_logs_in_and_reaches_its_dependencies(
        cluster: Cluster, release: dict[str, Any]) -> None:
    """Every stand-in (our apps, and the third-party images Debian does not package) logged in
    to each PostgreSQL database and Redis its environment names, with the credentials given,
    and reached the HTTP services it needs through their cluster DNS names."""
    reports = 0
    for s in ESTATE.services:
        for pod in pods_of(cluster, s, RELEASE):
            proc = exec_in(cluster, pod, "standin", "report", check=False)
            if proc.returncode == 126 or "executable file not found" in proc.stderr:
                continue  # a real server, not a stand-in
            report = json.loads(proc.stdout)
            failed = [c for c in report["checks"] if c["required"] and not c["ok"]]
            assert report["healthy"] and not failed, (key(pod), failed)
            # by now the lazy ones answer too, but for the native macOS services (Ollama,
            # TTS …), which the test cluster does not have
            lazy = [c for c in report["checks"] if not c["ok"] and not native(c["target"])]
            assert not lazy, (key(pod), lazy)
            reports += 1
    assert reports > 20


def native(url: str) -> bool:
    """Whether a checked URL is a native service's (its cluster DNS name's first label)."""
    host = url.split("://", 1)[-1].split("@")[-1].split(":")[0].split("/")[0]
    return any(s.native and host.split(".")[0] == s.name for s in ESTATE.services)


def metrics(cluster: Cluster, s: ResolvedService, port: int, path: str = "/metrics") -> str:
    pod = pods_of(cluster, s, RELEASE)[0]
    return exec_in(cluster, pod, "wget", "-qO-", f"http://127.0.0.1:{port}{path}").stdout


def test_the_real_servers_answer(cluster: Cluster, release: dict[str, Any]) -> None:
    """The exporters reach the real databases (as their monitoring roles), VictoriaMetrics
    scrapes every target of its generated configuration — node-exporter on every real node —
    and the real Synapse serves its health and client API with the generated config."""
    pg, redis = ESTATE["postgres-exporter"], ESTATE["redis-exporter"]
    assert "\npg_up 1" in "\n" + metrics(cluster, pg, pg.ports[0].container)
    assert "\nredis_up 1" in "\n" + metrics(cluster, redis, redis.ports[0].container)
    vm = ESTATE["victoriametrics"]

    def targets() -> list[dict[str, Any]] | None:
        data = json.loads(metrics(cluster, vm, vm.ports[0].container, "/api/v1/targets"))
        active = data["data"]["activeTargets"]
        return active if active and all(t["health"] == "up" for t in active) else None

    active = until("every scrape target up", targets, timeout=180, every=5)
    nodes = {n["metadata"]["name"] for n in cluster.items("nodes")
             if any(a["type"] == "InternalIP" for a in n["status"]["addresses"])
             and "kwok.x-k8s.io/node" not in n["metadata"].get("annotations", {})}
    exporter = ESTATE["node-exporter"]
    scraped = [t for t in active if exporter.name in json.dumps(t.get("discoveredLabels", {}))
               or exporter.name in t["labels"].get("job", "")]
    assert len(scraped) == len(nodes), (scraped, nodes)
    synapse = ESTATE["synapse"]
    pod = pods_of(cluster, synapse, RELEASE)[0]
    port = synapse.ports[0].container
    health = exec_in(cluster, pod, "curl", "-fsS", f"http://127.0.0.1:{port}/health").stdout
    assert health.strip() == "OK"
    versions = json.loads(exec_in(cluster, pod, "curl", "-fsS",
                                  f"http://127.0.0.1:{port}/_matrix/client/versions").stdout)
    assert versions["versions"]
    benchmark(f"VictoriaMetrics: {len(active)} targets up, node-exporter on {len(nodes)} nodes")


def test_network_policies_are_enforced(cluster: Cluster, release: dict[str, Any]) -> None:
    """Every allowed path works (the wiring above proves most of them); what must be refused
    is: the tunnel connector to PostgreSQL and Redis, one app to another app's backend where
    the graph has no edge, a pod without the internet to an outside address. A pod that may
    reach the internet does reach it."""
    connector = pods_of(cluster, ESTATE["cloudflared"], RELEASE)[0]
    for store in ("postgres", "redis"):
        s = ESTATE[store]
        assert not can_connect(cluster, connector, s.host, s.ports[0].container), store
    public = next(s for s in ESTATE.services if s.public is not None and not s.native
                  and s.id != "cloudflared")
    assert can_connect(cluster, connector, public.host, public.port(public.public.port).container)
    # an app's web frontend reaches its own backend, never another app's
    web, own, other = ESTATE["todo-web"], ESTATE["todo-backend"], ESTATE["chat-backend"]
    assert "chat-backend" not in (*web.hard, *web.lazy)
    web_pod = pods_of(cluster, web, RELEASE)[0]
    assert can_connect(cluster, web_pod, own.host, own.ports[0].container)
    assert not can_connect(cluster, web_pod, other.host, other.ports[0].container)
    paths = {"cross-node refused": node_of(web_pod) != node_of(pods_of(cluster, other,
                                                                       RELEASE)[0])}
    with internet_server() as url:
        host = url.split("/")[2]
        closed = ESTATE["auth"]
        assert closed.internet is None
        assert not can_connect(cluster, pods_of(cluster, closed, RELEASE)[0], host, 80)
        open_ = next(s for s in ESTATE.services if s.internet is not None and not s.native
                     and s.id != "cloudflared" and pods_of(cluster, s, RELEASE))
        assert can_connect(cluster, pods_of(cluster, open_, RELEASE)[0], host, 80), open_.id
    benchmark(f"NetworkPolicies enforced by kube-router on real nodes ({paths})")


def test_a_statefulset_pod_deleted_comes_back_on_its_claim_with_its_data(
        cluster: Cluster, release: dict[str, Any]) -> None:
    """PostgreSQL's pod deleted: the StatefulSet makes it again on its claim's node, and the
    rows written before are there (the real server, the real local-path volume)."""
    pg = ESTATE["postgres"]
    pod = pods_of(cluster, pg, RELEASE)[0]
    psql = ("psql", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", MARKER_DATABASE, "-tAc")
    exec_in(cluster, pod, *psql, "CREATE TABLE IF NOT EXISTS marker (v text); "
            "INSERT INTO marker VALUES ('before-delete')")
    node = node_of(pod)
    start = time.monotonic()
    cluster.kubectl("delete", "pod", "-n", pod["metadata"]["namespace"], pod["metadata"]["name"],
                    "--wait=true", timeout=180)
    release["changed"].add(pg.id)
    again = until("PostgreSQL Ready again", lambda: next(
        (p for p in pods_of(cluster, pg, RELEASE) if ready(p)), None), timeout=300)
    benchmark(f"PostgreSQL pod deleted -> Ready again on its claim in "
              f"{time.monotonic() - start:.1f} s")
    assert node_of(again) == node  # its local-path claim lives there
    rows = exec_in(cluster, again, *psql, "SELECT v FROM marker").stdout.split()
    assert rows == ["before-delete"]


def test_a_killed_main_process_is_restarted_and_served_again(
        cluster: Cluster, release: dict[str, Any]) -> None:
    """The main process of a Deployment's container killed on its node (SIGKILL, as the
    kernel's OOM killer does): the kubelet restarts the container and its Service has a Ready
    endpoint again."""
    s = ESTATE["auth"]
    pod = pods_of(cluster, s, RELEASE)[0]
    container_id = pod["status"]["containerStatuses"][0]["containerID"].split("//", 1)[1]
    node = node_of(pod).removeprefix("node-")
    start = time.monotonic()
    subprocess.run([ROOT / "scripts" / "cluster", "node", "ctr", node, "tasks", "kill", "-s",
                    "SIGKILL", container_id], check=True, capture_output=True, timeout=60)
    release["changed"].add(s.id)

    def served() -> bool:
        slices = cluster.items("endpointslices", "-n", s.namespace, "-l",
                               f"kubernetes.io/service-name={s.name}")
        return any(e["conditions"].get("ready") for sl in slices for e in sl["endpoints"]
                   or [])

    until("the container restarted", lambda: restarts(pods_of(cluster, s, RELEASE)[0]) >= 1,
          timeout=120)
    until("a Ready endpoint again", lambda: served() and ready(pods_of(cluster, s, RELEASE)[0]),
          timeout=180)
    benchmark(f"{s.id}: main process killed -> Ready endpoint again in "
              f"{time.monotonic() - start:.1f} s")


def test_helm_test_runs_the_charts_connection_tests(cluster: Cluster,
                                                    release: dict[str, Any]) -> None:
    proc = helm(cluster, "test", RELEASE, "-n", RELEASE_NS, "--timeout", "10m")
    phases = [line for line in proc.stdout.splitlines() if line.startswith("Phase:")]
    assert phases and all("Succeeded" in line for line in phases), proc.stdout


def test_no_pod_restarted_in_steady_state(cluster: Cluster, release: dict[str, Any]) -> None:
    """Minutes after the install, no pod restarted but those a test disturbed on purpose."""
    wait = release["installed"] + STEADY_SECONDS - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    changed = {ESTATE[i].name for i in release["changed"]}
    now = instance_pods(cluster, RELEASE)
    moved = [key(p) for p in now if restarts(p) != release["restarts"].get(key(p), 0)
             and p["metadata"]["labels"]["app.kubernetes.io/name"] not in changed]
    assert not moved, diagnose(cluster)


def test_node_exporter_runs_on_every_real_node_and_is_scraped_on_each(
        cluster: Cluster, release: dict[str, Any]) -> None:
    """SPEC "Scale": one Ready node-exporter pod per node (the host's view: its network, its
    processes, its / mounted HostToContainer), and VictoriaMetrics' scrape configuration
    resolves the headless Service, whose endpoints are those pods, one per node."""
    nodes = {n["metadata"]["name"] for n in cluster.items("nodes")
             if REAL_NODE.fullmatch(n["metadata"]["name"])}
    exporter = ESTATE["node-exporter"]
    ds = next(d for d in ours(cluster, "daemonsets") if d["metadata"]["name"] == exporter.name)
    assert ds["status"]["numberReady"] == len(nodes) >= 2
    pods = pods_of(cluster, exporter, RELEASE)
    assert {node_of(p) for p in pods} == nodes
    for pod in pods:  # its address is its node's: it reports the node, not a pod
        assert pod["status"]["podIP"] == pod["status"]["hostIP"]
    slices = cluster.items("endpointslices", "-n", exporter.namespace, "-l",
                           f"kubernetes.io/service-name={exporter.name}")
    endpoints = [e for sl in slices for e in sl["endpoints"] if e["conditions"].get("ready")]
    assert {e["nodeName"] for e in endpoints} == nodes
    service = next(s for s in ours(cluster, "services")
                   if s["metadata"]["name"] == exporter.name)
    assert service["spec"]["clusterIP"] == "None"
    vm = ESTATE["victoriametrics"]
    scrape = next(yaml.safe_load(text) for c in ours(cluster, "configmaps")
                  if c["metadata"]["labels"].get("app.kubernetes.io/name") == vm.name
                  for k, text in (c.get("data") or {}).items() if k.endswith("scrape.yml"))
    job = next(j for j in scrape["scrape_configs"]
               if exporter.name in json.dumps(j.get("dns_sd_configs", [])))
    assert job["dns_sd_configs"][0]["type"] == "A"
