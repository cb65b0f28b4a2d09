"""Every rule has a broken catalogue that trips it; all violations come out in one run."""

from __future__ import annotations

import pytest

from catalog.model import (
    Estate,
    HostMount,
    Legacy,
    Public,
    Volume,
    dump,
    hard,
    image,
    lazy,
    many,
    once,
    port,
    secret,
    url_of,
)
from catalog.rules import EstateError, check, validate
from tests.estates import MACMINI, STATELESS, base_services, estate

# (rule, changes to the base estate, a fragment the message must contain, the service named)
BROKEN = [
    ("schema", {"auth": {"ports": [{"container": "three thousand"}]}}, "ports.0.container",
     "auth"),
    ("naming", {"auth": {"id": "Auth_Service"}}, "lowercase", "Auth_Service"),
    ("volume-naming", {"postgres": {"volumes": [Volume(path="/data", name="pg-volume")]}},
     "manacore-postgres-data", "postgres"),
    ("port-range", {"notes-web": {"ports": [port(3099)]}}, "5000-5099", "notes-web"),
    ("port-unique", {"gateway": {"ports": [port(3001)]}}, "also used by auth", "gateway"),
    ("port-unique", {"gateway": {"ports": [port(4011)]}}, "reserved", "gateway"),
    ("hostname-unique", {"gateway": {"public": Public(host="auth")}}, "also used by", "gateway"),
    ("hostname-unique", {"gateway": {"public": Public(host="api", port="admin")}},
     "does not have", "gateway"),
    ("hostname-unique", {"gateway": {"public": Public(host="api", open_paths=["/hook"])}},
     "needs access=True", "gateway"),
    ("dependency-exists", {"gateway": {"needs": [hard("auth"), lazy("billing")]}},
     "unknown service 'billing'", "gateway"),
    ("dependency-exists", {"gateway": {"env": {"X": url_of("notes-backend")}}},
     "not among its needs", "gateway"),
    ("dependency-target", {"redis": {"targets": ["docker"]}}, "does not run on kubernetes",
     "auth"),
    ("no-cycle", {"postgres": {"needs": [lazy("auth")]}}, "cycle", "postgres"),
    ("hard-needs-health", {"redis": {"health": None}}, "no health check", "auth"),
    ("health", {"auth": {"health": {"http": "health"}}}, "must start with '/'", "auth"),
    ("health", {"auth": {"health": {"http": "/health", "tcp": True}}}, "one of http, tcp",
     "auth"),
    ("memory-limit", {"auth": {"memory": None}}, "memory limit", "auth"),
    ("memory-limit", {"auth": {"memory": "lots"}}, "not a memory quantity", "auth"),
    ("image-pinned", {"redis": {"image": image("redis:latest")}}, "pinned tag", "redis"),
    ("image-pinned", {"redis": {"image": image("redis")}}, "pinned tag", "redis"),
    ("host-access", {"gateway": {"host_access": True}}, "per-node exporter", "gateway"),
    ("docker-socket", {"gateway": {"host_mounts": [HostMount(source="/var/run/docker.sock",
                                                             path="/var/run/docker.sock")]}},
     "root on the host", "gateway"),
    ("docker-socket", {"gateway": {"host_mounts": [HostMount(
        source="/var/run", path="/var/run", read_only=False, root_equivalent="why")]}},
     "read_only=True", "gateway"),
    ("docker-socket", {"gateway": {"host_mounts": [HostMount(
        source="/sys", path="/sys", root_equivalent="why")]}}, "drop root_equivalent",
     "gateway"),
    ("legacy-unique", {"gateway": {"legacy": Legacy(containers=["old-auth"])}},
     "legacy container old-auth", "gateway"),
    ("legacy-unique", {"gateway": {"legacy": Legacy(ports=[5432])}}, "legacy port 5432",
     "gateway"),
    ("startup-order", {"auth": {"needs": [hard("postgres"), hard("redis"),
                                          lazy("notes-backend")]}}, "core start before",
     "auth"),
    ("secrets", {"gateway": {"env": {"TOKEN": secret("UNDECLARED")}}}, "not declared",
     "gateway"),
    ("database", {"notes-backend": {"needs": [hard("auth"), lazy("ollama")]}},
     "does not depend on postgres", "notes-backend"),
    ("database", {"notes-backend": {"pg_monitor": "stats"}}, "no database of its own",
     "notes-backend"),
    ("data-safety", {"gateway": {"volumes": [Volume(path="/d", name="manacore-auth-data")]},
                     "auth": {"volumes": [Volume(path="/data")]}},
     "also mounted by gateway", "auth"),
    ("data-safety", {"postgres": {"dump": dump("postgres", "POSTGRES_PASSWORD",
                                               port="postgres"),
                                  "volumes": [Volume(path="/pg", name="manacore-shared-data",
                                                     subpath="pg", shared=True)]}},
     "declared shared", "postgres"),
    ("internet", {"ollama": {"internet": "model downloads"}}, "drop internet", "ollama"),
    ("internet", {"auth": {"internet": "yes"}}, "say what it reaches and why", "auth"),
    ("availability", {"gateway": {"availability": None}}, "declare availability", "gateway"),
    ("availability", {"gateway": {"availability": many("user-facing", "stateless")}},
     "where upstream confirms it", "gateway"),
    ("availability", {"postgres": {"replicas": 2}}, "it must run once", "postgres"),
    ("availability", {"notes-backend": {"volumes": [Volume(path="/data")], "replicas": 2}},
     "ReadWriteOnce claim", "notes-backend"),
    ("availability", {"gateway": {"replicas": 1}}, "runs at least 2", "gateway"),
    ("availability", {"notes-web": {"availability": many("operator", STATELESS)}},
     "public without Access", "notes-web"),
    ("availability", {"redis": {"availability": once("background", "one server, one copy")}},
     "user-facing auth waits for it", "redis"),
]


