"""Self-healing on the suite's cluster (issue 26): the estate, installed by the chart, keeps its
user-facing services answering while each node in turn is drained, and moves its stateless
pods off a node that stopped answering within 90 s, restarting nothing else.

Everything here is real: the eviction API and the disruption budgets, the scheduler's spread,
the node lifecycle controller's taints and the taint eviction, the ReplicaSet and EndpointSlice
controllers, and the pods on the real nodes (the `nodes` fixture, conftest: a node is lost by
killing every process of it, pods included, as when its power goes). A test never names a
node. Figures (gaps, failover, drain times) are benchmark lines, never asserted
beyond the promise itself (no gap for a service with several copies; Ready elsewhere within
90 s).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest

from catalog.resolve import ResolvedEstate
from catalog.settings import ROOT
from tests.conftest import resolved
from tests.realengine.conftest import (
    WORKLOADS,
    Cluster,
    Nodes,
    benchmark,
    not_ready,
)
from tests.realengine.pods import when
from tests.realengine.release import diagnose, ours

pytestmark = pytest.mark.kube_cluster

FAILOVER_LIMIT = 90  # s: a lost node's stateless pods are Ready elsewhere within this (issue 26)
WHOLE_WAIT = 15  # s a drained node's Deployments are watched becoming whole elsewhere (a figure)


@pytest.fixture(scope="module")
def estate() -> ResolvedEstate:
    return resolved("k3s")


@pytest.fixture(scope="module")
def installed(cluster: Cluster, release: dict[str, Any]) -> Cluster:
    """The estate as the chart installs it with its default values: the session's release
    (test_helm_cluster's, which runs just before), settled."""
    until("the estate settled", lambda: settled(cluster), 300, cluster)
    return cluster


@dataclass
class Watch:
    """`kubectl get KIND -A --watch`: every event with the moment it arrived (the list the
    watch starts with first, as ADDED events)."""

    cluster: Cluster
    kind: str
    events: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.process = subprocess.Popen(
            [str(ROOT / ".tools" / "bin" / "kubectl"), "--kubeconfig",
             str(self.cluster.kubeconfig), "get", self.kind, "-A", "--watch",
             "--output-watch-events", "-o", "json"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        decoder, buffer = json.JSONDecoder(), ""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            buffer += line
            while buffer.strip():
                try:
                    event, end = decoder.raw_decode(buffer.lstrip())
                except json.JSONDecodeError:
                    break  # an object still arriving
                buffer = buffer.lstrip()[end:]
                self.events.append((time.monotonic(), event["type"], event["object"]))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.reader.join(timeout=30)


def ready_endpoints(slice_: dict[str, Any]) -> int:
    """Endpoints of an EndpointSlice that receive traffic (ready: unset counts as ready)."""
    return sum(1 for e in slice_.get("endpoints") or []
               if e.get("conditions", {}).get("ready") is not False)


def gaps(watch: Watch, services: dict[tuple[str, str], str], start: float, end: float
         ) -> dict[str, float]:
    """Per service (by (namespace, Service name) → id): the longest time within [start, end]
    during which it had no Ready endpoint, from the EndpointSlice events."""
    slices: dict[tuple[str, str], tuple[tuple[str, str], int]] = {}
    since: dict[str, float] = {}
    longest = dict.fromkeys(services.values(), 0.0)

    def close(sid: str, moment: float) -> None:
        began = max(since.pop(sid), start)
        longest[sid] = max(longest[sid], min(moment, end) - began)

    for moment, kind, obj in watch.events:
        meta = obj["metadata"]
        owner = (meta["namespace"], meta.get("labels", {}).get("kubernetes.io/service-name"))
        if owner not in services:
            continue
        slices[(meta["namespace"], meta["name"])] = (owner, 0 if kind == "DELETED"
                                                     else ready_endpoints(obj))
        sid = services[owner]
        ready = sum(n for key, n in slices.values() if key == owner)
        if not ready and sid not in since:
            since[sid] = moment
        elif ready and sid in since:
            close(sid, moment)
    for sid in list(since):
        close(sid, end)
    return longest


def user_facing(estate: ResolvedEstate) -> dict[tuple[str, str], str]:
    """The user-facing services that have a Service: (namespace, name) → id."""
    return {(s.namespace, s.name): s.id for s in estate.containers
            if s.availability.importance == "user-facing" and s.ports}


def until(what: str, check: Callable[[], Any], timeout: float, cluster: Cluster) -> float:
    """Polls `check()` every second until it is truthy; the seconds it took."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout} s\n{diagnose(cluster)}")
        time.sleep(1)
    return time.monotonic() - start


def until_or_none(missing: Callable[[], Any], timeout: float) -> float | None:
    """Polls `missing()` every 2 s until it is empty: the seconds it took, None after
    `timeout` (for figures, not promises)."""
    start = time.monotonic()
    while missing():
        if time.monotonic() - start > timeout:
            return None
        time.sleep(2)
    return time.monotonic() - start


def settled(cluster: Cluster) -> bool:
    """Every workload has all the Ready pods it wants, and no pod of ours is terminating."""
    pods = ours(cluster, "pods")
    return not not_ready(ours(cluster, WORKLOADS)) and \
        not [p for p in pods if p["metadata"].get("deletionTimestamp")]


def test_draining_each_node_keeps_every_replicated_service_serving(
        installed: Cluster, nodes: Nodes, estate: ResolvedEstate) -> None:
    """`kubectl drain` of each node in turn (what a K3s upgrade does) succeeds: the eviction
    API never takes a pod a budget protects, no budget's healthy count falls below what it
    wants, and every user-facing service with several copies keeps a Ready endpoint all the
    while. A service that runs once is down while its pod moves; one on a local claim until its
    node is uncordoned (README, "K3s: draining or losing a node")."""
    cluster = installed
    services = user_facing(estate)
    replicated = {s.id for s in estate.containers if s.replicas > 1}
    assert replicated <= set(services.values())
    slices, budgets = Watch(cluster, "endpointslices"), Watch(cluster, "poddisruptionbudgets")
    try:
        until("the watches' first lists", lambda: slices.events and budgets.events, 60, cluster)
        start = time.monotonic()
        for node in nodes.names:
            before_drain = ours(cluster, "pods")
            began = time.monotonic()
            try:
                drained = cluster.kubectl("drain", node, "--ignore-daemonsets",
                                          "--delete-emptydir-data", "--timeout=300s",
                                          timeout=330, check=False)
                took = time.monotonic() - began
                assert drained.returncode == 0, f"{drained.stderr[-2000:]}\n{diagnose(cluster)}"
                benchmark(f"drain {node}: {took:.1f} s (kubectl drain)")
                left = [p["metadata"]["name"] for p in ours(cluster, "pods")
                        if p["spec"].get("nodeName") == node and not any(
                            o["kind"] == "DaemonSet"
                            for o in p["metadata"].get("ownerReferences", []))]
                assert not left, f"{node} still runs {left}"
                # the evicted Deployment pods start again on the other nodes; those whose hard
                # dependency (or a datastore they check) is a StatefulSet on this node
                # (PostgreSQL: most of them) wait until it is back after the uncordon — the
                # README's "single point of failure". Printed, not asserted: the promise is the
                # gaps below (one copy of each replicated service kept serving throughout)
                waiting = waiting_on(estate, before_drain, node)

                def short(waiting: dict[str, list[str]] = waiting) -> list[str]:
                    return sorted(d["metadata"]["name"] for d in ours(cluster, "deployments")
                                  if d["metadata"]["name"] not in waiting and not_ready([d]))
                whole = until_or_none(short, WHOLE_WAIT)
                benchmark(f"drain {node}: " + (
                    f"every Deployment not waiting for {node}'s StatefulSets whole on the "
                    f"other nodes after {whole:.0f} s" if whole is not None else
                    f"still short of a copy after {WHOLE_WAIT} s: {', '.join(short())}") + (
                    f"; waiting for them until the uncordon: {', '.join(sorted(waiting))}"
                    if waiting else ""))
            finally:
                cluster.kubectl("uncordon", node)
            back = until(f"the estate settled after uncordoning {node}",
                         lambda: settled(cluster), 300, cluster)
            benchmark(f"drain {node}: every workload Ready {back:.1f} s after uncordon "
                      "(the stateful ones come back to their node's claims)")
        end = time.monotonic()
    finally:
        slices.stop()
        budgets.stop()
    longest = gaps(slices, services, start, end)
    benchmark(f"drains of {len(nodes.names)} nodes: longest gap without a Ready endpoint of a "
              f"replicated user-facing service: {max(longest[s] for s in replicated):.1f} s")
    singles = {sid: gap for sid, gap in longest.items() if sid not in replicated}
    benchmark("drains: longest gap of each single-copy user-facing service: " + ", ".join(
        f"{sid} {gap:.1f} s" for sid, gap in sorted(singles.items())))
    assert {sid: gap for sid, gap in longest.items() if sid in replicated and gap > 0} == {}
    below = [(o["metadata"]["name"], o["status"]) for moment, _, o in budgets.events
             if moment >= start and o.get("status", {}).get("currentHealthy", 0) <
             o.get("status", {}).get("desiredHealthy", 0)]
    assert not below, below


def pods_by_uid(cluster: Cluster) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["uid"]: p for p in ours(cluster, "pods")}


def owner_kind(pod: dict[str, Any]) -> str:
    """The workload kind behind a pod (a ReplicaSet's pod belongs to a Deployment)."""
    kinds = [o["kind"] for o in pod["metadata"].get("ownerReferences", [])]
    return "Deployment" if "ReplicaSet" in kinds else (kinds or ["Pod"])[0]


def slowest(pods: Iterable[dict[str, Any]], since: float, count: int = 4) -> str:
    """The pods created after `since` that became Ready last, with the time of each step of
    their start: where a failover spends its time."""
    steps = []
    for p in pods:
        created = when(p["metadata"]["creationTimestamp"])
        if created < since - 1 or owner_kind(p) != "Deployment":
            continue
        at = {c["type"]: when(c["lastTransitionTime"]) - since
              for c in p["status"].get("conditions", []) if c.get("status") == "True"}
        steps.append((at.get("Ready", float("inf")), p["metadata"]["name"], created - since,
                      at.get("PodScheduled"), at.get("Initialized")))
    return ", ".join(f"{name} {made:.0f}/{sched or -1:.0f}/{init or -1:.0f}/{ready:.0f}"
                     for ready, name, made, sched, init in sorted(steps)[-count:]) or "none"


def condition(obj: dict[str, Any], kind: str) -> str | None:
    """The status of a node's or a pod's condition of that type."""
    return next((c["status"] for c in obj["status"].get("conditions", [])
                 if c["type"] == kind), None)


def waiting_on(estate: ResolvedEstate, pods: Any, lost: str) -> dict[str, list[str]]:
    """The Deployments (by name) whose replacements cannot be Ready while `lost` is gone, with
    what they wait for: a dependency that only ran there — a StatefulSet's pod (its claim is on
    that node's disk), or a Deployment with no pod elsewhere that itself waits. A new pod is
    Ready only when its hard dependencies answer (init containers) and the datastores it uses,
    lazily too (its health check, as a backend's /health checks its database: the exporter's
    `pg_up 1`, the stand-ins'); the pods that were Ready keep serving."""
    by_name = {s.name: s for s in estate.containers}
    ids = {s.id: s.name for s in estate.containers}
    checked = {s.name: (*s.hard, *(d for d in s.lazy if estate[d].role == "datastore"))
               for s in estate.containers}
    where: dict[str, set[str]] = defaultdict(set)
    kind: dict[str, str] = {}
    for p in pods:
        name = p["metadata"]["labels"].get("app.kubernetes.io/name", "")
        where[name].add(p["spec"].get("nodeName", ""))
        kind[name] = owner_kind(p)
    gone = {n for n, on in where.items() if on == {lost} and kind[n] == "StatefulSet"}
    waiting: dict[str, list[str]] = {}
    while True:
        found = {n: [ids[d] for d in checked[n] if ids.get(d) in gone]
                 for n in where if kind[n] == "Deployment" and n in by_name}
        found = {n: deps for n, deps in found.items() if deps}
        more = {n for n in found if where[n] == {lost}} - gone
        waiting = found
        if not more:
            return waiting
        gone |= more


def test_a_node_that_stops_answering_loses_its_stateless_pods_within_90_s(
        installed: Cluster, nodes: Nodes, estate: ResolvedEstate) -> None:
    """The node running most of the stateless pods dies (every process of it killed): the
    node lifecycle controller marks it NotReady and taints it unreachable, its Deployment pods
    leave after their toleration and are Ready elsewhere within 90 s — all but those whose
    hard dependency ran only on that node (a StatefulSet on its claim: printed, they start
    when it is back); nothing else restarts — neither pods on the other nodes nor the
    StatefulSet and DaemonSet pods on the lost one (their claims cannot follow; they wait for
    the node). Then the node comes back."""
    cluster = installed
    until("the estate settled", lambda: settled(cluster), 300, cluster)
    before = pods_by_uid(cluster)
    stateless = defaultdict(list)
    for uid, p in before.items():
        if owner_kind(p) == "Deployment":
            stateless[p["spec"]["nodeName"]].append(uid)
    lost = max(nodes.names, key=lambda n: len(stateless[n]))
    moving = set(stateless[lost])
    assert moving, f"no stateless pod on {lost}"
    waiting = waiting_on(estate, before.values(), lost)
    wanted = {d["metadata"]["name"]: d["spec"]["replicas"]
              for d in ours(cluster, "deployments") if d["metadata"]["name"] not in waiting}
    marks: dict[str, float] = {}

    def failed_over() -> bool:
        """Every Deployment has all its replicas Ready on the other nodes; on the way, when
        the node was marked NotReady, tainted unreachable, and its pods evicted."""
        node, pods = cluster.get("node", lost), ours(cluster, "pods")
        now = time.monotonic() - start
        if condition(node, "Ready") != "True":
            marks.setdefault("NotReady", now)
        if any(t["key"] == "node.kubernetes.io/unreachable" and t["effect"] == "NoExecute"
               for t in node["spec"].get("taints", [])):
            marks.setdefault("tainted unreachable", now)
        if any(p["metadata"].get("deletionTimestamp") for p in pods
               if p["metadata"]["uid"] in moving):
            marks.setdefault("evicted", now)
        ready: dict[str, int] = defaultdict(int)
        for p in pods:
            if p["spec"].get("nodeName") != lost and not p["metadata"].get(
                    "deletionTimestamp") and owner_kind(p) == "Deployment" and \
                    condition(p, "Ready") == "True":
                ready[p["metadata"]["labels"]["app.kubernetes.io/name"]] += 1
        return all(ready[name] >= count for name, count in wanted.items())

    start, killed = time.monotonic(), time.time()
    nodes.stop(lost)
    try:
        took = until(f"the stateless pods of {lost} Ready elsewhere", failed_over,
                     FAILOVER_LIMIT + 60, cluster)
        after = pods_by_uid(cluster)
    finally:
        nodes.start(lost)
    benchmark(f"node {lost} lost: Deployments waiting for a dependency that ran only there: "
              + (", ".join(f"{n} ({', '.join(d)})" for n, d in sorted(waiting.items()))
                 or "none"))
    benchmark(f"node {lost} lost (every process killed): its {len(moving)} stateless pods "
              f"(but those waiting) Ready elsewhere after {took:.1f} s (" + ", ".join(
                  f"{what} after {t:.1f} s" for what, t in sorted(marks.items(),
                                                                  key=lambda m: m[1])) + ")")
    benchmark(f"node {lost} lost: the slowest replacements, seconds after the kill "
              "(created/scheduled/initialized/Ready): " + slowest(after.values(), killed))
    assert took <= FAILOVER_LIMIT, f"{took:.1f} s > {FAILOVER_LIMIT} s ({marks})"
    # nothing else restarted: every other pod is the same pod, restarted no more often
    for uid, p in before.items():
        if uid in moving:
            continue
        assert uid in after and not after[uid]["metadata"].get("deletionTimestamp"), \
            f"{p['metadata']['name']} on {p['spec']['nodeName']} was replaced"
        restarts = [[c.get("restartCount", 0) for c in q["status"].get("containerStatuses", [])]
                    for q in (p, after[uid])]
        assert restarts[0] == restarts[1], p["metadata"]["name"]
    back = until(f"{lost} back and the estate settled", lambda: condition(
        cluster.get("node", lost), "Ready") == "True" and settled(cluster), 300, cluster)
    benchmark(f"node {lost} back: every workload Ready again after {back:.1f} s (its "
              "StatefulSet pods Ready on their claims, the evicted pods gone)")
    survivors = pods_by_uid(cluster)
    assert {uid for uid in before if uid not in moving} <= set(survivors)
