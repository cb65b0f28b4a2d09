"""Generated configuration for the third-party services: it parses (the PostgreSQL init really
runs in a throwaway PostgreSQL; YAML and JSON are loaded), names exactly the consumers and
targets of the catalogue on both stacks, and keeps every secret out of plain files."""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from catalog.resolve import ResolvedEstate, ResolvedFile, ResolvedService
from tests.conftest import resolved

STACKS = ("macmini", "k3s")
# What the catalogue says, transcribed: who has a metrics endpoint (a port named "metrics", or
# an exporter's own port), per target.
SCRAPED = {
    "macmini": {"cadvisor", "cloudflared", "node-exporter", "postgres-exporter", "pushgateway",
                "redis-exporter", "s3", "synapse"},
    "k3s": {"cloudflared", "node-exporter", "postgres-exporter", "pushgateway",
            "redis-exporter", "s3", "synapse"},
}
CONSUMERS = {"auth", "gateway", "chat", "todo", "calendar", "clock", "contacts", "storage",
             "presi", "nutriphi", "skilltree", "synapse", "project_doc", "umami", "n8n"}
# Secret values a YAML writer could trip over.
NASTY = "p@ss: #word 'q' \"dq\" \\ {x} [y] & *z ! % |-"


def file_of(svc: ResolvedService, prefix: str) -> ResolvedFile:
    found = [f for f in svc.files if f.path.startswith(prefix)]
    assert len(found) == 1, (svc.id, [f.path for f in svc.files])
    return found[0]


@pytest.fixture(params=STACKS)
def estate(request: pytest.FixtureRequest) -> ResolvedEstate:
    return resolved(request.param)


# --- every file ------------------------------------------------------------------------------


def test_files_exist_on_both_stacks_with_absolute_unique_paths(estate: ResolvedEstate) -> None:
    with_files = {s.id for s in estate.services if s.files}
    assert with_files == {"postgres", "victoriametrics", "grafana", "element-web", "synapse",
                          "searxng", "s3", "backup"}
    declared = {s.name for s in estate.secrets}
    for s in estate.services:
        paths = [f.path for f in s.files]
        assert len(paths) == len(set(paths)) and all(p.startswith("/") for p in paths), s.id
        for f in s.files:
            assert set(f.content.secrets) <= declared, (s.id, f.path)
            if s.id != "synapse":
                assert f.content.secrets == (), f"{s.id}: {f.path} must stay a plain file"
            volumes = [v.path for v in s.volumes]
            assert not any(f.path.startswith(v + "/") for v in volumes), \
                f"{f.path} would hide inside a data volume"


# --- PostgreSQL ------------------------------------------------------------------------------


