"""The CrossGuard policy pack (policy/): every policy lets the conventions through and stops a
breach, on hand-made resource arguments, through the SDK's own analyzer, and on what the real
program registers for both stacks."""

from __future__ import annotations

import copy
import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pulumi_policy.policy as sdk
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime import proto
from pulumi.runtime.proto import analyzer_pb2_grpc
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.deserialize import SPECIAL_SECRET_SIG, SPECIAL_SIG_KEY
from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy

from tests.harness import Registration, has_secret, unwrap

POLICY_DIR = Path(__file__).resolve().parent.parent / "policy"
sys.path.insert(0, str(POLICY_DIR))  # how `pulumi` runs the pack: policy/ first on sys.path
mp = importlib.import_module("manacore_policies")
POLICIES = {p.name: p for p in mp.POLICIES}
RESOURCE_POLICIES = {n for n, p in POLICIES.items() if not isinstance(p, StackValidationPolicy)}

CONTAINER, VOLUME, IMAGE = mp.CONTAINER, mp.VOLUME, mp.REMOTE_IMAGE
DEPLOYMENT, STATEFUL_SET = "kubernetes:apps/v1:Deployment", mp.STATEFUL_SET
PVC, CONFIG_MAP = mp.PVC, mp.CONFIG_MAP
UNKNOWN_STRING = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # the engine's unknown string


def secret(value: Any) -> dict[str, Any]:
    """A value as the engine sends a secret: wrapped with the secret signature."""
    return {SPECIAL_SIG_KEY: SPECIAL_SECRET_SIG, "value": value}


def options(protect: bool = False) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def violations(policy: str, type_: str, props: dict[str, Any], *, protect: bool = False,
               name: str = "resource") -> list[str]:
    """Messages `policy` reports for one resource, its inputs given in wire format and read
    as the pack reads them (secret markers kept, unknowns checked)."""
    args = ResourceValidationArgs(
        type_, unknown_checking_proxy(mp.marked(props)),
        f"urn:pulumi:macmini::manacore::{type_}::{name}", name, options(protect), None)
    found: list[str] = []
    POLICIES[policy].validate(args, lambda message, urn=None: found.append(message))
    return found


def container(**overrides: Any) -> dict[str, Any]:
    props = {"name": "manacore-app-chat-backend", "image": "sha256:0f3c", "memory": 256.0,
             "ports": [{"internal": 3030.0, "external": 3030.0, "ip": "127.0.0.1",
                        "protocol": "tcp"}],
             "envs": ["PORT=3030", "NODE_ENV=production"]}
    return {**props, **overrides}


def pod(kind: str = DEPLOYMENT, name: str = "chat-backend", namespace: str = "manacore-apps",
        **container_overrides: Any) -> dict[str, Any]:
    main = {"name": name, "image": "ghcr.io/manacore/chat-backend:2026.11.0",
            "resources": {"limits": {"memory": "256Mi"}},
            "env": [{"name": "PORT", "value": "3030"}], **container_overrides}
    return {"metadata": {"name": name, "namespace": namespace},
            "spec": {"template": {"spec": {"containers": [main]}}}}


def port(external: float | None, ip: str | None = "127.0.0.1", internal: float = 3030.0):
    entry = {"internal": internal, "protocol": "tcp"}
    if external is not None:
        entry["external"] = external
    if ip is not None:
        entry["ip"] = ip
    return [entry]


