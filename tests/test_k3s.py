"""Stack k3s under mocks: the kubernetes adapter behind the same components as macmini, and
parity of its objects with the docker target (the resolved macmini estate and Compose)."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest

from catalog.resolve import ResolvedEstate, ResolvedService
from catalog.units import mebibytes, parse_memory
from exports.kubernetes import (
    FAILOVER_SECONDS,
    NODE_LOSS_TAINTS,
    WAIT_IMAGE,
    concrete_objects,
    interchangeable,
)
from tests.harness import Registration, Run, has_secret

K8S = "kubernetes:"
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "CronJob")
SIX = {"manacore-infra", "manacore-core", "manacore-apps", "manacore-matrix",
       "manacore-monitoring", "manacore-tools"}


@pytest.fixture(scope="module")
def run(stack_run) -> Run:
    return stack_run("k3s")


@pytest.fixture(scope="module")
def estate(stack_estate) -> ResolvedEstate:
    return stack_estate("k3s")


def objects(run: Run, kind: str) -> dict[tuple[str, str], Registration]:
    """Registrations of one Kubernetes kind by (namespace, name)."""
    return {(r.inputs["metadata"].get("namespace", ""), r.inputs["metadata"]["name"]): r
            for r in run.registrations if r.type.startswith(K8S) and r.type.endswith(f":{kind}")}


def workload(run: Run, s: ResolvedService) -> Registration:
    found = [r for kind in WORKLOADS for key, r in objects(run, kind).items()
             if key == (s.namespace, s.name)]
    assert len(found) == 1, f"{s.id}: {len(found)} workloads"
    return found[0]


def pod(r: Registration) -> dict[str, Any]:
    spec = r.plain()["spec"]
    return spec.get("jobTemplate", {}).get("spec", spec)["template"]["spec"]


def container(r: Registration) -> dict[str, Any]:
    return pod(r)["containers"][0]


def env_keys(run: Run, s: ResolvedService) -> set[str]:
    c = container(workload(run, s))
    config = objects(run, "ConfigMap")[(s.namespace, f"{s.name}-env")].plain()["data"] or {}
    return set(config) | {e["name"] for e in c.get("env", [])}


def embedded(s: ResolvedService) -> set[str]:
    """Secrets defined under their own name only for `$(NAME)` in a value that mixes text and
    secrets (Docker interpolates them instead)."""
    return {n for t in s.environment.values() if len(t.parts) > 1 for n in t.secrets}


def test_the_six_namespaces(run):
    assert set(objects(run, "Namespace")) == {("", n) for n in SIX}
    for (_, name), r in objects(run, "Namespace").items():
        labels = r.inputs["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/warn"] == "restricted"
        # node-exporter's host access (SPEC's one exception) is admitted in its namespace
        # alone, where every other pod is still reported against "restricted"
        if name == "manacore-monitoring":
            assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
            assert labels["pod-security.kubernetes.io/audit"] == "restricted"
        else:
            assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_node_exporter_alone_sees_the_host(run):
    """Host network and PID and the host's /proc, /sys and / read-only, for node-exporter's
    DaemonSet alone; its headless Service lists every node's pod for the scraper."""
    workloads = {**objects(run, "DaemonSet"), **objects(run, "Deployment"),
                 **objects(run, "StatefulSet")}
    for (_, name), r in workloads.items():
        spec = r.inputs["spec"]["template"]["spec"]
        host = [v for v in spec.get("volumes", []) if "hostPath" in v]
        if name != "node-exporter":
            assert not host and not spec.get("hostNetwork") and not spec.get("hostPID"), name
            continue
        assert r.type == "kubernetes:apps/v1:DaemonSet"
        assert spec["hostNetwork"] is True and spec["hostPID"] is True
        assert sorted(v["hostPath"]["path"] for v in host) == ["/", "/proc", "/sys"]
        mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
        assert all(mounts[v["name"]]["readOnly"] for v in host)
        args = spec["containers"][0]["args"]
        assert {"--path.procfs=/host/proc", "--path.sysfs=/host/sys",
                "--path.rootfs=/rootfs"} <= set(args)
    service = objects(run, "Service")[("manacore-monitoring", "node-exporter")]
    assert service.inputs["spec"]["clusterIP"] == "None"


