"""Stack macmini: the whole program evaluated under mocks, checked against the resolved estate.

Expectations are written from the resolved spec (names, ports, seconds, bytes), not from the
helpers the adapter uses, so a wrong mapping fails here."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from pulumi.runtime import rpc

from catalog.model import ED25519_KEY_ID
from catalog.resolve import ResolvedEstate, ResolvedFile, SecretRef, Template
from catalog.settings import ROOT, settings_from_values
from components.program import deploy
from tests.conftest import generated_value, known_secrets, resolved, secret_values
from tests.harness import Registration, Run, has_secret, image_id, run_program, unwrap

CONTAINER = "docker:index/container:Container"
IMAGE = "docker:index/remoteImage:RemoteImage"
VOLUME = "docker:index/volume:Volume"
NETWORK = "docker:index/network:Network"
PROVIDER = "pulumi:providers:docker"


def containers(run: Run) -> dict[str, Registration]:
    """Service id → its container (init containers carry no manacore.service label)."""
    found: dict[str, Registration] = {}
    for r in run.of_type(CONTAINER):
        labels = {x["label"]: x["value"] for x in r.plain().get("labels", [])}
        if "manacore.service" in labels:
            assert labels["manacore.service"] not in found, f"two containers for {labels}"
            found[labels["manacore.service"]] = r
    return found


def image_of(run: Run, container: Registration) -> Registration:
    """The RemoteImage whose ID the container runs (the container depends on exactly one)."""
    images = [run.by_urn()[d] for d in container.dependencies
              if run.by_urn().get(d) and run.by_urn()[d].type == IMAGE]
    assert len(images) == 1, container.name
    return images[0]


def env_of(container: Registration) -> dict[str, str]:
    return dict(line.split("=", 1) for line in container.plain().get("envs", []))


# --- inventory --------------------------------------------------------------------------


def test_one_container_per_docker_service_with_its_resolved_name(
        macmini_run: Run, macmini_estate: ResolvedEstate) -> None:
    found = containers(macmini_run)
    assert sorted(found) == sorted(s.id for s in macmini_estate.containers)
    for svc in macmini_estate.containers:
        inputs = found[svc.id].plain()
        assert found[svc.id].name == inputs["name"] == svc.container_name
        labels = {x["label"]: x["value"] for x in inputs["labels"]}
        assert labels == svc.labels
        assert inputs["restart"] == "unless-stopped"
    natives = {s.container_name for s in macmini_estate.services if s.native}
    assert not natives & {r.name for r in macmini_run.registrations}, "natives create nothing"


def test_each_container_runs_its_pinned_image_by_id_kept_locally(
        macmini_run: Run, macmini_estate: ResolvedEstate) -> None:
    for svc in macmini_estate.containers:
        container = containers(macmini_run)[svc.id]
        image = image_of(macmini_run, container)
        assert image.plain()["name"] == svc.image
        assert image.plain()["keepLocally"] is True
        assert container.plain()["image"] == image_id(svc.image), "the ID, never the name"


def test_ports_are_published_on_loopback_only(macmini_run: Run,
                                              macmini_estate: ResolvedEstate) -> None:
    found = containers(macmini_run)
    for svc in macmini_estate.containers:
        published = sorted((p["ip"], int(p["external"]), int(p["internal"]))
                           for p in found[svc.id].plain().get("ports", []))
        assert published == sorted(("127.0.0.1", p.published, p.container)
                                   for p in svc.ports if p.published), svc.id
    assert "ports" not in found["cloudflared"].plain(), "the tunnel connector publishes nothing"


def test_env_keys_and_plain_values_as_resolved(macmini_run: Run,
                                               macmini_estate: ResolvedEstate) -> None:
    found = containers(macmini_run)
    values = secret_values(macmini_estate)
    for svc in macmini_estate.containers:
        env = env_of(found[svc.id])
        assert sorted(env) == sorted({*svc.env, *svc.secrets} - _embedded_only(svc)), svc.id
        for key, template in svc.env.items():
            assert env[key] == template.render(values.__getitem__), (svc.id, key)


def _embedded_only(svc) -> set[str]:
    """Secrets a service needs only inside another value (a password inside DATABASE_URL)."""
    embedded = {n for t in svc.env.values() for n in t.secrets}
    return {n for n in svc.secrets if n in embedded and n not in svc.env}


def test_postgres_gets_every_consumer_password_for_its_init(
        macmini_run: Run, macmini_estate: ResolvedEstate) -> None:
    env = env_of(containers(macmini_run)["postgres"])
    values = secret_values(macmini_estate)
    assert macmini_estate.databases
    for db in macmini_estate.databases:
        assert env[db.password_secret] == values[db.password_secret]
    assert env["POSTGRES_PASSWORD"] == values["POSTGRES_PASSWORD"]


def test_an_env_list_with_a_secret_is_a_secret_output(macmini_run: Run,
                                                      macmini_estate: ResolvedEstate) -> None:
    found = containers(macmini_run)
    for svc in macmini_estate.containers:
        envs = found[svc.id].inputs.get("envs")
        has_secret = any(t.secrets for t in svc.environment.values())
        assert (envs is not None and rpc.is_rpc_secret(envs)) == has_secret, svc.id


def test_health_checks_as_resolved(macmini_run: Run, macmini_estate: ResolvedEstate) -> None:
    found = containers(macmini_run)
    for svc in macmini_estate.containers:
        check = found[svc.id].plain().get("healthcheck")
        h = svc.health
        if h is None:
            assert check is None, svc.id
            continue
        assert (check["interval"], check["timeout"], check["startPeriod"], check["startInterval"],
                check["retries"]) == (f"{h.interval}s", f"{h.timeout}s", f"{h.start_period}s",
                                      f"{h.start_interval}s", h.retries), svc.id
        if h.cmd is not None:
            assert check["tests"] == ["CMD", *h.cmd]
        else:
            assert check["tests"][0] == "CMD-SHELL"
            port = svc.port(h.port).container
            target = f"127.0.0.1:{port}{h.http}" if h.http else f"127.0.0.1 {port}"
            assert target in check["tests"][1], svc.id


def test_memory_limit_in_mebibytes_and_no_swap(macmini_run: Run,
                                              macmini_estate: ResolvedEstate) -> None:
    """memory+swap is the memory itself (issue 25): left unset the engine picks twice the
    memory at creation and keeps it across memory changes, and reports it back as a change."""
    found = containers(macmini_run)
    for svc in macmini_estate.containers:
        assert svc.memory is not None
        inputs = found[svc.id].plain()
        assert inputs["memory"] == inputs["memorySwap"] == svc.memory // 2**20, svc.id
    for init in (r for r in macmini_run.of_type(CONTAINER) if r.plain().get("attach")):
        assert init.plain()["memory"] == init.plain()["memorySwap"] > 0, init.name


def test_containers_stop_cleanly_when_replaced_or_removed(
        macmini_run: Run, macmini_estate: ResolvedEstate) -> None:
    """The provider kills a container it deletes at once unless told otherwise; a stateful one
    gets a minute to shut down cleanly (PostgreSQL checkpoints), the others 10 s."""
    found = containers(macmini_run)
    for svc in macmini_estate.containers:
        inputs = found[svc.id].plain()
        grace = 60 if svc.stateful else 10
        assert inputs["stopTimeout"] == inputs["destroyGraceSeconds"] == grace, svc.id
    assert found["postgres"].plain()["destroyGraceSeconds"] == 60


# --- volumes: as they are now (legacy data adopted) and after the migration ----------------


@pytest.fixture(params=["now", "migrated"])
def stage(request: pytest.FixtureRequest) -> tuple[Run, ResolvedEstate]:
    """The stack before the volume migration (services on their legacy volumes) and after."""
    if request.param == "now":
        return request.getfixturevalue("macmini_run"), request.getfixturevalue("macmini_estate")
    return request.getfixturevalue("migrated_run"), request.getfixturevalue("migrated_estate")


def test_named_volumes_once_each_stateful_ones_protected(
        stage: tuple[Run, ResolvedEstate]) -> None:
    run, estate = stage
    volumes = [v for v in run.of_type(VOLUME) if not v.read_id]
    names = [v.name for v in volumes]
    assert len(names) == len(set(names)), "a shared volume is created once"
    expected = {v.final: v for s in estate.containers for v in s.volumes}
    assert sorted(names) == sorted(expected), "every final volume exists, migrated or not"
    for reg in volumes:
        assert reg.plain()["name"] == reg.name
        stateful = expected[reg.name].stateful
        assert (reg.protect, reg.retain_on_delete) == (stateful, stateful), reg.name
        assert reg.aliases == [], "a new name is a new volume, never an alias of the old one"
    assert all(v.protect for v in volumes if expected[v.name].stateful)


def test_services_keep_their_legacy_data_until_migrated(
        macmini_run: Run, macmini_estate: ResolvedEstate, migrated_run: Run) -> None:
    adopted = {v.name for s in macmini_estate.containers for v in s.volumes if not v.migrated}
    read = {v.read_id for v in macmini_run.of_type(VOLUME) if v.read_id}
    managed = {v.name for v in macmini_run.of_type(VOLUME) if not v.read_id}
    assert adopted and read == adopted, "legacy volumes are read (must exist), never created"
    assert not adopted & managed, "Pulumi never manages (or deletes) a legacy volume"
    mounted = containers(macmini_run)["postgres"].plain()["mounts"][0]["source"]
    assert mounted == macmini_estate["postgres"].volumes[0].name == "manacore-postgres"
    after = {v.name for v in migrated_run.of_type(VOLUME)}
    assert "manacore-matrix-bots-data" in after and not adopted & after
    assert not [v for v in migrated_run.of_type(VOLUME) if v.read_id]
    # switching a volume over changes only the mount: the managed volumes stay the same
    assert managed == after


def test_mounts_as_resolved_with_subpaths_and_read_only_host_paths(
        stage: tuple[Run, ResolvedEstate]) -> None:
    run, estate = stage
    found = containers(run)
    for svc in estate.containers:
        mounts = found[svc.id].plain().get("mounts", [])
        got = sorted([(m["type"], m["source"], m["target"],
                       (m.get("volumeOptions") or {}).get("subpath"), m.get("readOnly", False))
                      for m in mounts] +
                     [("bind", b["hostPath"], b["containerPath"], None, b.get("readOnly", False))
                      for b in found[svc.id].plain().get("volumes", [])])  # made when missing
        want = sorted([("volume", v.name, v.path, v.subpath, v.read_only)
                       for v in svc.volumes] +
                      [("bind", m.source, m.path, None, m.read_only) for m in svc.host_mounts])
        assert got == want, svc.id
    assert found["watchtower"].plain()["mounts"][0]["readOnly"] is True


def test_shared_volume_subdirectories_exist_before_consumers_start(
        migrated_run: Run, migrated_estate: ResolvedEstate, macmini_run: Run) -> None:
    init = migrated_run.named("manacore-matrix-bots-data-init")
    inputs = init.plain()
    users = [s for s in migrated_estate.containers  # the backup only reads it: no init needed
             if any(v.name == "manacore-matrix-bots-data" and not v.read_only
                    for v in s.volumes)]
    assert len(users) == 3
    assert inputs["command"][:2] == ["mkdir", "-p"]
    assert sorted(inputs["command"][2:]) == sorted(
        f"/volume/{v.subpath}" for s in users for v in s.volumes)
    assert inputs["attach"] is True and inputs["mustRun"] is False
    assert inputs["mounts"] == [{"type": "volume", "source": "manacore-matrix-bots-data",
                                 "target": "/volume"}]
    for svc in users:
        assert init.urn in containers(migrated_run)[svc.id].dependencies, svc.id
    assert not any("manacore.volume-init" in str(r.inputs) for r in macmini_run.registrations), \
        "no subpath before the migration, so nothing to prepare"


# --- structure: parents, providers, dependencies -----------------------------------------


def test_every_resource_is_parented_to_a_component_with_an_explicit_provider(
        macmini_run: Run) -> None:
    by_urn = macmini_run.by_urn()
    providers = macmini_run.of_type(PROVIDER)
    assert len(providers) == 1
    docker_provider = providers[0]
    assert docker_provider.plain()["host"] == "unix:///var/run/docker.sock"
    for r in macmini_run.registrations:
        if r.type.startswith("pulumi:providers:") or not r.custom:
            continue
        assert r.parent in by_urn and not by_urn[r.parent].custom, f"{r.name}: parent {r.parent}"
        assert r.provider, f"{r.name} has no explicit provider"
        if r.type.startswith("docker:"):
            assert r.provider.startswith(docker_provider.urn + "::"), r.name


def test_services_sit_in_their_components(macmini_run: Run,
                                         macmini_estate: ResolvedEstate) -> None:
    found = containers(macmini_run)
    parent = {sid: reg.parent.rsplit("::", 1)[0].rsplit("$", 1)[-1]
              for sid, reg in found.items()}
    assert parent["postgres"] == parent["redis"] == parent["s3"] == "manacore:stack:InfraTier"
    assert parent["synapse"] == parent["mana-bot"] == "manacore:stack:MatrixStack"
    assert parent["grafana"] == "manacore:stack:MonitoringStack"
    assert parent["chat-backend"] == parent["chat-web"] == "manacore:stack:AppService"
    assert parent["cloudflared"] == "manacore:stack:CloudflareTunnel"
    network = macmini_run.of_type(NETWORK)
    assert sorted(n.plain()["name"] for n in network) == ["manacore", "manacore-edge"]
    assert all(n.parent.endswith("manacore:stack:Platform::platform") for n in network)
    for sid, reg in found.items():  # as exports.compose.networks says (test_compose checks it)
        edge = sid in {"victoriametrics"} or macmini_estate[sid].public is not None
        assert reg.plain()["networksAdvanced"] == (
            [{"name": "manacore-edge"}] if sid == "cloudflared" else
            [{"name": "manacore"}, {"name": "manacore-edge"}] if edge else [{"name": "manacore"}])


def test_a_container_waits_for_the_networks_and_volumes_it_uses(
        stage: tuple[Run, ResolvedEstate]) -> None:
    """Joined networks and mounted volumes (the legacy one until migrated) are created, or read,
    before the container: names are plain text, the resources are its dependencies."""
    run, estate = stage
    by_name = {(r.type, r.plain().get("name") or r.read_id): r.urn for r in run.registrations
               if r.type in (NETWORK, VOLUME)}
    mounted = 0
    for sid, reg in containers(run).items():
        inputs = reg.plain()
        used = [(NETWORK, n["name"]) for n in inputs["networksAdvanced"]]
        used += [(VOLUME, m["source"]) for m in inputs.get("mounts", []) if m["type"] == "volume"]
        assert all(by_name[u] in reg.dependencies for u in used), (sid, used)
        mounted += sum(kind == VOLUME for kind, _ in used)
    assert mounted == sum(len(s.volumes) for s in estate.containers) > 0


def test_hard_dependencies_wait_for_a_healthy_dependency(
        macmini_run: Run, macmini_estate: ResolvedEstate) -> None:
    found = containers(macmini_run)
    natives = {s.id for s in macmini_estate.services if s.native}
    waited = set()
    for svc in macmini_estate.containers:
        for dep in svc.hard:
            if dep in natives:
                continue
            waited.add(dep)
            assert found[dep].urn in found[svc.id].dependencies, (svc.id, dep)
            assert found[dep].plain()["wait"] is True, (svc.id, dep)
    assert {"postgres", "redis", "auth", "synapse", "searxng"} <= waited


def test_up_waits_for_every_container_with_a_health_check(
        macmini_run: Run, macmini_estate: ResolvedEstate) -> None:
    """Issue 25: `pulumi up` returned while leaf services (the Matrix bots) were still starting;
    like `docker compose up --wait` and the k3s stack it waits for every container, each for
    as long as its health check may take to pass."""
    found = containers(macmini_run)
    for svc in macmini_estate.containers:
        inputs, h = found[svc.id].plain(), svc.health
        if h is None:  # the provider refuses `wait` without a health check
            assert "wait" not in inputs and "waitTimeout" not in inputs, svc.id
            continue
        assert inputs["wait"] is True, svc.id
        assert inputs["waitTimeout"] >= h.start_period + (h.retries + 1) * (
            h.interval + h.timeout), svc.id
    assert found["mana-bot"].plain()["wait"] is True, "a leaf service nobody depends on"
    assert sum(s.health is not None for s in macmini_estate.containers) >= 44


def test_native_services_are_reached_through_the_host_gateway(
        macmini_run: Run, macmini_estate: ResolvedEstate) -> None:
    natives = {s.id for s in macmini_estate.services if s.native}
    for sid, reg in containers(macmini_run).items():
        svc = macmini_estate[sid]
        uses = bool(natives & {*svc.hard, *svc.lazy})
        hosts = reg.plain().get("hosts")
        assert hosts == ([{"host": "host.docker.internal", "ip": "host-gateway"}]
                         if uses else None), sid
    assert containers(macmini_run)["chat-backend"].plain()["hosts"]


def test_no_host_gateway_when_native_services_live_elsewhere() -> None:
    run = run_program("macmini", config={"nativeHost": "10.0.0.5"}, secrets=known_secrets())
    assert not any(r.plain().get("hosts") for r in run.of_type(CONTAINER))
    assert env_of(containers(run)["chat-backend"])["OLLAMA_URL"] == "http://10.0.0.5:11434"


# --- outputs, secrets, generated files ---------------------------------------------------


def test_outputs_name_containers_and_addresses(macmini_run: Run,
                                               macmini_estate: ResolvedEstate) -> None:
    services = macmini_run.exports["services"]
    for svc in macmini_estate.containers:
        out = services[svc.id]
        assert out["container"] == svc.container_name
        assert out["internal"] == {p.name: f"{svc.container_name}:{p.container}"
                                   for p in svc.ports}
    assert services["chat-backend"]["published"] == {"http": "127.0.0.1:3030"}
    assert services["ollama"] == {"native": True, "address": "host.docker.internal",
                                  "ports": {"http": 11434}}
    infra = next(r for r in macmini_run.registrations if r.type == "manacore:stack:InfraTier")
    assert infra.parent.endswith("pulumi:pulumi:Stack::manacore-macmini")


def test_no_secret_value_in_outputs_or_logs(macmini_run: Run,
                                            macmini_estate: ResolvedEstate) -> None:
    text = json.dumps(macmini_run.exports, default=str) + "\n".join(macmini_run.logs)
    values = secret_values(macmini_estate)
    assert values
    for name, value in values.items():
        assert value not in text, f"{name} leaks into stack outputs or logs"


def test_generated_files_are_uploaded_secret_when_they_embed_one(
        macmini_estate: ResolvedEstate) -> None:
    init = ResolvedFile(path="/docker-entrypoint-initdb.d/10-roles.sh", mode=0o755,
                        content=Template(parts=("echo $HOME; psql -c \"PASSWORD '",
                                                SecretRef(secret="CHAT_DB_PASSWORD"), "'\"\n")))
    plain = ResolvedFile(path="/etc/motd", content=Template(parts=("hello\n",)))
    services = tuple(s.model_copy(update={"files": (init,)}) if s.id == "postgres" else
                     s.model_copy(update={"files": (plain,)}) if s.id == "redis" else s
                     for s in macmini_estate.services)
    estate = macmini_estate.model_copy(update={"services": services})
    run = run_program("macmini", secrets=known_secrets(), program=lambda: deploy(estate))
    found = containers(run)
    assert has_secret(found["postgres"].inputs["uploads"])
    assert found["postgres"].plain()["uploads"] == [{
        "file": init.path, "permissions": "0755",
        "content": "echo $HOME; psql -c \"PASSWORD '"
                   f"{generated_value('CHAT_DB_PASSWORD')}'\"\n"}]
    assert found["redis"].inputs["uploads"] == [
        {"file": "/etc/motd", "content": "hello\n", "permissions": "0644"}]


# --- process-level properties: imports and determinism -----------------------------------

_PROBE = """
import json, sys
from tests.harness import run_program
from tests.test_macmini import fingerprint
run = run_program("macmini", secrets=json.loads(sys.argv[1]))
print(json.dumps({
    "kubernetes": sorted(m for m in sys.modules if m.split(".")[0] == "pulumi_kubernetes"),
    **fingerprint(run),
}, sort_keys=True, default=str))
"""


def fingerprint(run: Run) -> dict:
    """What a preview compares: the order the program declares resources in (the SDK logs it
    synchronously; the RPCs themselves race on threads) and every resource's inputs."""
    return {
        "order": [line for line in run.logs
                  if line.startswith(("registering resource:", "reading resource:"))],
        "resources": {r.urn: [r.inputs, r.parent, r.provider, r.protect, r.retain_on_delete,
                              sorted(r.dependencies), r.aliases, r.read_id]
                      for r in run.registrations},
    }