# (policy, resource type, inputs, protect, expected message fragment or None for "passes")
CASES = [
    # names
    ("manacore-names", CONTAINER, container(), False, None),
    ("manacore-names", CONTAINER, container(name="chat-backend"), False,
     "breaks the convention manacore-{category}-{service}"),
    ("manacore-names", CONTAINER, container(name="manacore-app-chat-backnd"), False,
     "is not a service of the catalogue"),
    ("manacore-names", CONTAINER, container(name="manacore-matrix-bots-data-init"), False, None),
    ("manacore-names", VOLUME, {"name": "manacore-postgres-data"}, True, None),
    ("manacore-names", VOLUME, {"name": "synapse_data"}, True, None),  # legacy, adopted
    ("manacore-names", VOLUME, {"name": "pg_data"}, True, "breaks the convention"),
    ("manacore-names", VOLUME, {"name": "manacore-nobody-data"}, True,
     "belongs to no service"),
    ("manacore-names", VOLUME, {}, True, "no explicit name"),
    ("manacore-names", DEPLOYMENT, pod(), False, None),
    ("manacore-names", DEPLOYMENT, pod(namespace="default"), False,
     "belongs in namespace manacore-apps"),
    # published ports
    ("published-ports", CONTAINER, container(), False, None),
    ("published-ports", CONTAINER, container(name="manacore-infra-postgres",
                                             ports=port(5432.0, internal=5432.0)), False, None),
    ("published-ports", CONTAINER, container(ports=port(3030.0, ip=None)), False,
     "bound to 0.0.0.0"),
    ("published-ports", CONTAINER, container(ports=port(3030.0, ip="0.0.0.0")), False,
     "bind it to 127.0.0.1"),
    ("published-ports", CONTAINER, container(ports=port(8080.0)), False,
     "outside the range of role backend: use 3000-3099"),
    ("published-ports", CONTAINER, container(ports=port(None)), False, "random host port"),
    # memory limits
    ("memory-limits", CONTAINER, container(), False, None),
    ("memory-limits", CONTAINER, {k: v for k, v in container().items() if k != "memory"},
     False, "no memory limit"),
    ("memory-limits", DEPLOYMENT, pod(), False, None),
    ("memory-limits", DEPLOYMENT, pod(resources={"limits": {"cpu": "1"}}), False,
     "containers[0] chat-backend: no resources.limits.memory"),
    # pinned images
    ("pinned-images", IMAGE, {"name": "postgres:16.4-alpine"}, False, None),
    ("pinned-images", IMAGE, {"name": "ghcr.io/manacore/chat-web@sha256:9f86d0"}, False, None),
    ("pinned-images", IMAGE, {"name": "postgres:latest"}, False, "tag 'latest'"),
    ("pinned-images", IMAGE, {"name": "localhost:5000/postgres"}, False, "tag 'missing'"),
    ("pinned-images", CONTAINER, container(image="redis"), False, "not pinned"),
    ("pinned-images", DEPLOYMENT, pod(), False, None),
    ("pinned-images", DEPLOYMENT, pod(image="grafana/grafana:latest"), False,
     "containers[0] chat-backend: image 'grafana/grafana:latest' is not pinned"),
    # stateful storage
    ("stateful-storage-protected", VOLUME, {"name": "manacore-postgres-data"}, True, None),
    ("stateful-storage-protected", VOLUME, {"name": "manacore-postgres-data"}, False,
     "stateful volume is not protected"),
    ("stateful-storage-protected", PVC, {"metadata": {"name": "postgres-data"}}, True, None),
    ("stateful-storage-protected", PVC, {"metadata": {"name": "postgres-data"}}, False,
     "stateful claim is not protected"),
    ("stateful-storage-protected", STATEFUL_SET,
     {"spec": {"persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete"}}}, False,
     "whenDeleted is Delete"),
    # secrets in the environment
    ("no-plain-secrets", CONTAINER,
     container(envs=secret(["PORT=3030", "POSTGRES_PASSWORD=hunter2"])), False, None),
    ("no-plain-secrets", CONTAINER,
     container(envs=["PORT=3030", secret("POSTGRES_PASSWORD=hunter2")]), False, None),
    ("no-plain-secrets", CONTAINER, container(envs=["PORT=3030", "POSTGRES_PASSWORD=hunter2"]),
     False, "POSTGRES_PASSWORD holds a literal value"),
    ("no-plain-secrets", CONTAINER,
     container(envs=["DATABASE_URL=postgresql://chat:hunter2@manacore-infra-postgres/chat"]),
     False, "DATABASE_URL has a password written into its URL"),
    ("no-plain-secrets", DEPLOYMENT, pod(env=[
        {"name": "CHAT_DB_PASSWORD",
         "valueFrom": {"secretKeyRef": {"name": "chat-backend-secrets",
                                        "key": "CHAT_DB_PASSWORD"}}},
        {"name": "DATABASE_URL", "value": "postgresql://chat:$(CHAT_DB_PASSWORD)@postgres/chat"},
        {"name": "S3_SECRET_KEY", "value": "$(S3_SECRET_KEY)"}]), False, None),
    ("no-plain-secrets", DEPLOYMENT, pod(env=[{"name": "GEMINI_API_KEY", "value": "AIza-1"}]),
     False, "containers[0] chat-backend: GEMINI_API_KEY holds a literal value"),
    ("no-plain-secrets", CONFIG_MAP, {"data": {"GRAFANA_URL": "http://grafana:3000"}}, False,
     None),
    ("no-plain-secrets", CONFIG_MAP, {"data": {"API_TOKEN": "abc123"}}, False,
     "secrets belong in a Secret"),
]