def test_every_kubernetes_object_uses_the_stack_provider_and_a_component_parent(run, estate):
    providers = [r for r in run.registrations if r.type == "pulumi:providers:kubernetes"]
    assert len(providers) == 1
    assert providers[0].inputs["context"] == estate.settings.kube_context
    by_urn = run.by_urn()
    k8s = [r for r in run.registrations if r.type.startswith(K8S)]
    assert len(k8s) > 100
    for r in k8s:
        assert r.provider.startswith(providers[0].urn), r.name
        assert by_urn[r.parent].type.startswith("manacore:stack:"), r.name


def test_components_hold_their_services(run, estate):
    """The components of macmini, instantiated with the kubernetes adapter."""
    by_urn = run.by_urn()
    parents = {by_urn[workload(run, s).parent].type for s in estate.containers}
    assert {"manacore:stack:InfraTier", "manacore:stack:AppService", "manacore:stack:MatrixStack",
            "manacore:stack:MonitoringStack", "manacore:stack:ToolsStack",
            "manacore:stack:CloudflareTunnel"} <= parents
    assert by_urn[workload(run, estate["postgres"]).parent].type == "manacore:stack:InfraTier"


def test_claims_are_protected_and_one_per_pod(run, estate):
    claims = objects(run, "PersistentVolumeClaim")
    expected = {(s.namespace, v.claim): v for s in estate.services for v in s.volumes
                if v.stateful}
    assert set(claims) == set(expected)
    assert {"mana-bot-data", "stats-bot-data", "project-doc-bot-data"} <= {n for _, n in claims}
    for key, r in claims.items():
        assert r.protect and r.retain_on_delete, key
        spec = r.plain()["spec"]
        assert spec["accessModes"] == ["ReadWriteOnce"]
        assert spec["storageClassName"] == estate.settings.storage_class
        assert spec["resources"]["requests"]["storage"] == expected[key].size
    # deleting a namespace deletes its claims: the namespaces holding them are kept too
    holding = {ns for ns, _ in claims}
    namespaces = {r.plain()["metadata"]["name"]: r for r in run.registrations
                  if r.type == "kubernetes:core/v1:Namespace"}
    assert holding and holding < set(namespaces)
    for name, r in namespaces.items():
        assert (r.protect, r.retain_on_delete) == ((True, True) if name in holding
                                                  else (False, False)), name
    assert not [r for r in run.registrations if r.protect and not r.type.endswith(
        ("PersistentVolumeClaim", "Namespace"))]


def test_workloads_as_resolved(run, estate):
    for s in estate.containers:
        r = workload(run, s)
        kind = r.type.rsplit(":", 1)[1]
        expected = ("DaemonSet" if s.workload == "daemon" else "CronJob" if s.role == "backup"
                    else "StatefulSet" if s.stateful else "Deployment")
        assert kind == expected, s.id
        spec = r.plain()["spec"]
        if kind not in ("DaemonSet", "CronJob"):
            assert spec["replicas"] == s.replicas, s.id
        c = container(r)
        assert c["image"] == s.image
        assert [(p["name"], p["containerPort"]) for p in c.get("ports", [])] == \
               [(p.name, p.container) for p in s.ports]
        assert env_keys(run, s) == set(s.environment) | embedded(s), s.id
        assert c["resources"]["limits"]["memory"] == s.memory_text
        assert c["resources"]["requests"]["memory"] == s.memory_text
        waits = [c for c in pod(r).get("initContainers", []) if c["name"] != "render-files"]
        assert [w["name"] for w in waits] == [f"wait-{d}" for d in s.hard], s.id
        for w, d in zip(waits, s.hard, strict=True):
            assert w["image"] == WAIT_IMAGE
            assert estate[d].host in w["command"][-1]
            assert w["securityContext"]["runAsNonRoot"] is True
    connector = workload(run, estate["cloudflared"]).plain()["spec"]
    assert connector["replicas"] == 2  # replicas of one tunnel (services.py, availability)
    assert "node-exporter" in {s.id for s in estate.containers}
    assert not {"cadvisor", "watchtower"} & {s.id for s in estate.services}