def _probe(hash_seed: str) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(known_secrets())],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def probes() -> tuple[dict, dict]:
    return _probe("1"), _probe("2")


def test_the_macmini_path_never_imports_pulumi_kubernetes(probes: tuple[dict, dict]) -> None:
    assert probes[0]["kubernetes"] == []
    assert len(probes[0]["resources"]) > 100


def test_two_evaluations_register_identical_inputs_in_the_same_order(
        probes: tuple[dict, dict], macmini_run: Run) -> None:
    first, second = probes  # separate processes, different hash seeds
    assert len(first["order"]) == len(first["resources"]) + 1  # + the Stack
    assert first["order"] == second["order"]
    assert first["resources"] == second["resources"]
    again = json.loads(json.dumps(fingerprint(run_program("macmini", secrets=known_secrets())),
                                  default=str))
    assert again == json.loads(json.dumps(fingerprint(macmini_run), default=str))


def test_the_synapse_signing_key_is_generated_and_shipped_as_a_secret_file(
        macmini_run: Run) -> None:
    seed = macmini_run.named("synapse-signing-key")
    assert seed.type == "random:index/randomBytes:RandomBytes"
    assert seed.plain()["length"] == 32
    synapse = containers(macmini_run)["synapse"]
    assert has_secret(synapse.inputs["uploads"])
    upload = next(u for u in unwrap(synapse.inputs["uploads"])
                  if u["file"] == "/config/signing.key")
    assert upload["content"] == f"ed25519 {ED25519_KEY_ID} generated-synapse-signing-key-base64\n"