@pytest.mark.parametrize(("policy", "type_", "props", "protect", "expected"), CASES,
                         ids=[f"{c[0]}-{i}-{'pass' if c[4] is None else 'fail'}"
                              for i, c in enumerate(CASES)])
def test_policy_case(policy, type_, props, protect, expected):
    found = violations(policy, type_, props, protect=protect)
    if expected is None:
        assert found == []
    else:
        assert len(found) == 1 and expected in found[0], found


def test_every_policy_has_a_passing_and_a_failing_case():
    outcomes = {(c[0], c[4] is None) for c in CASES}
    assert {(name, ok) for name in RESOURCE_POLICIES for ok in (True, False)} <= outcomes
    # the stack policy: test_self_healing_*
    assert set(POLICIES) - RESOURCE_POLICIES == {"self-healing"}


def test_the_hard_rules_are_mandatory():
    assert len(POLICIES) == len(mp.POLICIES) == 7
    assert {p.enforcement_level for p in mp.POLICIES} == {EnforcementLevel.MANDATORY}


def test_port_ranges_and_legacy_names_come_from_the_catalogue():
    known = mp.catalogue()
    assert {"manacore-postgres", "synapse_data", "matrix_mana_bot_data"} <= \
        set(known.legacy_volumes)
    assert known.containers["manacore-app-chat-backend"].role == "backend"
    # a legacy name is only accepted when the catalogue lists it
    assert violations("manacore-names", VOLUME, {"name": "grafana_data"}, protect=True) == []
    assert violations("manacore-names", VOLUME, {"name": "grafana_old"}, protect=True)


def test_a_volume_the_catalogue_marks_scratch_need_not_be_protected(monkeypatch):
    known = mp.catalogue()
    monkeypatch.setattr(mp, "catalogue", lambda: known._replace(
        scratch=frozenset({"manacore-searxng-cache-data"})))
    policy = "stateful-storage-protected"
    assert violations(policy, VOLUME, {"name": "manacore-searxng-cache-data"}) == []
    assert violations(policy, VOLUME, {"name": "manacore-redis-data"})


def test_unknown_values_during_preview_are_not_violations():
    props = container(memory=UNKNOWN_STRING, image=UNKNOWN_STRING,
                      ports=[{"internal": 3030.0, "external": 3030.0, "ip": UNKNOWN_STRING}])
    for name in ("memory-limits", "pinned-images", "published-ports"):
        assert violations(name, CONTAINER, props) == []


def analyze(props: dict[str, Any], *, protect: bool = False) -> list[proto.AnalyzeDiagnostic]:
    """One resource through pulumi-policy's own analyzer servicer, as `pulumi preview` sends
    it (what the pack's gRPC server runs; constructing `PolicyPack` would block)."""
    servicer = sdk._PolicyAnalyzerServicer("manacore-conventions", "0.1.0", mp.POLICIES,
                                           EnforcementLevel.MANDATORY)
    struct = struct_pb2.Struct()
    struct.update(props)
    request = proto.AnalyzeRequest(
        type=CONTAINER, name="manacore-infra-postgres", properties=struct,
        urn=f"urn:pulumi:macmini::manacore::{CONTAINER}::manacore-infra-postgres",
        options=proto.AnalyzerResourceOptions(protect=protect))
    return list(servicer.Analyze(request, None).diagnostics)


def test_secret_outputs_pass_and_literals_fail_through_the_sdk(monkeypatch):
    monkeypatch.setattr(sdk, "deserialize_properties", sdk.deserialize_properties)
    props = container(name="manacore-infra-postgres", ports=port(5432.0, internal=5432.0))
    as_secret = {**props, "envs": secret(["POSTGRES_PASSWORD=hunter2"])}
    as_literal = {**props, "envs": ["POSTGRES_PASSWORD=hunter2"]}
    # pulumi-policy as shipped hands the policy plain values (pulumi/pulumi-policy#241) …
    assert [d.policyName for d in analyze(as_secret)] == ["no-plain-secrets"]
    mp.keep_secret_markers()  # … what policy/__main__.py does before serving
    mp.keep_secret_markers()  # idempotent
    assert analyze(as_secret) == []
    [diagnostic] = analyze(as_literal)
    assert diagnostic.policyName == "no-plain-secrets"
    assert diagnostic.enforcementLevel == proto.MANDATORY
    assert "POSTGRES_PASSWORD holds a literal value" in diagnostic.message
    assert "hunter2" not in diagnostic.message


