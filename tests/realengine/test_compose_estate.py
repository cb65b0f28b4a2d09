"""The whole Compose export on a real Docker Engine (issue: deploy for real on Docker).

The estate is rendered as a user renders it, `.env` filled with random values, every image built
here (real PostgreSQL and Redis, the wiring stand-in for the rest), and `docker compose up -d
--wait` brings up all of it. The assertions read the engine, the host's sockets and the real
databases — never only the file. Tests run in file order against one estate.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from catalog.configs import scrape_targets
from catalog.model import ED25519_KEY_ID
from exports.compose import networks
from exports.migration import HELPER_IMAGE as MIGRATION_HELPER
from exports.tunnel import CONNECTOR
from harness.images import recipe_of
from tests.conftest import resolved
from tests.docker_state import engine_inspect, reported
from tests.harness import run_program
from tests.realengine.conftest import TEST_LABEL, Engine, Estate, benchmark, clear_project, render
from tests.realengine.roundtrip import mismatches, same_spelling

POSTGRES_INIT_LINE = "running /docker-entrypoint-initdb.d/"


@pytest.fixture(scope="module")
def estate(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Estate]:
    clear_project(engine)
    est = render(engine, resolved("macmini"), tmp_path_factory.mktemp("compose") / "estate",
                 extra_images=(MIGRATION_HELPER,))
    est.seed_legacy_volumes()  # a fresh cluster: init must run in this test
    took = est.up()
    benchmark(f"compose estate healthy in {took:.1f} s "
          f"({len(est.container_names())} containers, Docker Engine "
          f"{engine.docker('version', '--format', '{{.Server.Version}}').strip()})")
    yield est
    est.compose("down", "-v", "-t", "5", check=False)
    engine.remove_volumes(*est.legacy_volumes())


def test_every_container_named_as_declared_healthy_on_its_networks(estate: Estate) -> None:
    """Each container on exactly the networks the resolved model gives it: the tunnel
    connector on the edge network alone, the services it routes to on both, the rest (PostgreSQL
    and Redis among them) only on the internal one."""
    want = {s.container_name: s for s in estate.resolved.containers}
    assert sorted(estate.container_names()) == sorted(want)
    settings = estate.resolved.settings
    for c in estate.engine.inspect(*want):
        name = c["Name"].lstrip("/")
        state = c["State"]
        assert state["Status"] == "running", name
        if want[name].health is not None:
            assert state["Health"]["Status"] == "healthy", name
        svc = want[name]
        expected = ({settings.edge_network} if svc.id == CONNECTOR else
                    {settings.network, settings.edge_network}
                    if svc.public or svc.id == "victoriametrics" else {settings.network})
        assert set(c["NetworkSettings"]["Networks"]) == expected, name
        assert expected == set(networks(svc, estate.resolved)), name
        assert c["Config"]["Labels"]["manacore.service"] == want[name].id


def test_the_engine_reports_back_what_the_docker_adapter_registers(estate: Estate) -> None:
    """Issue 25's round trip: every container as `docker inspect` reports it, read the way the
    docker provider reads it into its state, equals what the docker adapter registers for the
    same service with the same secrets (capabilities as CAP_…, memory and memory+swap, health
    durations, ports in order, stop grace, mounts, hosts, restart, security options, and the
    defaults the provider assumes), and the container runs the registered env, labels,
    networks and uploaded files. A field the engine rewrote would be a change on every preview
    or a replacement after `pulumi refresh`."""
    run = run_program("macmini", secrets=estate.env)
    problems, compared = mismatches(estate, run)
    assert not problems, "\n".join(problems)
    assert compared >= 46 * 15


def test_the_mock_tests_engine_model_is_the_engine(estate: Estate) -> None:
    """tests/docker_state.engine_inspect, which the mock tests refresh their state with,
    against Docker Engine itself, for a request in the spellings issue 25 found: capabilities
    in lower case without CAP_, memory without memory+swap, health durations past a minute."""
    name, image = "manacore-test-spellings", estate.resolved["auth"].image or ""
    estate.engine.run("docker", "rm", "-f", name, check=False)
    estate.engine.docker(
        "create", "--name", name, "--label", TEST_LABEL, "--cap-drop", "all", "--cap-add",
        "chown", "--cap-add", "setuid", "--memory", "64m", "--health-cmd", "true",
        "--health-interval", "90s", "--health-timeout", "5s", "--health-start-period", "3661s",
        "--health-retries", "2", "--stop-timeout", "15", "--restart", "unless-stopped",
        "--security-opt", "no-new-privileges:true", image)
    try:
        [real] = estate.engine.inspect(name)
    finally:
        estate.engine.run("docker", "rm", "-f", name, check=False)
    inputs = {"name": name, "image": real["Image"], "memory": 64, "stopTimeout": 15,
              "capabilities": {"adds": ["chown", "setuid"], "drops": ["all"]},
              "healthcheck": {"tests": ["CMD-SHELL", "true"], "interval": "90s",
                              "timeout": "5s", "startPeriod": "3661s", "retries": 2},
              "restart": "unless-stopped", "securityOpts": ["no-new-privileges:true"]}
    fields = ["capabilities", "memory", "memorySwap", "healthcheck", "stopTimeout", "restart",
              "securityOpts"]
    assert same_spelling(fields, real, engine_inspect(inputs)) == {}
    state = reported(real)  # what the engine made of it, as the provider reads it
    assert sorted(state["capabilities"]["adds"]) == ["CAP_CHOWN", "CAP_SETUID"]
    assert state["capabilities"]["drops"] == ["ALL"]
    assert state["memorySwap"] == 128, "twice the memory when left unset"
    check = state["healthcheck"]
    assert (check["interval"], check["startPeriod"]) == ("1m30s", "1h1m1s")


def test_the_tunnel_connector_reaches_only_what_it_routes_to(estate: Estate) -> None:
    """From the cloudflared container (the stand-in, with busybox): PostgreSQL's and Redis's
    ports are out of reach by name and by address, a routed service's port is not."""
    connector = estate.resolved[CONNECTOR].container_name
    internal = estate.resolved.settings.network

    def reach(host: str, port: int) -> bool:
        # busybox's nc has no -z: it either fails to connect and says why ("nc: can't
        # connect …", "nc: bad address …", "nc: timed out" when the engine drops the packets
        # between its networks) or holds the connection open until `timeout` ends it silently
        proc = estate.engine.run("docker", "exec", connector, "busybox", "timeout", "5",
                                 "busybox", "nc", "-w", "2", host, str(port), check=False)
        return "nc: " not in proc.stderr

    for sid, port in (("postgres", "postgres"), ("redis", "redis")):
        svc = estate.resolved[sid]
        [info] = estate.engine.inspect(svc.container_name)
        address = info["NetworkSettings"]["Networks"][internal]["IPAddress"]
        for host in (svc.container_name, address):
            assert not reach(host, svc.port(port).container), (sid, host)
    for sid in ("grafana", "synapse"):  # routed (Grafana behind Access; Synapse a real server)
        svc = estate.resolved[sid]
        assert reach(svc.container_name, svc.port(svc.public.port).container), sid