# --- a fresh Docker host (adoptLegacy false): nothing legacy, everything managed ---------------


def test_adopt_legacy_defaults_to_the_mac_mini_only() -> None:
    base = {"target": "docker", "domain": "mana.how", "registry": "ghcr.io/manacore",
            "tag": "1", "memoryBudget": "10Gi"}
    assert settings_from_values("macmini", base).adopt_legacy is True
    assert settings_from_values("customer", base).adopt_legacy is False
    assert settings_from_values("macmini", {**base, "adoptLegacy": False}).adopt_legacy is False
    assert settings_from_values("customer", {**base, "adoptLegacy": "true"}).adopt_legacy is True


def test_fresh_install_manages_every_volume_and_reads_no_legacy_one(
        macmini_estate: ResolvedEstate) -> None:
    run = run_program("macmini", secrets=known_secrets(), config={"adoptLegacy": "false"})
    assert not [v for v in run.of_type(VOLUME) if v.read_id], "no legacy volume is read"
    managed = {v.name: v for v in run.of_type(VOLUME)}
    stateful = {v.final for s in macmini_estate.containers for v in s.volumes if v.stateful}
    assert stateful <= set(managed)
    assert all(managed[n].protect and managed[n].retain_on_delete for n in stateful)
    mounts = {m["source"] for c in containers(run).values()
              for m in c.plain().get("mounts", []) if m["type"] == "volume"}
    assert mounts == {v.final for s in macmini_estate.containers for v in s.volumes}
    # Synapse's image runs it as 991:991 and never chowns /data: its fresh volume is handed over
    init = run.named("manacore-synapse-data-init")
    assert init.plain()["command"] == ["chown", "991:991", "/volume"]
    assert init.urn in containers(run)["synapse"].dependencies


@pytest.mark.parametrize("stack", ["macmini", "k3s"])
def test_a_stack_with_every_secret_set_needs_no_random_plugin(stack: str) -> None:
    """Generated secrets come from pulumi_random only when unset: with all of them set (as the
    real-engine suite does) no random resource and no random provider is registered, so the
    engine never needs the random plugin."""
    every = secret_values(resolved(stack))  # what a user sets: the generated ones too
    types = {r.type for r in run_program(stack, secrets=every).registrations}
    assert not {t for t in types if t.startswith(("random:", "pulumi:providers:random"))}
    assert any(t.startswith("random:") for t in
               (r.type for r in run_program(stack, secrets=known_secrets()).registrations))