def test_up_brings_hard_dependencies_to_ready_before_their_dependents(run, estate):
    """Each workload depends on its hard dependencies' workloads (the provider awaits their
    readiness), so `pulumi up` never starts a dependent whose init containers would hold one
    of the engine's parallel steps while what they wait for is queued (seen on real nodes)."""
    checked = 0
    for s in estate.containers:
        needs = {workload(run, estate[d]).urn for d in s.hard if not estate[d].native}
        assert needs <= set(workload(run, s).dependencies), s.id
        checked += len(needs)
    assert checked > 20
    for s in estate.services:  # and nothing else: lazy dependencies start in any order
        lazy = {workload(run, estate[d]).urn for d in s.lazy
                if not estate[d].native and d not in s.hard}
        if not s.native:
            assert not lazy & set(workload(run, s).dependencies), s.id


def test_deployments_heal_as_their_availability_says(run, estate):
    """Issue 26: user-facing stateless services run two spread replicas with a budget and
    surge-only updates; what must run once is replaced, never doubled; every Deployment leaves
    a lost node after FAILOVER_SECONDS; StatefulSets keep Kubernetes' default (300 s)."""
    budgets = objects(run, "PodDisruptionBudget")
    replicated = set()
    for s in estate.containers:
        r = workload(run, s)
        spec, kind = r.plain()["spec"], r.type.rsplit(":", 1)[1]
        a = s.availability
        if kind in ("DaemonSet", "CronJob"):  # CronJob: test_backup_runs_as_cron_jobs
            continue
        if a.copies == "many" and a.importance == "user-facing" and not s.stateful:
            assert spec["replicas"] == 2, s.id
        if kind == "StatefulSet":
            assert spec["replicas"] == 1 and "tolerations" not in pod(r), s.id
            continue
        assert pod(r)["tolerations"] == [
            {"key": taint, "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": FAILOVER_SECONDS} for taint in NODE_LOSS_TAINTS], s.id
        [spread] = pod(r)["topologySpreadConstraints"]
        assert (spread["topologyKey"], spread["maxSkew"], spread["whenUnsatisfiable"],
                spread["nodeTaintsPolicy"]) == ("kubernetes.io/hostname", 1, "DoNotSchedule",
                                                "Honor"), s.id
        assert spread["labelSelector"]["matchLabels"].items() <= \
            r.plain()["spec"]["template"]["metadata"]["labels"].items()
        if interchangeable(s):
            assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {
                "maxUnavailable": 0, "maxSurge": 1}}, s.id
        else:
            assert a.copies == "one" and spec["replicas"] == 1, s.id
            assert spec["strategy"] == {"type": "Recreate"}, s.id
        if interchangeable(s) and spec["replicas"] > 1:
            replicated.add((s.namespace, s.name))
            budget = budgets[(s.namespace, s.name)].plain()["spec"]
            assert budget == {"maxUnavailable": 1, "unhealthyPodEvictionPolicy": "AlwaysAllow",
                              "selector": spec["selector"]}, s.id
    assert set(budgets) == replicated and len(replicated) == 26
    # the counts every budget and report relies on, as services.py declares them today
    assert {s.id for s in estate.containers if s.replicas > 1} == {
        s.id for s in estate.containers if s.availability.copies == "many"
        and s.availability.importance == "user-facing"}