def _listeners() -> set[tuple[str, int]]:
    """Every listening TCP socket of the host (address, port), from /proc/net/tcp{,6}."""
    found = set()
    for path, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(path).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state != "0A":  # LISTEN
                continue
            addr, port = local.split(":")
            raw = bytes.fromhex(addr)
            # the kernel prints each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found.add((socket.inet_ntop(family, raw), int(port, 16)))
    return found


def test_published_ports_listen_on_loopback_only(estate: Estate) -> None:
    listeners = _listeners()
    published = [(s.id, p.published) for s in estate.resolved.containers for p in s.ports
                 if p.published]
    assert len(published) > 30
    for sid, port in published:
        bound = {addr for addr, p in listeners if p == port}
        assert bound == {"127.0.0.1"}, f"{sid}: port {port} listens on {bound or 'nothing'}"


def test_memory_limits_as_declared(estate: Estate) -> None:
    for s in estate.resolved.containers:
        (c,) = estate.engine.inspect(s.container_name)
        assert c["HostConfig"]["Memory"] == s.memory, s.id


def _events(estate: Estate) -> dict[str, dict[str, float]]:
    """Per container: when it first started and first turned healthy (engine events of `up`)."""
    seen: dict[str, dict[str, float]] = {}
    for e in estate.events:
        key = {"start": "start", "health_status: healthy": "healthy"}.get(e.get("Action", ""))
        if key:
            name = e["Actor"]["Attributes"].get("name", "")
            seen.setdefault(name, {}).setdefault(key, e["timeNano"] / 1e9)
    return seen


def test_hard_dependents_start_only_after_their_dependency_is_healthy(estate: Estate) -> None:
    events = _events(estate)
    by_id = {s.id: s for s in estate.resolved.services}
    checked = 0
    for s in estate.resolved.containers:
        for dep in s.hard:
            d = by_id[dep]
            if d.native:
                continue
            started = events[s.container_name]["start"]
            healthy = events[d.container_name]["healthy"]
            assert started >= healthy, (f"{s.id} started {healthy - started:.1f} s before "
                                        f"{dep} was healthy")
            checked += 1
    assert checked >= 20