def test_the_base_estate_is_valid() -> None:
    assert validate(estate(), MACMINI) == []


@pytest.mark.parametrize(("rule", "changes", "fragment", "service"), BROKEN,
                         ids=[f"{r}-{i}" for i, (r, *_) in enumerate(BROKEN)])
def test_each_rule_names_service_and_rule(rule, changes, fragment, service) -> None:
    found = validate(estate(**changes), MACMINI)
    hits = [v for v in found if v.rule == rule and v.service == service]
    assert hits, f"expected a {rule} violation for {service}, got {found}"
    assert any(fragment in v.message for v in hits), hits
    line = str(hits[0])
    assert line.startswith(f"{service}: {rule}: ")


def test_every_rule_has_a_failing_case() -> None:
    from catalog.rules import RULES

    assert set(RULES) == {rule for rule, *_ in BROKEN}


def test_several_violations_are_reported_in_one_run() -> None:
    broken = estate(
        auth={"memory": None},
        gateway={"ports": [port(3001)], "needs": [hard("auth"), lazy("billing")]},
        redis={"image": image("redis:latest")},
        postgres={"needs": [lazy("auth")]},
    )
    with pytest.raises(EstateError) as caught:
        check(broken, MACMINI)
    rules = {(v.service, v.rule) for v in caught.value.violations}
    assert {("auth", "memory-limit"), ("gateway", "port-unique"), ("auth", "port-unique"),
            ("gateway", "dependency-exists"), ("redis", "image-pinned"),
            ("postgres", "no-cycle")} <= rules
    assert len(str(caught.value).splitlines()) == len(caught.value.violations)


def test_a_duplicate_id_is_reported_not_raised() -> None:
    services = base_services()
    found = validate(Estate(services=(*services, services[0])), MACMINI)
    assert any(v.rule == "naming" and "declared 2 times" in v.message for v in found)


def test_settings_with_a_latest_tag_are_rejected() -> None:
    found = validate(estate(), MACMINI.model_copy(update={"tag": "latest"}))
    assert [(v.service, v.rule) for v in found] == [("settings", "image-pinned")]


