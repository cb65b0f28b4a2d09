"""`pulumi preview/up/refresh/destroy -s k3s` by the real Pulumi engine, language host and
kubernetes provider (`scripts/toolchain`) against the suite's cluster (`scripts/cluster`),
whose real nodes run the pods: every step a user takes on the cluster, in order, on one
stack.

Every secret is set with `pulumi config set --secret`, so no random plugin is needed (the
generated path stays tested under mocks). The tests share the stack and run in file order.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from catalog.settings import ROOT
from tests.conftest import resolved
from tests.harness import run_program
from tests.realengine.conftest import (
    REAL_NODE,
    WORKLOADS,
    Cluster,
    benchmark_time,
    clear_cluster,
    not_ready,
    random_env,
)
from tests.realengine.pods import exec_in, ready, restarted, until
from tests.realengine.pulumi_cli import PulumiStack
from tests.realengine.release import normalised

pytestmark = pytest.mark.kube_cluster


@pytest.fixture(scope="module")
def secrets() -> dict[str, str]:
    return random_env(resolved("k3s"))


@pytest.fixture(scope="module")
def k3s(tmp_path_factory: pytest.TempPathFactory, toolchain: Path, cluster: Cluster,
        node_images: list[str], secrets: dict[str, str], repository: dict[str, Any]
        ) -> PulumiStack:
    clear_cluster(cluster)
    stack = PulumiStack.create(tmp_path_factory.mktemp("pulumi-k3s"), "k3s",
                               env={"KUBECONFIG": str(cluster.kubeconfig)})
    # the release's repository and schedule, so the objects compare field by field
    stack.config({"kubeContext": cluster.context, "backup": repository["backup"]})
    stack.config(secrets, secret=True)
    return stack


def mock_types(cluster: Cluster, secrets: dict[str, str]) -> Counter[str]:
    """What the program registers under mocks with the same settings and secrets."""
    run = run_program("k3s", config={"kubeContext": cluster.context}, secrets=secrets)
    return Counter(r.type for r in run.registrations)


def workloads(cluster: Cluster) -> list[dict[str, Any]]:
    return cluster.items(WORKLOADS, "-A")


def test_preview_plans_what_the_program_registers(k3s: PulumiStack, cluster: Cluster,
                                                  secrets: dict[str, str]) -> None:
    """Every resource passes the provider's Check (a failure fails the preview), and the
    plan creates exactly what the program registers under mocks, type by type."""
    with benchmark_time("pulumi preview -s k3s (empty stack)"):
        plan = k3s.preview_json()
    planned = Counter(step["newState"]["type"] for step in plan["steps"]
                      if step["op"] == "create")
    planned.pop("pulumi:pulumi:Stack", None)
    assert planned == mock_types(cluster, secrets)
    errors = [d for d in plan.get("diagnostics", []) if d.get("severity") == "error"]
    assert not errors


def unserved(cluster: Cluster) -> list[str]:
    """The estate's Services with a selector that no ready endpoint backs yet: what the
    provider's Service await proved, which the stack skips (components/kubernetes.py)."""
    ready = {(s["metadata"]["namespace"], s["metadata"]["labels"]["kubernetes.io/service-name"])
             for s in cluster.items("endpointslices", "-A")
             if any((e.get("conditions") or {}).get("ready") for e in s.get("endpoints") or [])}
    return [f"{m['namespace']}/{m['name']}" for svc in cluster.items("services", "-A")
            if (m := svc["metadata"])["namespace"].startswith("manacore-")
            and svc["spec"].get("selector") and (m["namespace"], m["name"]) not in ready]


def test_up_creates_the_estate_and_every_workload_becomes_ready(k3s: PulumiStack,
                                                                cluster: Cluster) -> None:
    with benchmark_time("pulumi up -s k3s on real nodes (whole estate, every workload Ready)"):
        k3s.up()
    items = workloads(cluster)
    assert not not_ready(items)
    pods = cluster.items("pods", "-A", "-l", "app.kubernetes.io/managed-by=pulumi")
    assert pods and all(REAL_NODE.fullmatch(p["spec"]["nodeName"]) and ready(p) for p in pods)
    # no crash on the way up: a restart means a crash or a liveness/startup probe that ran out
    assert not restarted(pods)
    # data for the later steps to keep: a row in PostgreSQL, on its claim
    exec_in(cluster, postgres_pod(cluster), *PSQL, "CREATE TABLE marker (v text); "
            "INSERT INTO marker VALUES ('written after the first up')")
    deadline = time.monotonic() + 30  # the endpoint controllers follow the pods within seconds
    while (left := unserved(cluster)) and time.monotonic() < deadline:
        time.sleep(1)
    assert not left, "Services without a ready endpoint"
    assert len([s for s in cluster.items("services", "-A")
                if s["metadata"]["namespace"].startswith("manacore-")]) > 40
    names = {i["metadata"]["name"] for i in [*items, *cluster.items("cronjobs", "-A")]}
    assert {s.name for s in resolved("k3s").services if not s.native} <= names
    outputs = k3s.outputs()
    assert {"services", "hostnames"} <= set(outputs), sorted(outputs)