def _report(estate: Estate, container: str) -> dict:
    return json.loads(estate.engine.docker("exec", container, "standin", "report"))


def test_every_standin_verified_its_wiring(estate: Estate) -> None:
    checks = 0
    for s in estate.resolved.containers:
        if recipe_of(s.image or "") != "standin":
            continue
        report = _report(estate, s.container_name)
        failed = [c for c in report["checks"] or [] if not c["ok"]]
        assert report["healthy"] and not failed, f"{s.id}: {failed}"
        sources = {c["source"] for c in report["checks"] or []}
        for name, value in estate.model["services"][s.id].get("environment", {}).items():
            if str(value).startswith(("postgres://", "postgresql://", "redis://")):
                assert any(src.split("+")[0] == name for src in sources), \
                    f"{s.id}: {name} was not verified"
        checks += len(report["checks"] or [])
    assert checks >= 40, "the stand-ins verify the estate's wiring"


def _psql(estate: Estate, url: str) -> subprocess.CompletedProcess[str]:
    query = "select current_user || '@' || current_database()"
    return subprocess.run(["psql", url, "-XAtc", query], capture_output=True, text=True,
                          timeout=30)


def test_every_database_role_logs_in_with_its_password_only_to_its_database(
        estate: Estate) -> None:
    port = estate.resolved["postgres"].port("postgres").published
    dbs = estate.resolved.databases
    assert len(dbs) >= 10
    for i, db in enumerate(dbs):
        password = estate.env[db.password_secret]
        ok = _psql(estate, f"postgresql://{db.name}:{password}@127.0.0.1:{port}/{db.name}")
        assert ok.returncode == 0 and ok.stdout.strip() == f"{db.name}@{db.name}", ok.stderr
        bad = _psql(estate, f"postgresql://{db.name}:wrong-{password}@127.0.0.1:{port}/{db.name}")
        assert bad.returncode != 0 and "password authentication failed" in bad.stderr, db.name
        other = dbs[(i + 1) % len(dbs)].name  # least privilege: no CONNECT elsewhere
        denied = _psql(estate, f"postgresql://{db.name}:{password}@127.0.0.1:{port}/{other}")
        assert denied.returncode != 0 and "permission denied" in denied.stderr, (db.name, other)


@pytest.mark.parametrize("wrong", ["password", "database", "host", "port"])
def test_a_standin_stays_unhealthy_on_wrong_wiring(estate: Estate, wrong: str) -> None:
    """The proof has teeth: one wrong part of a DATABASE_URL keeps a stand-in unhealthy."""
    s = estate.resolved["auth"]
    db = next(d for d in estate.resolved.databases if d.owner == "auth")
    pg = estate.resolved["postgres"]
    port = pg.port("postgres").container
    parts = {"password": estate.env[db.password_secret], "database": db.name,
             "host": pg.host, "port": str(port)}
    parts[wrong] = {"password": "not-the-password", "database": "nope",
                    "host": f"{pg.host}-nothere", "port": str(port + 1)}[wrong]
    url = f"postgresql://{db.name}:{parts['password']}@{parts['host']}:{parts['port']}/" \
          f"{parts['database']}"
    name = f"manacore-test-miswired-{wrong}"
    estate.engine.run("docker", "rm", "-f", name, check=False)
    estate.engine.docker("run", "-d", "--name", name, "--label", "manacore.test=1", "--network",
                         estate.resolved.settings.network, "-e", f"DATABASE_URL={url}",
                         s.image or "")
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            report = _report(estate, name)
            if report["checks"] and report["checks"][0]["detail"] not in ("", "ok"):
                break
            time.sleep(1)
        assert not report["healthy"], report
        assert estate.engine.run("docker", "exec", name, "wget", "-qO-",
                                 f"http://127.0.0.1:{s.port().container}/health",
                                 check=False).returncode != 0
        print(f"{wrong}: {report['checks'][0]['detail']}")
    finally:
        estate.engine.run("docker", "rm", "-f", name, check=False)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


def test_the_real_exporters_reach_the_real_databases(estate: Estate) -> None:
    """postgres-exporter, redis-exporter and node-exporter are Debian's real servers: their
    metrics say whether our settings (address, role, password) reached the database."""
    def metrics(sid: str) -> list[str]:
        assert recipe_of(estate.resolved[sid].image or "") != "standin", sid
        port = estate.resolved[sid].ports[0].published
        return _get(f"http://127.0.0.1:{port}/metrics").splitlines()

    assert "pg_up 1" in metrics("postgres-exporter")
    assert "redis_up 1" in metrics("redis-exporter")
    assert any(m.startswith("node_load1 ") for m in metrics("node-exporter"))


