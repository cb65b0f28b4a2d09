"""Resolution for both targets: names, addresses, env URLs, namespaces, tiers."""

from __future__ import annotations

import pytest

from catalog.load import load_stack
from catalog.model import hard, http, lazy, many, once, own, port, service
from catalog.resolve import SecretRef, resolve
from catalog.schema import NAMESPACES
from tests.estates import K3S, MACMINI, base_services, estate


def test_docker_addresses_and_env() -> None:
    r = resolve(estate(), MACMINI)
    auth = r["auth"]
    assert auth.container_name == "manacore-core-auth"
    assert auth.host == "manacore-core-auth"
    assert auth.image == "ghcr.io/acme/auth:1.2.3"
    assert auth.env["PORT"].plain == "3001"
    backend = r["notes-backend"]
    assert backend.env["AUTH_URL"].plain == "http://manacore-core-auth:3001"
    assert backend.env["OLLAMA_URL"].plain == "http://host.docker.internal:11434"
    db = backend.env["DATABASE_URL"]
    assert db.parts == ("postgresql://notes:", SecretRef(secret="NOTES_DB_PASSWORD"),
                        "@manacore-infra-postgres:5432/notes")
    assert db.plain is None and "NOTES_DB_PASSWORD" in backend.secrets
    # A frontend reaches its backend inside the network by container port, browsers by URL.
    web = r["notes-web"]
    assert web.env["API"].plain == "http://manacore-app-notes-backend:3030"
    assert web.env["PUBLIC_API"].plain == "https://notes-api.example.org"
    assert web.port().published == 5010 and web.port().container == 3000
    assert web.public.service_url == "http://manacore-app-notes-web:3000"


def test_kubernetes_addresses_and_namespaces() -> None:
    r = resolve(estate(), K3S)
    backend = r["notes-backend"]
    assert (backend.name, backend.namespace) == ("notes-backend", "manacore-apps")
    assert backend.host == "notes-backend.manacore-apps.svc.cluster.local"
    assert backend.env["AUTH_URL"].plain == "http://auth.manacore-core.svc.cluster.local:3001"
    assert backend.env["OLLAMA_URL"].plain == \
        "http://ollama.manacore-core.svc.cluster.local:11434"
    assert backend.env["DATABASE_URL"].render(lambda n: f"$({n})") == \
        "postgresql://notes:$(NOTES_DB_PASSWORD)@postgres.manacore-infra.svc.cluster.local" \
        ":5432/notes"
    assert r["redis"].namespace == "manacore-infra"
    assert r["notes-web"].public.service_url == \
        "http://notes-web.manacore-apps.svc.cluster.local:3000"


def test_lazy_dependencies_get_retry_settings_and_hard_ones_do_not() -> None:
    r = resolve(estate(), MACMINI)
    assert r["gateway"].env["DB_RETRY_ATTEMPTS"].plain == "5"
    assert r["gateway"].env["DB_RETRY_DELAY"].plain == "3000"
    assert "DB_RETRY_ATTEMPTS" not in r["auth"].env
    assert r["gateway"].hard == ("auth",) and r["gateway"].lazy == ("postgres",)


def test_tiers_follow_the_graph() -> None:
    r = resolve(estate(), MACMINI)
    tiers = {s.id: s.tier for s in r.services}
    assert tiers == {"ollama": 0, "postgres": 1, "redis": 1, "auth": 2, "gateway": 3,
                     "notes-backend": 4, "notes-web": 5}
    assert [s.tier for s in r.services] == sorted(s.tier for s in r.services)


def test_a_deeper_hard_chain_pushes_the_tier_up() -> None:
    bot = service(id="bot", category="matrix", role="matrix", image=own("bot"),
                  ports=[port(4010)], needs=[hard("gateway")], health=http("/"), memory="64Mi",
                  availability=once("user-facing", "one bot account, one poller"))
    worker = service(id="worker", category="matrix", role="matrix", image=own("worker"),
                     needs=[lazy("bot")], memory="64Mi",
                     availability=many("background", "a stateless test worker"))
    r = resolve(estate([*base_services(), bot, worker]), MACMINI)
    assert r["bot"].tier == 4  # one after the gateway it waits for
    assert r["worker"].tier == 1  # lazy needs never delay a start


def test_replicas_on_kubernetes_follow_availability_and_docker_runs_one() -> None:
    """User-facing stateless services whose copies are interchangeable run two pods on
    Kubernetes; what must run once, keeps data or few miss runs one; Docker always one."""
    k3s = resolve(estate(gateway={"replicas": 3}), K3S)
    assert {s.id: s.replicas for s in k3s.containers} == {
        "postgres": 1, "redis": 1, "auth": 2, "gateway": 3, "notes-backend": 2, "notes-web": 2}
    operator = resolve(estate(**{"notes-web": {"public": None, "availability": many(
        "operator", "assumed of our test apps: stateless")}}), K3S)
    assert operator["notes-web"].replicas == 1
    assert {s.replicas for s in resolve(estate(), MACMINI).containers} == {1}