def test_postgres_environment_carries_every_consumer_password(estate: ResolvedEstate) -> None:
    pg = estate["postgres"]
    assert {d.name for d in estate.databases} == CONSUMERS
    assert {d.password_secret for d in estate.databases} <= set(pg.secrets)
    init = file_of(pg, "/docker-entrypoint-initdb.d/")
    text = init.content.plain
    assert text is not None
    for db in estate.databases:
        assert f"\\getenv password {db.password_secret}" in text


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or \
        [p for p in [shutil.which(name)] if p]
    assert found, f"{name} is missing: run bash scripts/setup.sh (installs postgresql)"
    return found[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A throwaway PostgreSQL on loopback (initdb refuses root, so it runs as `postgres`)."""

    def __init__(self, base: Path) -> None:
        self.base, self.port = base, _free_port()
        self.user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.user:
            shutil.chown(base, "postgres")
        subprocess.run([*self.user, _pg_bin("initdb"), "-D", str(base / "data"), "-U",
                        "postgres", "--auth-local=trust", "--auth-host=scram-sha-256",
                        "--locale=C.UTF-8"], check=True, capture_output=True)
        subprocess.run([*self.user, _pg_bin("pg_ctl"), "-D", str(base / "data"), "-w", "-l",
                        str(base / "log"), "-o",
                        f"-k {base} -p {self.port} -c listen_addresses=127.0.0.1", "start"],
                       check=True, capture_output=True)

    def psql(self, *args: str, env: dict[str, str] | None = None,
             user: str = "postgres", host: str | None = None, database: str = "postgres",
             script: str | None = None) -> subprocess.CompletedProcess[str]:
        """psql as the container runs it; `script` is fed on standard input."""
        if script is not None:
            args = (*args, "-f", "-")
        return subprocess.run(
            [*self.user, "env", *(f"{k}={v}" for k, v in (env or {}).items()),
             _pg_bin("psql"), "-X", "-v", "ON_ERROR_STOP=1", "-h", host or str(self.base),
             "-p", str(self.port), "-U", user, "-d", database, "-At", *args],
            input=script, capture_output=True, text=True, timeout=60)

    def stop(self) -> None:
        subprocess.run([*self.user, _pg_bin("pg_ctl"), "-D", str(self.base / "data"), "-m",
                        "immediate", "stop"], capture_output=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    base = Path(tempfile.mkdtemp(prefix="manacore-pg-"))  # reachable by the postgres user
    running = Cluster(base)
    try:
        yield running
    finally:
        running.stop()
        shutil.rmtree(base, ignore_errors=True)


def _init_sql() -> str:
    text = file_of(resolved("macmini")["postgres"], "/docker-entrypoint-initdb.d/").content.plain
    assert text is not None
    return text


# Who may do what: roles and their attributes, databases with owner and privileges (ACL).
CATALOGUE_STATE = (
    "SELECT string_agg(format('%s %s %s %s', rolname, rolsuper, rolcanlogin, rolcreatedb), ';' "
    "ORDER BY rolname) FROM pg_roles UNION ALL SELECT string_agg(format('%s %s %s %s', datname, "
    "pg_get_userbyid(datdba), datacl, datcollate), ';' ORDER BY datname) FROM pg_database")


def test_postgres_init_really_creates_one_role_and_database_per_consumer(
        cluster: Cluster) -> None:
    mac = resolved("macmini")
    passwords = {d.password_secret: f"{NASTY} {d.name}" for d in (*mac.databases, *mac.monitors)}
    state = []
    for attempt in (1, 2):  # idempotent: the second run on the same cluster changes nothing
        done = cluster.psql(env=passwords, script=_init_sql())
        assert done.returncode == 0, (attempt, done.stderr)
        state.append(cluster.psql("-c", CATALOGUE_STATE).stdout)
    assert state[0] == state[1] and "chat" in state[0]
    roles = cluster.psql("-c", "SELECT rolname FROM pg_roles WHERE rolcanlogin AND "
                               "rolname <> 'postgres'").stdout.split()
    assert set(roles) == CONSUMERS | {"postgres_exporter"}
    owners = dict(line.split("|") for line in cluster.psql(
        "-c", "SELECT datname, pg_get_userbyid(datdba) FROM pg_database "
              "WHERE NOT datistemplate AND datname <> 'postgres'").stdout.split())
    assert owners == {db: db for db in CONSUMERS}, "each database owned by its own role"
    collate = cluster.psql("-c", "SELECT datcollate FROM pg_database WHERE datname = "
                                 "'synapse'").stdout.strip()
    assert collate == "C", "Synapse refuses any other collation"
    login = cluster.psql("-c", "SELECT current_user", host="127.0.0.1", user="chat",
                         database="chat", env={"PGPASSWORD": passwords["CHAT_DB_PASSWORD"]})
    assert login.returncode == 0 and login.stdout.strip() == "chat", login.stderr
    wrong = cluster.psql("-c", "SELECT 1", host="127.0.0.1", user="chat", database="chat",
                         env={"PGPASSWORD": "not-the-password"})
    assert wrong.returncode != 0
    # least privilege: a role connects to its own database only
    for other in ("todo", "synapse", "postgres", "template1"):
        refused = cluster.psql("-c", "SELECT 1", host="127.0.0.1", user="chat", database=other,
                               env={"PGPASSWORD": passwords["CHAT_DB_PASSWORD"]})
        assert refused.returncode != 0, other
        assert f'permission denied for database "{other}"' in refused.stderr, refused.stderr
    # the exporter's role reads every statistic from the maintenance database, and no data
    exporter = {"PGPASSWORD": passwords["POSTGRES_EXPORTER_DB_PASSWORD"]}
    stats = cluster.psql("-c", "SELECT rolsuper, pg_has_role('pg_monitor', 'member'), "
                         "pg_database_size('chat') > 0 FROM pg_roles WHERE rolname = "
                         "current_user", host="127.0.0.1", user="postgres_exporter", env=exporter)
    assert stats.returncode == 0 and stats.stdout.strip() == "f|t|t", stats.stderr
    refused = cluster.psql("-c", "SELECT 1", host="127.0.0.1", user="postgres_exporter",
                           database="chat", env=exporter)
    assert 'permission denied for database "chat"' in refused.stderr


def test_postgres_init_stops_when_a_password_is_missing(cluster: Cluster) -> None:
    env = {d.password_secret: "x" for d in resolved("macmini").databases if d.name != "umami"}
    done = cluster.psql(env=env, script=_init_sql())
    assert done.returncode != 0 and "UMAMI_DB_PASSWORD is not set" in done.stderr


# --- VictoriaMetrics, Grafana, Element --------------------------------------------------------


def test_scrape_config_lists_every_metrics_endpoint_at_its_resolved_address(
        estate: ResolvedEstate) -> None:
    vm = estate["victoriametrics"]
    flag = next(a.plain for a in vm.command or () if (a.plain or "").startswith(
        "-promscrape.config="))
    config = yaml.safe_load(file_of(vm, flag.split("=", 1)[1]).content.plain or "")
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert set(jobs) == SCRAPED[estate.settings.stack]
    for sid, job in jobs.items():
        svc = estate[sid]
        port = next((p for p in svc.ports if p.name == "metrics"), svc.ports[0])
        if estate.target == "kubernetes" and svc.workload == "daemon":
            continue  # every node: test_node_exporter_is_scraped_on_every_node
        assert job["static_configs"][0]["targets"] == [f"{svc.host}:{port.container}"]
    assert jobs["synapse"]["metrics_path"] == "/_synapse/metrics"
    assert jobs["pushgateway"]["honor_labels"] is True


def test_node_exporter_is_scraped_on_every_node() -> None:
    """On K3s node-exporter runs once per node on the host network: the scrape job resolves its
    headless Service's name to every pod (= node) address instead of one Service address."""
    k3s = resolved("k3s")
    vm = k3s["victoriametrics"]
    flag = next(a.plain for a in vm.command or () if (a.plain or "").startswith(
        "-promscrape.config="))
    config = yaml.safe_load(file_of(vm, flag.split("=", 1)[1]).content.plain or "")
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "node-exporter")
    node = k3s["node-exporter"]
    assert "static_configs" not in job
    assert job["dns_sd_configs"] == [{"names": [node.host], "type": "A",
                                      "port": node.port("metrics").container}]
    labels = {r["target_label"]: r["replacement"] for r in job["relabel_configs"]}
    assert labels == {"service": "node-exporter", "category": "mon"}