@pytest.mark.parametrize(("sid", "server", "user"), [
    ("postgres", "postgres", "postgres"), ("redis", "redis-server", "redis")])
def test_the_databases_step_down_from_root(estate: Estate, sid: str, server: str,
                                           user: str) -> None:
    """The official entrypoints drop root only for their own server command (issue 13: Redis
    ran as root under `sh -c`); the real images keep that contract, so this reads the truth."""
    container = estate.resolved[sid].container_name
    uid = estate.engine.docker("exec", container, "id", "-u", user).strip()
    # `docker top` needs the pid column; uids, since the host's user names differ
    top = estate.engine.docker("top", container, "-o", "pid,uid,comm")
    uids = {line.split()[1] for line in top.splitlines()[1:] if server in line}
    assert uids == {uid} and uid != "0", top


def test_victoriametrics_scrapes_every_target_with_our_config(estate: Estate) -> None:
    vm = estate.resolved["victoriametrics"]
    want = scrape_targets(estate.resolved)
    url = f"http://127.0.0.1:{vm.ports[0].published}/api/v1/targets"
    deadline = time.monotonic() + 90  # a target is first scraped within one scrape interval
    while True:
        active = json.loads(_get(url))["data"]["activeTargets"]
        health = {t["labels"]["service"]: t["health"] for t in active}
        if set(health) == set(want) and set(health.values()) == {"up"}:
            break
        assert time.monotonic() < deadline, {t["scrapeUrl"]: (t["health"], t["lastError"])
                                             for t in active if t["health"] != "up"} or health
        time.sleep(3)


def test_synapse_runs_with_our_homeserver_yaml_and_signing_key(estate: Estate) -> None:
    """The real Synapse (PyPI) on the real PostgreSQL with the generated homeserver.yaml."""
    synapse = estate.resolved["synapse"]
    assert recipe_of(synapse.image or "") == "synapse"
    base = f"http://127.0.0.1:{synapse.port().published}"
    assert _get(f"{base}/health") == "OK"
    assert "v1.11" in json.loads(_get(f"{base}/_matrix/client/versions"))["versions"]
    keys = json.loads(_get(f"{base}/_matrix/key/v2/server"))
    assert keys["server_name"] == estate.resolved.settings.domain
    assert list(keys["verify_keys"]) == [f"ed25519:{ED25519_KEY_ID}"]
    seed = estate.env["SYNAPSE_SIGNING_KEY"].split()[2]
    assert seed not in json.dumps(keys), "the public key, never the seed"


def test_data_survives_down_and_up_and_init_runs_once(estate: Estate) -> None:
    pg, redis = estate.resolved["postgres"], estate.resolved["redis"]
    port = pg.port("postgres").published
    url = f"postgresql://postgres:{estate.env['POSTGRES_PASSWORD']}@127.0.0.1:{port}/postgres"
    subprocess.run(["psql", url, "-Xqc", "create table kept (v text); insert into kept "
                    "values ('survives')"], check=True, capture_output=True)
    rcli = ["docker", "exec", redis.container_name, "redis-cli", "-a",
            estate.env["REDIS_PASSWORD"], "--no-auth-warning"]
    assert estate.engine.run(*rcli, "set", "kept", "survives").stdout.strip() == "OK"
    first = estate.engine.run("docker", "logs", pg.container_name).stdout
    assert POSTGRES_INIT_LINE in first, "the init script ran on the empty volume"

    estate.compose("down", "-t", "10")
    assert not estate.engine.docker("ps", "-aq", "--filter",
                                    "label=com.docker.compose.project=manacore").split()
    took = estate.up()
    benchmark(f"estate healthy again after down in {took:.1f} s")

    again = estate.engine.run("docker", "logs", pg.container_name)
    assert POSTGRES_INIT_LINE not in again.stdout + again.stderr, "init must not run twice"
    assert "Skipping initialization" in again.stdout + again.stderr
    rows = subprocess.run(["psql", url, "-XAtc", "select v from kept"], check=True,
                          capture_output=True, text=True).stdout.split()
    assert rows == ["survives"]
    assert estate.engine.run(*rcli, "get", "kept").stdout.strip() == "survives"


def test_down_v_never_removes_a_legacy_volume(estate: Estate) -> None:
    legacy = estate.legacy_volumes()
    assert "manacore-postgres" in legacy
    estate.compose("down", "-v", "-t", "10")
    for name in legacy:
        assert estate.engine.exists(name), f"down -v removed the legacy volume {name}"