PSQL = ("psql", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", "postgres", "-tAc")


def postgres_pod(cluster: Cluster) -> dict[str, Any]:
    pg = resolved("k3s")["postgres"]
    return until("PostgreSQL Ready", lambda: next(
        (p for p in cluster.items("pods", "-n", pg.namespace, "-l",
                                  f"app.kubernetes.io/name={pg.name}") if ready(p)), None))


def marker(cluster: Cluster) -> list[str]:
    return exec_in(cluster, postgres_pod(cluster), *PSQL, "SELECT v FROM marker").stdout.split(
        "\n")[:1]


def test_a_second_preview_has_no_changes(k3s: PulumiStack, cluster: Cluster) -> None:
    with benchmark_time("pulumi preview -s k3s (no changes)"):
        k3s.preview("--expect-no-changes")
    with benchmark_time("pulumi up -s k3s (no-op)"):
        out = k3s.up().stdout
    assert "unchanged" in out and "updated" not in out.split("Resources:")[-1], out
    assert marker(cluster) == ["written after the first up"]


def test_nothing_secret_is_in_the_state_or_the_outputs(k3s: PulumiStack,
                                                       secrets: dict[str, str]) -> None:
    state = json.dumps(k3s.export())
    outputs = json.dumps(k3s.outputs())
    leaked = [name for name, value in secrets.items() if value in state or value in outputs]
    assert not leaked


def test_a_memory_change_rolls_exactly_that_workload(k3s: PulumiStack, cluster: Cluster) -> None:
    """A user edits one service's memory in services.py: the preview updates that Deployment
    (and nothing else), and `up` rolls it."""
    catalogue = (ROOT / "services.py").read_text()
    at = catalogue.index('id="gateway"')  # the gateway's declaration: its memory follows
    memory = catalogue.index('memory="192Mi"', at)
    assert catalogue.index("service(", at) > memory  # still inside the gateway's declaration
    copy = k3s.workdir / "services.py"
    copy.write_text(catalogue[:memory] + 'memory="320Mi"' +
                    catalogue[memory + len('memory="192Mi"'):])
    try:
        plan = k3s.preview_json()
        changed = sorted(f"{s['op']} {s['urn'].rsplit('::', 1)[-1]}" for s in plan["steps"]
                         if s["op"] not in ("same", "read"))
        gateway = resolved("k3s")["gateway"].name
        assert len(changed) == 1 and changed[0].startswith("update "), changed
        assert changed[0].endswith(f"-deployment-{gateway}"), changed
        k3s.up()
        deploy = cluster.get("deployment", gateway, "-n", namespace_of(cluster, gateway))
        limits = deploy["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert limits["memory"] == "320Mi"
    finally:
        copy.write_text(catalogue)
    k3s.up()
    assert marker(cluster) == ["written after the first up"]


def namespace_of(cluster: Cluster, name: str) -> str:
    items = cluster.items("deployments", "-A")
    return next(i["metadata"]["namespace"] for i in items if i["metadata"]["name"] == name)


def test_refresh_shows_and_up_repairs_drift(k3s: PulumiStack, cluster: Cluster) -> None:
    """Someone deletes a ConfigMap by hand: `pulumi refresh` finds it gone, `up` recreates it."""
    ours = [m for m in cluster.items("configmaps", "-A")
            if m["metadata"]["namespace"].startswith("manacore-")
            and not m["metadata"]["name"].startswith("kube-")]
    victim = ours[0]["metadata"]
    cluster.kubectl("delete", "configmap", victim["name"], "-n", victim["namespace"])
    out = k3s.run("refresh", *k3s.stack_args(), "--yes").stdout
    assert "deleted" in out, out
    k3s.preview_json()
    k3s.up()
    cluster.kubectl("get", "configmap", victim["name"], "-n", victim["namespace"])
    k3s.preview("--expect-no-changes")


def test_the_policy_pack_runs_in_the_real_analyzer(k3s: PulumiStack) -> None:
    """The CrossGuard pack passes the stack as it is. No stack setting gets a violation past
    the program's own rules (an unpinned `tag` stops the program before the analyzer sees a
    resource), so the violations are adapter or mapping bugs: claims registered without
    `protect`, rolling updates that may drop a replica (the stack policy `self-healing`), each
    rejected by the analyzer before anything changes."""
    analyzer = str(k3s.workdir / "policy" / "analyzer")
    clean = k3s.preview("--policy-pack", analyzer)
    assert "manacore-conventions" in clean.stdout
    k3s.config({"tag": "latest"})
    try:
        unpinned = k3s.preview("--policy-pack", analyzer, check=False)
        assert unpinned.returncode != 0
        assert "must be a pinned release" in unpinned.stderr
    finally:
        k3s.config({"tag": resolved("k3s").settings.tag})

    def preview_with_bug(path: str, right: str, wrong: str) -> str:
        """The pack's verdict on a preview of the project with `right` replaced by `wrong` in
        one file (an adapter or mapping bug): refused, and its output."""
        file = k3s.workdir / path
        source = file.read_text()
        assert source.count(right) == 1
        file.write_text(source.replace(right, wrong))
        try:
            bug = k3s.preview("--policy-pack", analyzer, check=False)
        finally:
            file.write_text(source)
        assert bug.returncode != 0
        return bug.stdout + bug.stderr

    unprotected = preview_with_bug("components/kubernetes.py", "protect=obj.stateful or None",
                                   "protect=None")
    assert "stateful claim is not protected" in unprotected
    assert "mandatory" in unprotected.lower()
    # the stack policy too (it sees every resource at once): a mapping whose rolling updates
    # may drop a replica is stopped before anything changes
    surge = '"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}'
    dropping = preview_with_bug("exports/kubernetes.py", surge,
                                surge.replace('"maxUnavailable": 0', '"maxUnavailable": 1'))
    assert "self-healing" in dropping and "must never drop below its replicas" in dropping


def test_protected_claims_refuse_destroy_and_survive_it(
        k3s: PulumiStack, cluster: Cluster, deployed: dict[str, Any]) -> None:
    claims = {(c["metadata"]["namespace"], c["metadata"]["name"])
              for c in cluster.items("pvc", "-A")}
    assert claims
    refused = k3s.run("destroy", *k3s.stack_args(), "--yes", check=False)
    assert refused.returncode != 0
    assert "protected" in refused.stdout + refused.stderr
    k3s.run("state", "unprotect", "--all", *k3s.stack_args(), "--yes")
    k3s.run("destroy", *k3s.stack_args(), "--yes")
    after = {(c["metadata"]["namespace"], c["metadata"]["name"])
             for c in cluster.items("pvc", "-A")}
    assert claims <= after  # retained on delete: the data outlives the stack


@pytest.fixture(scope="module")
def deployed(k3s: PulumiStack, cluster: Cluster) -> dict[str, Any]:
    """The objects `pulumi up` made (taken once, while the stack is deployed)."""
    return normalised(cluster)


def test_pulumi_up_and_helm_install_make_the_same_objects(
        deployed: dict[str, Any], release: dict[str, Any]) -> None:
    """Parity for real: `helm install` of the default chart (the same catalogue, rendered for
    stack k3s; the session's release, named like the stack's instance, its objects taken
    right after the install) left the API server holding the same objects, field by field,
    as `pulumi up` did."""
    installed = release["objects"]
    assert sorted(set(deployed) ^ set(installed)) == []
    differ = [f"{key}: {path}: pulumi {a!r} / helm {b!r}" for key in deployed
              for path, a, b in differences(deployed[key], installed[key])]
    seen: dict[str, str] = {}  # one line per differing field path (the first object)
    for line in differ:
        seen.setdefault(line.split(": ", 2)[1], line)
    assert not differ, f"{len(differ)} differences:\n" + "\n".join(seen.values())


def differences(a: Any, b: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b))
                for d in differences(a.get(k), b.get(k), f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [(path, a, b)]