def test_searxng_settings_enable_the_json_api(estate: ResolvedEstate) -> None:
    """SearXNG's defaults allow only `html`; mana-search asks for `format=json` (403 without
    it). The secret key and base URL stay in the environment, out of the file."""
    searxng = estate["searxng"]
    settings = file_of(searxng, "/etc/searxng/settings.yml")
    config = yaml.safe_load(settings.content.plain or "")
    assert config["use_default_settings"] is True
    assert "json" in config["search"]["formats"] and "html" in config["search"]["formats"]
    assert "secret_key" not in config.get("server", {}) and settings.content.secrets == ()
    assert {"SEARXNG_SECRET", "SEARXNG_BASE_URL"} <= set(searxng.environment)


def test_grafana_datasource_is_victoriametrics_at_its_resolved_url(
        estate: ResolvedEstate) -> None:
    grafana = estate["grafana"]
    config = yaml.safe_load(file_of(
        grafana, "/etc/grafana/provisioning/datasources/").content.plain or "")
    [source] = config["datasources"]
    assert config["apiVersion"] == 1
    assert (source["type"], source["url"], source["isDefault"]) == (
        "prometheus", estate["victoriametrics"].url(), True)


def test_element_points_at_synapse_public_url(estate: ResolvedEstate) -> None:
    element = estate["element-web"]
    config = json.loads(file_of(element, "/app/config.json").content.plain or "")
    home = config["default_server_config"]["m.homeserver"]
    assert home == {"base_url": f"https://{estate['synapse'].public.hostname}",
                    "server_name": estate.settings.domain}


# --- Synapse ---------------------------------------------------------------------------------


def test_synapse_config_is_a_secret_file_with_the_resolved_database(
        estate: ResolvedEstate) -> None:
    synapse = estate["synapse"]
    path = synapse.env["SYNAPSE_CONFIG_PATH"].plain
    f = file_of(synapse, path or "?")
    db = next(d for d in estate.databases if d.owner == "synapse")
    assert set(f.content.secrets) == {db.password_secret, "SYNAPSE_REGISTRATION_SHARED_SECRET",
                                      "SYNAPSE_MACAROON_SECRET_KEY"}
    values = {name: f"{NASTY} {name}" for name in f.content.secrets}
    config = yaml.safe_load(f.content.render(values.__getitem__))
    args = config["database"]["args"]
    pg = estate["postgres"]
    assert (args["host"], args["port"], args["user"], args["database"]) == (
        pg.host, pg.port("postgres").container, db.name, db.name)
    assert args["password"] == values[db.password_secret], "taken verbatim, whatever it holds"
    assert config["macaroon_secret_key"] == values["SYNAPSE_MACAROON_SECRET_KEY"]
    assert config["server_name"] == estate.settings.domain
    assert config["public_baseurl"] == f"https://{synapse.public.hostname}/"
    listeners = {x["type"]: x["port"] for x in config["listeners"]}
    assert listeners == {"http": synapse.port("http").container,
                         "metrics": synapse.port("metrics").container}
    data = synapse.volumes[0].path
    assert config["media_store_path"].startswith(data + "/")
    # Synapse never generates a missing key in `run` mode: the key is a secret file of its own
    key = file_of(synapse, config["signing_key_path"])
    assert key.content.secrets == ("SYNAPSE_SIGNING_KEY",)
    assert key.content.render(lambda name: "ed25519 a_x c2VlZA==") == "ed25519 a_x c2VlZA==\n"
    assert next(s for s in estate.secrets if s.name == "SYNAPSE_SIGNING_KEY").kind == "ed25519"
    placeholder = f.content.render(lambda name: "")
    assert not any(v in placeholder for v in values.values())
    assert not any(k.startswith("SYNAPSE_DB_") for k in synapse.env), \
        "Synapse reads its database from the file, not from the environment"


def test_configs_are_deterministic() -> None:
    from catalog.load import load_stack

    for stack in STACKS:
        a, b = load_stack(stack)[1], load_stack(stack)[1]
        assert [s.files for s in a.services] == [s.files for s in b.services]