@pytest.fixture
def served_pack():
    """The pack started the way the Pulumi CLI starts it (`python -m pulumi.policy <engine>
    <program>` in policy/), reached over its gRPC port like the engine does."""
    process = subprocess.Popen([sys.executable, "-m", "pulumi.policy", "127.0.0.1:0", "."],
                               cwd=POLICY_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        port = process.stdout.readline().strip()  # PolicyPack prints its port, then serves
        assert port.isdigit(), process.stderr.read() if process.poll() is not None else port
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_served_pack_blocks_literal_secrets_and_lets_secret_outputs_pass(served_pack):
    info = served_pack.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
    assert info.name == "manacore-conventions"
    assert {p.name for p in info.policies} == set(POLICIES)
    assert {p.enforcementLevel for p in info.policies} == {proto.MANDATORY}

    def analyze_remote(envs: Any) -> list[str]:
        struct = struct_pb2.Struct()
        struct.update(container(name="manacore-infra-postgres",
                                ports=port(5432.0, internal=5432.0), envs=envs))
        request = proto.AnalyzeRequest(type=CONTAINER, name="manacore-infra-postgres",
                                       urn=f"urn:pulumi:macmini::manacore::{CONTAINER}::pg",
                                       properties=struct)
        return [d.policyName for d in served_pack.Analyze(request, timeout=30).diagnostics]

    assert analyze_remote(secret(["POSTGRES_PASSWORD=hunter2"])) == []
    assert analyze_remote(["POSTGRES_PASSWORD=hunter2"]) == ["no-plain-secrets"]


def check_registrations(registrations: list[Registration]) -> dict[str, list[str]]:
    """Every policy over every registration, as the engine would send them to the pack (reads
    of existing resources, `Resource.get`, are not analysed: they create nothing): resource
    policies one by one, stack policies over all of them (their inputs standing for the
    outputs, as the mocks return them)."""
    found: dict[str, list[str]] = {}
    resources = []
    for r in (r for r in registrations if not r.read_id):
        opts = PolicyResourceOptions(r.protect, r.ignore_changes, None, [],
                                     PolicyCustomTimeouts(0, 0, 0), [], r.parent or None)
        props = unknown_checking_proxy(mp.marked(r.inputs))
        args = ResourceValidationArgs(r.type, props, r.urn, r.name, opts, None)
        resources.append(PolicyResource(r.type, props, r.urn, r.name, opts, None, None, [], {}))
        for policy in mp.POLICIES:
            if isinstance(policy, StackValidationPolicy):
                continue
            try:
                policy.validate(args, lambda message, urn=None, p=policy.name:
                                found.setdefault(p, []).append(message))
            except UnknownValueError as exc:  # the SDK would downgrade this to advisory
                found.setdefault(policy.name, []).append(f"unknown: {exc.message}")
    for policy in mp.POLICIES:
        if isinstance(policy, StackValidationPolicy):
            policy.validate(StackValidationArgs(resources), lambda message, urn=None,
                            p=policy.name: found.setdefault(p, []).append(message))
    return found


@pytest.mark.parametrize(("stack", "kinds"), [
    ("macmini", {CONTAINER, VOLUME, IMAGE}),
    ("k3s", {DEPLOYMENT, STATEFUL_SET, PVC, "kubernetes:apps/v1:DaemonSet"}),
])
def test_the_real_program_passes_every_policy(stack, kinds, stack_run):
    run = stack_run(stack)
    assert kinds <= {r.type for r in run.registrations}
    assert check_registrations(run.registrations) == {}


def test_a_breach_in_the_real_program_is_caught(stack_run):
    """The check above is not vacuous: break the macmini registrations the way an adapter bug
    would, and each policy names the resource."""
    regs = copy.deepcopy(stack_run("macmini").registrations)
    by_name = {r.name: r for r in regs}
    postgres = by_name["manacore-infra-postgres"]
    assert has_secret(postgres.inputs["envs"])
    postgres.inputs["envs"] = unwrap(postgres.inputs["envs"])  # secret Output lost
    postgres.inputs["ports"][0]["ip"] = "0.0.0.0"
    del postgres.inputs["memory"]
    volume = next(r for r in regs if r.type == VOLUME and not r.read_id)  # a managed one
    volume.protect = False
    found = check_registrations(regs)
    assert set(found) == {"no-plain-secrets", "published-ports", "memory-limits",
                          "stateful-storage-protected"}
    assert all(m.startswith(("manacore-infra-postgres:", f"{volume.name}:"))
               for messages in found.values() for m in messages)


def k3s_workloads(registrations: list[Registration]) -> dict[str, Registration]:
    """The k3s registrations of workloads and disruption budgets, by Kubernetes kind/name."""
    return {f"{r.type.rsplit(':', 1)[1]}/{r.inputs['metadata']['name']}": r
            for r in registrations if r.type in (DEPLOYMENT, STATEFUL_SET, mp.PDB)}


def test_self_healing_holds_for_the_real_k3s_program_and_is_not_vacuous(stack_run):
    """What services.py says of availability, on what the k3s program registers: each breach
    an adapter bug could bring is named with its workload."""
    regs = copy.deepcopy(stack_run("k3s").registrations)
    k = k3s_workloads(regs)
    assert "PodDisruptionBudget/auth" in k and "PodDisruptionBudget/postgres" not in k
    del regs[regs.index(k["PodDisruptionBudget/auth"])]  # auth loses its budget
    k["Deployment/gateway"].inputs["spec"]["replicas"] = 1.0  # user-facing with one copy
    k["Deployment/chat-web"].inputs["spec"]["strategy"] = {"type": "Recreate"}
    del k["Deployment/todo-web"].inputs["spec"]["template"]["spec"]["topologySpreadConstraints"]
    k["Deployment/search"].inputs["spec"]["template"]["spec"]["tolerations"][1][
        "tolerationSeconds"] = 300.0  # Kubernetes' default for unreachable
    k["StatefulSet/postgres"].inputs["spec"]["replicas"] = 2.0  # a second postmaster
    k["Deployment/telegram-ollama-bot"].inputs["spec"]["strategy"] = {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1.0, "maxUnavailable": 0.0}}
    budget = k["PodDisruptionBudget/matrix-web"].inputs["spec"]
    budget["maxUnavailable"] = 0.0  # a budget that blocks every drain
    found = check_registrations(regs)
    assert set(found) == {"self-healing"}
    messages = sorted(found["self-healing"])
    expected = [
        ("auth", "no PodDisruptionBudget"), ("chat-web", "must never drop below"),
        ("gateway", "needs 2 replicas or more, not 1"), ("matrix-web", "no PodDisruptionBudget"),
        ("postgres", "must run once but has 2 replicas"),
        ("search", "tolerate node.kubernetes.io/unreachable"),
        ("telegram-ollama-bot", "use strategy Recreate"), ("todo-web", "spread over nodes")]
    assert len(messages) == len(expected), messages
    for service, fragment in expected:
        assert [m for m in messages if m.split(": ")[1].split()[0].rstrip(":") == service
                and fragment in m], (service, messages)