def test_a_broken_catalogue_never_raises_from_a_rule(monkeypatch) -> None:
    """Even a rule that crashes becomes a reported violation."""
    from catalog import rules

    def crash(_estate, _settings):
        raise RuntimeError("boom")
        yield  # pragma: no cover

    monkeypatch.setitem(rules.RULES, "exploding", crash)
    found = validate(estate(), MACMINI)
    assert [str(v) for v in found] == ["estate: exploding: could not be checked: "
                                       "RuntimeError('boom')"]


def test_the_real_catalogue_is_valid_for_both_stacks() -> None:
    from catalog.load import load_estate
    from catalog.settings import load_settings

    real = load_estate()
    for stack in ("macmini", "k3s"):
        assert validate(real, load_settings(stack)) == [], stack


def test_a_distroless_image_checks_inside_on_docker_and_over_http_on_kubernetes() -> None:
    """cloudflared has no shell: Docker runs its own `ready` command, the kubelet probes /ready."""
    from catalog.load import load_stack
    from exports.compose import healthcheck
    from exports.kubernetes import probes

    _, mac = load_stack("macmini")
    _, k3s = load_stack("k3s")
    assert healthcheck(mac["cloudflared"])["test"][:3] == ["CMD", "cloudflared", "tunnel"]
    readiness = probes(k3s["cloudflared"])["readinessProbe"]
    assert readiness["httpGet"] == {"path": "/ready", "port": "metrics"}
    assert validate(estate(auth={"health": {"http": "/health", "cmd": ("true",)}}), MACMINI) == []


def test_only_watchtower_and_cadvisor_reach_the_docker_socket_read_only() -> None:
    """The two root-equivalent mounts of the catalogue (issue 14, item 8b), each saying why."""
    from catalog.rules import SOCKET_PATHS
    from services import estate as catalogue

    services = catalogue().valid_services
    found = {(s.id, m.source) for s in services for m in s.host_mounts
             if m.source in SOCKET_PATHS or m.root_equivalent}
    assert found == {("watchtower", "/var/run/docker.sock"), ("cadvisor", "/var/run")}
    for s in services:
        for m in s.host_mounts:
            assert m.read_only, (s.id, m.source)
            assert bool(m.root_equivalent) == ((s.id, m.source) in found), (s.id, m.source)


def test_data_safety_names_both_services_and_every_violation_at_once() -> None:
    """Item 4 of issue 27: a service's own volume is its alone; a shared one is declared on
    every mount and never holds a database's files. Each line names the other service."""
    pg_dump = dump("postgres", "POSTGRES_PASSWORD", port="postgres")
    found = validate(estate(
        postgres={"dump": pg_dump, "volumes": [Volume(path="/pg")]},
        gateway={"volumes": [Volume(path="/peek", name="manacore-postgres-data")]},
        auth={"volumes": [Volume(path="/a", name="manacore-group-data", subpath="auth",
                                 shared=True)]},
        **{"notes-backend": {"volumes": [Volume(path="/n", name="manacore-group-data",
                                                subpath="notes")]}}), MACMINI)
    lines = sorted(str(v) for v in found if v.rule == "data-safety")
    assert lines == [
        "gateway: data-safety: mounts volume manacore-postgres-data, which holds the files of "
        "postgres's server; give gateway a volume of its own",
        "notes-backend: data-safety: volume manacore-group-data is also mounted by auth; a "
        "service's own volume is mounted by it alone: give each its own volume, or declare "
        "the sharing on every mount (Volume(shared=True, subpath=…))",
        "postgres: data-safety: volume manacore-postgres-data holds the files of postgres's "
        "postgres server and is also mounted by gateway; a database's volume is mounted by "
        "its server alone"]


def test_the_bots_volume_is_declared_shared_and_no_database_volume_is() -> None:
    from services import estate as catalogue

    mounts = {}
    for s in catalogue().valid_services:
        for v in s.volumes:
            mounts.setdefault(v.name or f"manacore-{s.id}-data", []).append((s, v))
    shared = {n for n, m in mounts.items() if len(m) > 1}
    assert shared == {"manacore-matrix-bots-data"}
    assert all(v.shared for _, v in mounts["manacore-matrix-bots-data"])
    assert {s.id for m in mounts.values() for s, _ in m if s.dump} == {
        "postgres", "redis", "s3"}