@pytest.mark.parametrize("stack", ["macmini", "k3s"])
def test_real_estate_tiers_match_spec(stack: str) -> None:
    """SPEC: infra 1, core 2, gateway 3, backends 4, frontends 5 — derived, then checked."""
    _, r = load_stack(stack)
    expected = {"datastore": {1}, "gateway": {3}, "backend": {4}, "frontend": {5}}
    for s in r.services:
        if s.category == "infra":
            assert s.tier == 1, s.id
        elif s.role in expected:
            assert s.tier in expected[s.role], s.id
        elif s.category == "core":
            assert s.tier in {2, 3}, s.id  # search waits for searxng, like the gateway tier
        for dep in s.hard:
            assert r[dep].tier < s.tier, (s.id, dep)


def test_real_estate_on_each_target() -> None:
    _, mac = load_stack("macmini")
    _, k3s = load_stack("k3s")
    assert "watchtower" in {s.id for s in mac.services}
    assert {"watchtower", "cadvisor"}.isdisjoint(s.id for s in k3s.services)
    for s in k3s.services:
        assert s.namespace == NAMESPACES[s.category]
        assert s.host == f"{s.id}.{s.namespace}.svc.cluster.local"
    assert mac["ollama"].host == "host.docker.internal"
    assert k3s["chat-backend"].env["OLLAMA_URL"].plain == \
        "http://ollama.manacore-core.svc.cluster.local:11434"
    assert mac["gateway"].env["SEARCH_URL"].plain == "http://manacore-core-search:3020"
    # until migrated, mana-bot mounts its legacy volume (tests/test_migration.py)
    assert mac["mana-bot"].volumes[0].final == "manacore-matrix-bots-data"
    assert mac["mana-bot"].volumes[0].sources[0].into == "mana-bot"
    assert k3s["mana-bot"].volumes[0].claim == "mana-bot-data"  # one claim per pod


def test_resolution_is_deterministic() -> None:
    assert resolve(estate(), K3S) == resolve(estate(), K3S)
    _, a = load_stack("macmini")
    _, b = load_stack("macmini")
    assert a.model_dump_json() == b.model_dump_json()


def test_host_mount_arguments_exist_only_where_the_mounts_do() -> None:
    """node-exporter reads the host through read-only mounts on both targets (SPEC's one
    exception to "no hostPath" on Kubernetes); every argument points at a mount that is there,
    and no other service gets host mounts on Kubernetes."""
    _, mac = load_stack("macmini")
    _, k3s = load_stack("k3s")
    args = ["--path.procfs=/host/proc", "--path.sysfs=/host/sys", "--path.rootfs=/rootfs"]
    for stack in (mac, k3s):
        node = stack["node-exporter"]
        assert [m.path for m in node.host_mounts] == ["/host/proc", "/host/sys", "/rootfs"]
        assert all(m.read_only for m in node.host_mounts)
        assert [a.plain for a in node.command or ()] == args
    assert k3s["node-exporter"].host_access and not mac["node-exporter"].host_access
    assert [s.id for s in k3s.services if s.host_mounts or s.host_access] == ["node-exporter"]


def test_retry_settings_only_reach_images_that_read_them() -> None:
    """DB_RETRY_* is read by ManaCore's own services; grafana, element-web and the exporters
    ignore it, so they do not get it (issue 13, item 9)."""
    for stack in ("macmini", "k3s"):
        _, estate = load_stack(stack)
        for sid in ("grafana", "element-web", "postgres-exporter", "redis-exporter"):
            assert estate[sid].lazy and not {"DB_RETRY_ATTEMPTS", "DB_RETRY_DELAY"} & set(
                estate[sid].env), (stack, sid)
        assert estate["gateway"].env["DB_RETRY_ATTEMPTS"].plain == "5"
        assert estate["gateway"].env["DB_RETRY_DELAY"].plain == "3000"


@pytest.mark.parametrize("stack", ["macmini", "k3s"])
def test_every_public_url_follows_the_stack_domain(stack: str) -> None:
    """Hostnames, browser URLs, config files and the Matrix server name all come from the
    stack's domain: another domain leaves no trace of the default one."""
    from catalog.load import load_estate
    from catalog.settings import load_settings

    settings = load_settings(stack)
    other = resolve(load_estate(), settings.model_copy(update={"domain": "example.org"}))
    text = other.model_dump_json()
    assert settings.domain not in text
    assert other["chat-web"].env["PUBLIC_BACKEND_URL"].plain == "https://chat-api.example.org"
    assert other["synapse"].public.hostname == "matrix.example.org"