def test_probes_follow_the_health_checks(run, estate):
    """Readiness is the health check; liveness and startup, which restart a container, only
    ask whether its process answers (a TCP connect), never whether its dependencies do."""
    for s in estate.containers:
        c = container(workload(run, s))
        h = s.health
        names = [p.name for p in s.ports]
        if not names and h is None:  # the backup's jobs: nothing to ask
            assert not {"livenessProbe", "readinessProbe", "startupProbe"} & set(c), s.id
            continue
        if h is None:
            assert c["livenessProbe"]["tcpSocket"]["port"] == names[0]
            assert c["readinessProbe"]["tcpSocket"]["port"] == names[0]
            continue
        p = c["readinessProbe"]
        if h.http:
            assert p["httpGet"] == {"path": h.http, "port": h.port}, s.id
        elif h.cmd:
            assert p["exec"]["command"] == list(h.cmd), s.id
        else:
            assert p["tcpSocket"]["port"] == h.port
        assert p["periodSeconds"] <= min(h.interval, 5), s.id
        assert (p["timeoutSeconds"], p["failureThreshold"]) == (h.timeout, h.retries), s.id
        live = c["livenessProbe"]
        assert set(live) == {"tcpSocket", "periodSeconds", "timeoutSeconds",
                             "failureThreshold"}, s.id
        assert live["tcpSocket"]["port"] == (h.port if h.port in names else names[0]), s.id
        assert (live["periodSeconds"], live["timeoutSeconds"], live["failureThreshold"]) == \
               (h.interval, h.timeout, h.retries), s.id
        assert ("startupProbe" in c) == (h.start_period > 0), s.id
        if h.start_period:
            p = c["startupProbe"]
            assert p["tcpSocket"] == live["tcpSocket"], s.id
            budget = p["periodSeconds"] * (p["failureThreshold"] - h.retries)
            assert budget >= h.start_period, s.id
            # a database replaying its journal is never killed halfway
            assert budget >= 600 or not s.stateful, s.id
    assert {s.id for s in estate.containers if s.stateful} >= {"postgres", "redis", "s3"}


def test_security_context_is_restrictive(run, estate):
    for s in estate.containers:
        r = workload(run, s)
        spec = pod(r)
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        sc = container(r)["securityContext"]
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["allowPrivilegeEscalation"] is False
        # node-exporter alone: test_node_exporter_alone_sees_the_host
        assert ("hostPath" in json.dumps(spec)) == (s.id == "node-exporter")


def test_secrets_come_from_secret_objects_only(run, estate, test_secrets):
    secrets = objects(run, "Secret")
    nutriphi = estate["nutriphi-backend"]
    r = secrets[(nutriphi.namespace, "nutriphi-backend-secrets")]
    assert has_secret(r.inputs["stringData"])
    assert r.plain()["stringData"]["GEMINI_API_KEY"] == test_secrets["GEMINI_API_KEY"]
    for s in estate.containers:
        if s.secrets:
            assert set(secrets[(s.namespace, f"{s.name}-secrets")].plain()["stringData"]) == \
                   set(s.secrets)
    for r in run.registrations:
        if r.type.endswith(":Secret") or not r.type.startswith(K8S):
            continue
        text = json.dumps(r.plain())
        assert not [v for v in test_secrets.values() if v in text], r.name
        assert "generated-" not in text, r.name


def test_env_mixing_text_and_secrets_uses_dependent_variables(run, estate):
    s = estate["chat-backend"]
    env = container(workload(run, s))["env"]
    names = [e["name"] for e in env]
    assert names.index("CHAT_DB_PASSWORD") < names.index("DATABASE_URL")
    url = next(e["value"] for e in env if e["name"] == "DATABASE_URL")
    assert url == s.env["DATABASE_URL"].render(lambda n: f"$({n})")
    assert env[0]["valueFrom"]["secretKeyRef"] == {"name": "chat-backend-secrets",
                                                   "key": env[0]["name"]}