def test_self_healing_accepts_anti_affinity_and_min_available():
    """Other spellings of the same promise pass: required anti-affinity instead of a spread,
    a budget by minAvailable."""
    labels = {"app.kubernetes.io/name": "auth"}
    pod = {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": labels}}]}},
        "tolerations": [{"key": t, "operator": "Exists", "effect": "NoExecute",
                         "tolerationSeconds": 30.0} for t in mp.NODE_LOSS_TAINTS]}
    deployment = {"metadata": {"name": "auth", "namespace": "manacore-core"}, "spec": {
        "replicas": 3.0, "strategy": {"type": "RollingUpdate", "rollingUpdate": {
            "maxUnavailable": 0.0, "maxSurge": 1.0}},
        "template": {"metadata": {"labels": {**labels, "x": "y"}}, "spec": pod}}}
    budget = {"metadata": {"name": "auth", "namespace": "manacore-core"},
              "spec": {"minAvailable": 2.0, "selector": {"matchLabels": labels}}}

    def check(*resources: tuple[str, dict[str, Any]]) -> list[str]:
        opts = options()
        found: list[str] = []
        POLICIES["self-healing"].validate(StackValidationArgs([
            PolicyResource(type_, unknown_checking_proxy(mp.marked(props)), f"urn:{i}",
                           f"r{i}", opts, None, None, [], {})
            for i, (type_, props) in enumerate(resources)]),
            lambda message, urn=None: found.append(message))
        return found

    assert check((DEPLOYMENT, deployment), (mp.PDB, budget)) == []
    budget["spec"]["minAvailable"] = 3.0  # all of them: a drain could never evict one
    assert "no PodDisruptionBudget" in check((DEPLOYMENT, deployment), (mp.PDB, budget))[0]
    budget["metadata"]["namespace"] = "manacore-apps"
    budget["spec"]["minAvailable"] = 1.0  # right numbers, wrong namespace
    assert "no PodDisruptionBudget" in check((DEPLOYMENT, deployment), (mp.PDB, budget))[0]
