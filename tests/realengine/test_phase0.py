"""Phase 0 on real volumes: the legacy estate's data moved by the generated scripts, then the
estate brought up on the new volumes (issue: deploy for real on Docker, part 4 and 6).

The legacy volumes are made the way the old estate had them: a real PostgreSQL cluster at the
root of `manacore-postgres`, written by a container of the old name, data files in every other
legacy volume (the ten bots' among them), and objects in the legacy object store's volume,
uploaded over S3 to a container of the old name (`manacore-minio`: the harness's MinIO stand-in,
a Garage behind MinIO's entrypoint, MinIO being on no registry here). The scripts run against
the real engine, as a user runs them on the Mac Mini; the object copy goes into the real Garage
of the new estate.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from catalog.load import load_estate
from catalog.resolve import ResolvedEstate, resolve
from catalog.settings import ROOT, load_settings
from exports.migration import (
    CHECK_SCRIPT,
    COPIER_IMAGE,
    HELPER_IMAGE,
    ObjectCopy,
    object_copies,
    volume_moves,
)
from tests.realengine.conftest import (
    Engine,
    Estate,
    benchmark,
    benchmark_time,
    clear_project,
    render,
    stack_copy,
)

LEGACY_CONTAINER = "manacore-postgres"  # the old PostgreSQL container's name (seed)
ROWS = 5000
# bucket/key → size: a multipart upload (over rclone's 5 MiB cutoff set below), an empty object,
# a key with a space and an umlaut, nested prefixes
OBJECTS = {"contacts/photos/2024/anna.jpg": 300_000, "contacts/empty.txt": 0,
           "storage/docs/Übersicht 2025.pdf": 1024, "storage/big/archive.bin": 12 * 2**20}


def migrated(resolved: ResolvedEstate) -> ResolvedEstate:
    finals = tuple(sorted({m.final for m in volume_moves(resolved)}))
    settings = load_settings("macmini").model_copy(update={"migrated_volumes": finals})
    return resolve(load_estate(), settings)


class Legacy:
    """The old estate's volumes with known content, and what the scripts must preserve."""

    def __init__(self, engine: Engine, resolved: ResolvedEstate, upload: Path):
        self.engine, self.resolved = engine, resolved
        self.upload = upload  # the objects to upload, as files (bucket/key)
        self.moves = volume_moves(resolved)
        self.volumes = sorted({x.volume for m in self.moves for x in m.sources})
        self.finals = sorted({m.final for m in self.moves})
        self.postgres = next(x.volume for m in self.moves for x in m.sources
                             if "postgres" in m.services)
        self.sums: dict[str, str] = {}
        self.copies: list[ObjectCopy] = object_copies(resolved)
        self.object_volumes = sorted({v for c in self.copies for v in c.legacy_volumes})
        self.objects: dict[str, str] = {}  # bucket/key → sha256 of what was uploaded
        self.keys = {"MINIO_ROOT_USER": secrets.token_hex(8),
                     "MINIO_ROOT_PASSWORD": secrets.token_hex(16)}

    def sh(self, volume: str, script: str, *args: str) -> str:
        return self.engine.docker("run", "--rm", "--label", "manacore.test=1", "-v",
                                  f"{volume}:/v", HELPER_IMAGE, "sh", "-c", script, "sh", *args)

    def seed(self, env: dict[str, str], init_sql: Path) -> None:
        for v in self.volumes:
            self.engine.volume(v)
            if v == self.postgres:
                continue
            self.sh(v, 'echo "$1" > /v/owner && mkdir -p /v/data && '
                    'head -c 262144 /dev/urandom > /v/data/blob.bin', v)
            self.sums[v] = self.sh(v, "sha256sum /v/data/blob.bin").split()[0]
        self._postgres_cluster(env, init_sql)
        for copy in self.copies:
            self._object_store(copy)

    def _object_store(self, copy: ObjectCopy) -> None:
        """The legacy object store as it ran: its container (the old name, the legacy image on
        the legacy volume) holding objects uploaded over S3; left running, for the copy script
        to stop."""
        lo = copy.legacy
        for v in copy.legacy_volumes:
            self.engine.volume(v)
        self.engine.docker("run", "-d", "--name", copy.legacy_container, "--label",
                           "manacore.test=1", "-v", f"{copy.legacy_volumes[0]}:{lo.path}",
                           *(a for k, val in self.keys.items() for a in ("-e", f"{k}={val}")),
                           lo.image, *lo.command)
        for key, size in OBJECTS.items():
            data = (hashlib.sha256(key.encode()).digest() * (size // 32 + 1))[:size]
            self.objects[key] = hashlib.sha256(data).hexdigest()
            (self.upload / key).parent.mkdir(parents=True, exist_ok=True)
            (self.upload / key).write_bytes(data)
        deadline = time.monotonic() + 60
        remote = [f"RCLONE_CONFIG_OLD_{k}={v}" for k, v in (
            ("TYPE", "s3"), ("PROVIDER", "Minio"), ("ENDPOINT", f"http://127.0.0.1:{lo.port}"),
            ("ACCESS_KEY_ID", self.keys[lo.access_key]),
            ("SECRET_ACCESS_KEY", self.keys[lo.secret_key]), ("REGION", "us-east-1"))]
        upload = ["docker", "run", "--rm", "--label", "manacore.test=1", "--network",
                  f"container:{copy.legacy_container}", "-v", f"{self.upload}:/src:ro",
                  *(a for e in remote for a in ("-e", e)), COPIER_IMAGE]
        while self.engine.run(*upload, "lsd", "--retries", "1", "--low-level-retries", "1",
                              "old:", check=False).returncode != 0:
            running = self.engine.inspect(copy.legacy_container)[0]["State"]["Running"]
            assert running and time.monotonic() < deadline, self.engine.run(
                "docker", "logs", copy.legacy_container).stderr
            time.sleep(1)
        self.engine.run(*upload, "copy", "--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M",
                        "/src", "old:")

    def _postgres_cluster(self, env: dict[str, str], init_sql: Path) -> None:
        """A real cluster at the volume root (the official image's default PGDATA), with the
        roles the estate's consumers log in with and rows to keep; left running, as on the
        Mac Mini before the move (the script must stop it)."""
        image = self.resolved["postgres"].image or ""
        envs = [a for k, v in env.items() if k.endswith("_PASSWORD") for a in ("-e", f"{k}={v}")]
        self.engine.docker("run", "-d", "--name", LEGACY_CONTAINER, "--label", "manacore.test=1",
                           "-v", f"{self.postgres}:/var/lib/postgresql/data",
                           "-v", f"{init_sql}:/docker-entrypoint-initdb.d/10-manacore.sql:ro",
                           *envs, image)
        deadline = time.monotonic() + 120
        while self.engine.run("docker", "exec", LEGACY_CONTAINER, "pg_isready", "-U",
                              "postgres", check=False).returncode != 0:
            assert time.monotonic() < deadline, self.engine.docker("logs", LEGACY_CONTAINER)
            time.sleep(1)
        time.sleep(2)  # pg_isready answers during init's socket-only phase too
        while "ready for start up" not in self.engine.run("docker", "logs", LEGACY_CONTAINER
                                                          ).stdout:
            assert time.monotonic() < deadline
            time.sleep(1)
        self.engine.docker("exec", LEGACY_CONTAINER, "psql", "-U", "postgres", "-qc",
                           f"create table legacy as select g as n, md5(g::text) as v "
                           f"from generate_series(1, {ROWS}) g")

    def remove(self) -> None:
        self.engine.run("docker", "rm", "-f", LEGACY_CONTAINER,
                        *(c.legacy_container for c in self.copies), check=False)
        self.engine.remove_volumes(*self.volumes, *self.finals, *self.object_volumes,
                                   owned=True)


def run_script(engine: Engine, folder: Path, name: str, check: bool = True
               ) -> subprocess.CompletedProcess[str]:
    return engine.run("sh", str(folder / name), check=check, cwd=folder, timeout=600)


@pytest.fixture(scope="module")
def phase0(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    clear_project(engine)
    now = resolve(load_estate(), load_settings("macmini"))
    tmp = tmp_path_factory.mktemp("phase0")
    legacy = Legacy(engine, now, tmp / "objects")
    legacy.remove()
    # images (and the scripts' helper), and the .env the old estate used
    before = render(engine, now, tmp / "before", extra_images=(
        HELPER_IMAGE, COPIER_IMAGE, *(c.legacy.image for c in legacy.copies)))
    plan = tmp / "migration"
    engine.run(str(ROOT / ".venv" / "bin" / "manacore"), "migrate", "--stack", "macmini",
               "--out", str(plan))
    init_sql = tmp / "init.sql"
    init_sql.write_text(next(f.content for f in now["postgres"].files).render({}))
    legacy.seed(before.env, init_sql)
    yield {"engine": engine, "legacy": legacy, "plan": plan, "tmp": tmp, "env": before.env}
    clear_project(engine)
    legacy.remove()


def test_check_script_finds_every_legacy_volume(phase0: dict) -> None:
    proc = run_script(phase0["engine"], phase0["plan"], CHECK_SCRIPT)
    ok = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("ok ")]
    assert sorted(ok) == sorted([*phase0["legacy"].volumes, *phase0["legacy"].object_volumes])


def test_a_non_empty_target_without_marker_is_refused(phase0: dict) -> None:
    engine, legacy = phase0["engine"], phase0["legacy"]
    move = next(m for m in legacy.moves if len(m.sources) == 1 and "postgres" not in m.services)
    engine.volume(move.final)
    into = move.sources[0].into
    legacy.sh(move.final, 'mkdir -p "/v/$1" && echo stray > "/v/$1/stray"', into)
    proc = run_script(engine, phase0["plan"], move.script, check=False)
    assert proc.returncode != 0 and "refusing to copy" in proc.stderr, proc.stdout
    assert legacy.sh(move.final, 'cat "/v/$1/stray"', into).strip() == "stray", "untouched"
    assert engine.exists(move.sources[0].volume)
    legacy.sh(move.final, 'rm -rf "/v/$1"/* "/v/$1"/.[!.]* 2>/dev/null; true', into)


def test_every_script_moves_verifies_and_marks_then_is_a_no_op(phase0: dict) -> None:
    engine, legacy = phase0["engine"], phase0["legacy"]
    for move in legacy.moves:
        proc = run_script(engine, phase0["plan"], move.script)
        assert proc.stdout.count("verified ") == len(move.sources), proc.stdout
    state = engine.inspect(LEGACY_CONTAINER)[0]["State"]
    assert not state["Running"], "the script stopped the legacy writer"
    for move in legacy.moves:
        again = run_script(engine, phase0["plan"], move.script)
        assert "nothing to do: all data already moved" in again.stdout, again.stdout
    for v in legacy.volumes:
        assert engine.exists(v), f"legacy volume {v} was removed"


@pytest.fixture(scope="module")
def after(phase0: dict) -> Iterator[Estate]:
    engine = phase0["engine"]
    engine.run("docker", "rm", "-f", LEGACY_CONTAINER)
    resolved = migrated(resolve(load_estate(), load_settings("macmini")))
    stacks = stack_copy(phase0["tmp"] / "stacks", migratedVolumes=list(
        resolved.settings.migrated_volumes))
    est = render(engine, resolved, phase0["tmp"] / "after", stacks=stacks)
    est.env = phase0["env"]  # the passwords the legacy roles were made with
    (est.folder / ".env").write_text("".join(f"{k}={v}\n" for k, v in sorted(est.env.items())))
    model = est.model
    assert not [n for n, v in model["volumes"].items() if v.get("external")]
    took = est.up()
    benchmark(f"migrated estate healthy in {took:.1f} s")
    yield est
    est.compose("down", "-t", "5", check=False)


def test_postgres_starts_on_the_migrated_cluster_with_its_rows(after: Estate) -> None:
    pg = after.resolved["postgres"]
    logs = after.engine.run("docker", "logs", pg.container_name)
    assert "Skipping initialization" in logs.stdout + logs.stderr
    url = (f"postgresql://postgres:{after.env['POSTGRES_PASSWORD']}@127.0.0.1:"
           f"{pg.port('postgres').published}/postgres")
    got = subprocess.run(["psql", url, "-XAtc", "select count(*), md5(string_agg(v, '' order "
                          "by n)) from legacy"], check=True, capture_output=True, text=True)
    want = hashlib.md5("".join(hashlib.md5(str(n).encode()).hexdigest()
                               for n in range(1, ROWS + 1)).encode()).hexdigest()
    assert got.stdout.strip() == f"{ROWS}|{want}"


def test_each_service_sees_its_own_legacy_data_through_its_subpath(
        after: Estate, phase0: dict) -> None:
    legacy: Legacy = phase0["legacy"]
    seen = 0
    for s in after.resolved.containers:
        for v in s.volumes:
            base = v.subpath or ""
            for x in v.sources:
                if x.volume == legacy.postgres:
                    continue
                rel = os.path.relpath(x.into or ".", base or ".")
                path = os.path.normpath(f"{v.path}/{rel}")
                out = after.engine.docker("exec", s.container_name, "sh", "-c",
                                          'cat "$1/owner" && sha256sum "$1/data/blob.bin"',
                                          "sh", path).split()
                assert out[0] == x.volume, f"{s.id} sees {out[0]} at {path}"
                assert out[1] == legacy.sums[x.volume], f"{s.id}: {x.volume} changed"
                seen += 1
            if v.shared:  # a bot sees only its own subdirectory of the shared volume
                listing = after.engine.docker("exec", s.container_name, "ls", "-a", v.path)
                others = {o.subpath for o in (w for t in after.resolved.containers
                                              for w in t.volumes if w.name == v.name)}
                assert not (others - {v.subpath}) & set(listing.split()), s.id
    assert seen >= 10


def _objects_in(after: Estate, copy: ObjectCopy) -> dict[str, str]:
    """bucket/key → SHA-256 of every object in the new store, read over S3."""
    remote = [f"RCLONE_CONFIG_NEW_{k}={v}" for k, v in (
        ("TYPE", "s3"), ("PROVIDER", "Other"), ("ENDPOINT", copy.endpoint),
        ("ACCESS_KEY_ID", after.env["S3_ACCESS_KEY"]),
        ("SECRET_ACCESS_KEY", after.env["S3_SECRET_KEY"]), ("REGION", "us-east-1"))]
    listing = after.engine.docker("run", "--rm", "--label", "manacore.test=1", "--network",
                                  copy.network, *(a for e in remote for a in ("-e", e)),
                                  COPIER_IMAGE, "hashsum", "sha256", "--download", "new:")
    return {line[66:]: line[:64] for line in listing.splitlines() if line}


def test_the_object_copy_carries_every_object_into_garage_checked(after: Estate,
                                                                  phase0: dict) -> None:
    """MinIO's volume cannot be read by Garage: the script serves it with the legacy image and
    copies every object over S3 into the running Garage, checking each SHA-256; a second run
    finds everything there and checks again."""
    legacy: Legacy = phase0["legacy"]
    [copy] = legacy.copies
    with benchmark_time(f"object copy of {len(OBJECTS)} objects "
                        f"({sum(OBJECTS.values()) / 2**20:.1f} MiB)"):
        done = run_script(after.engine, phase0["plan"], copy.script)
    assert f"verified: {len(OBJECTS)} objects, each with the same SHA-256" in done.stdout, \
        done.stdout + done.stderr
    state = after.engine.inspect(copy.legacy_container)[0]["State"]
    assert not state["Running"], "the script stopped the legacy object store"
    assert _objects_in(after, copy) == legacy.objects
    again = run_script(after.engine, phase0["plan"], copy.script)
    assert f"verified: {len(OBJECTS)} objects" in again.stdout, again.stdout + again.stderr
    assert not after.engine.exists(f"manacore-migrate-{copy.service}-source", kind="container")


def test_the_estate_is_healthy_and_legacy_volumes_remain(after: Estate, phase0: dict) -> None:
    assert after.diagnose() == ""
    after.compose("down", "-v", "-t", "5")
    for v in [*phase0["legacy"].volumes, *phase0["legacy"].object_volumes]:
        assert after.engine.exists(v), f"legacy volume {v} was removed"