def test_native_services_point_at_the_native_host(run, estate):
    ip = estate.settings.native_host
    slices = objects(run, "EndpointSlice")
    for s in estate.services:
        if not s.native:
            continue
        service = objects(run, "Service")[(s.namespace, s.name)].plain()["spec"]
        assert "selector" not in service
        assert [p["port"] for p in service["ports"]] == [p.container for p in s.ports]
        eps = slices[(s.namespace, s.name)].plain()
        assert eps["endpoints"] == [{"addresses": [ip]}]
        assert eps["metadata"]["labels"]["kubernetes.io/service-name"] == s.name


def test_native_host_by_name_becomes_external_name(estate):
    dns = estate.model_copy(update={"settings": estate.settings.model_copy(
        update={"native_host": "mac-mini.tailnet.example"})})
    objs = [o for o in concrete_objects(dns, lambda n: "x") if o.service == "ollama"]
    assert [(o.kind, o.manifest["spec"].get("type")) for o in objs] == \
           [("Service", "ExternalName")]
    assert objs[0].manifest["spec"]["externalName"] == "mac-mini.tailnet.example"


def test_services_answer_on_the_resolved_address(run, estate):
    for s in estate.containers:
        if s.ports:
            spec = objects(run, "Service")[(s.namespace, s.name)].plain()["spec"]
            assert spec["type"] == "ClusterIP"
            assert [p["port"] for p in spec["ports"]] == [p.container for p in s.ports]
            assert s.host == f"{s.name}.{s.namespace}.svc.cluster.local"


def test_services_select_their_pods_and_skip_the_providers_endpoint_wait(run, estate):
    """A Service is applied without the provider's 10 s settle per Service: its pods are
    awaited through their workload, which its selector matches."""
    services = objects(run, "Service")
    for s in estate.containers:
        if s.ports:
            service = services[(s.namespace, s.name)].plain()
            assert service["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
            labels = workload(run, s).plain()["spec"]["template"]["metadata"]["labels"]
            assert service["spec"]["selector"].items() <= labels.items(), s.id
    assert not [r.name for r in run.registrations if r.type.startswith(K8S) and
                not r.type.endswith(":Service") and "pulumi.com/skipAwait" in str(r.inputs)]


def _peers(rules: list[dict[str, Any]], direction: str) -> set[str]:
    return {peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
            for rule in rules for peer in rule[direction] if "podSelector" in peer}


def test_network_policies_follow_the_dependency_graph(run, estate):
    policies = objects(run, "NetworkPolicy")
    for ns in SIX:
        deny = policies[(ns, "default-deny")].plain()["spec"]
        assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress", "Egress"]
        assert (ns, "allow-dns") in policies
    for s in estate.containers:
        spec = policies[(s.namespace, s.name)].plain()["spec"]
        dependents = {d.name for d in estate.containers if s.id in (*d.hard, *d.lazy)}
        assert dependents <= _peers(spec["ingress"], "from"), s.id
        needs = {estate[d].name for d in (*s.hard, *s.lazy) if not estate[d].native}
        assert needs <= _peers(spec["egress"], "to"), s.id
        if s.public is not None:
            assert "cloudflared" in _peers(spec["ingress"], "from"), s.id
    tunnel = policies[("manacore-infra", "cloudflared")].plain()["spec"]
    assert _peers(tunnel["egress"], "to") == {s.name for s in estate.containers if s.public}
    scraper = policies[("manacore-monitoring", "victoriametrics")].plain()["spec"]
    assert {"node-exporter", "redis-exporter", "postgres-exporter", "pushgateway",
            "synapse"} <= _peers(scraper["egress"], "to")
    native = policies[("manacore-apps", "chat-backend-native")].plain()["spec"]
    assert native["egress"][0]["to"] == [{"ipBlock": {"cidr": f"{estate.settings.native_host}/32"}}]


# Services whose work is out there (the catalogue's `internet`, transcribed): an API, the
# tunnel's edge, federation, search engines, workflows, Telegram.
INTERNET = {"cloudflared", "searxng", "nutriphi-backend", "synapse", "n8n",
            "telegram-stats-bot", "telegram-ollama-bot", "backup"}


def test_only_services_that_need_the_internet_reach_it(run, estate):
    """DNS for every pod; public addresses (never private ranges) only for the services the
    catalogue says need them — not PostgreSQL, Redis or any app that only talks inward."""
    policies = {k: r.plain()["spec"] for k, r in objects(run, "NetworkPolicy").items()}
    for (_, name), spec in policies.items():
        if spec["podSelector"] == {}:  # namespace-wide: default deny and DNS only
            assert name in ("default-deny", "allow-dns"), name
            assert "ipBlock" not in json.dumps(spec), name

    def public(rules: list[dict[str, Any]]) -> bool:
        return any(p.get("ipBlock", {}).get("cidr") == "0.0.0.0/0" and not r.get("ports")
                   for r in rules for p in r.get("to", []))

    reach = {s.id for s in estate.containers
             if public(policies[(s.namespace, s.name)].get("egress", []))}
    assert reach == {s.id for s in estate.containers if s.internet} == INTERNET
    for s in estate.containers:  # no other policy of the service opens every port outside
        for (ns, name), spec in policies.items():
            if ns == s.namespace and name.startswith(f"{s.name}-") and s.id not in reach:
                assert all(r.get("ports") for r in spec.get("egress", [])), name


@pytest.mark.parametrize("version", ["1.31.0", "1.32.0"])
def test_stack_objects_are_valid_kubernetes(estate, version):
    for o in concrete_objects(estate, lambda n: f"value-of-{n}"):
        kubernetes_validate.validate(o.manifest, version, strict=True)


# --- parity with the docker target ------------------------------------------------------


def test_parity_with_the_docker_target(run, estate, macmini_estate):
    from exports.compose import to_compose

    compose = to_compose(macmini_estate)["services"]
    # the backup differs by design: its repository (a disk of the Mac Mini, S3 off the
    # cluster) and its mounts (every volume; a job per claim: tests/test_backup.py)
    both = [s for s in estate.containers if s.role != "backup"
            and any(m.id == s.id for m in macmini_estate.containers)]
    assert len(both) >= 40
    for s in both:
        m = macmini_estate[s.id]
        c = container(workload(run, s))
        assert s.name == m.id and m.container_name == compose[m.id]["container_name"]
        assert c["image"] == m.image == compose[m.id]["image"]
        ports = [int(p["containerPort"]) for p in c.get("ports", [])]
        assert ports == [p.container for p in m.ports], s.id
        assert {p.split(":")[-1] for p in compose[m.id].get("ports", [])} <= set(map(str, ports))
        assert env_keys(run, s) == set(m.environment) | embedded(s), s.id
        assert set(compose[m.id].get("environment", {})) <= env_keys(run, s), s.id
        assert parse_memory(c["resources"]["limits"]["memory"]) == m.memory
        assert compose[m.id]["deploy"]["resources"]["limits"]["memory"] == \
               f"{mebibytes(m.memory)}m"
        check = compose[m.id].get("healthcheck")
        if m.health is not None:
            assert check is not None, s.id
            assert c["livenessProbe"]["periodSeconds"] == m.health.interval
            assert check["interval"] == f"{m.health.interval}s"
            assert ("startupProbe" in c) == bool(m.health.start_period)
            kind = "httpGet" if m.health.http else "exec" if m.health.cmd else "tcpSocket"
            assert kind in c["readinessProbe"], s.id
        mounts = {v["mountPath"] for v in c.get("volumeMounts", [])}
        # a Docker volume still awaiting its migration is mounted where its legacy data lies
        assert {v.path for v in m.volumes if v.migrated} <= mounts, s.id
        assert [(v.claim, v.stateful, v.size) for v in s.volumes] == \
               [(v.claim, v.stateful, v.size) for v in m.volumes], s.id
