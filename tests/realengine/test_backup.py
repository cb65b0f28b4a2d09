"""Backups that restore, on the real Docker engine (issue 27, stage 1).

The Mac Mini's estate (legacy volumes adopted) runs with real data — rows in several
databases (Synapse's own tables among them), Redis keys, objects in a bucket of the object store
(a real S3 server), Synapse media, files in each bot's subdirectory — and its backup container
writes a restic repository into a real S3 server on the host (`scripts/s3`, versitygw). Then a
fresh Docker estate (`adoptLegacy: false`, new secrets but the repository's) restores it with
`manacore restore`, and everything is compared with the source. An interrupted backup and an
interrupted restore leave their source as it was and run again; a wrong repository password is
refused with a clear message; the backup's figures reach the real Pushgateway.

Cost: two estates brought up (about 2 minutes each) and a few backups and restores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from catalog.load import load_estate
from catalog.resolve import resolve
from catalog.settings import ROOT, BackupSettings, load_settings
from exports.migration import HELPER_IMAGE
from tests.realengine.conftest import (
    Engine,
    Estate,
    benchmark,
    clear_project,
    render,
    s3_server,
    stack_copy,
)

MANACORE = str(ROOT / ".venv" / "bin" / "manacore")
DATABASES = ("auth", "chat", "todo")  # seeded by the test; synapse's are Synapse's own
ROWS = 2000
BOTS = ("mana-bot", "stats-bot", "project-doc-bot")


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    """`scripts/s3 up`, where containers reach it; `down` at the end only if this module
    started it."""
    with s3_server("containers") as found:
        yield found


# the schedule must not fire in the middle of a test that counts snapshots (the hourly default
# would at the full hour): the backups here are taken by `manacore backup`
SCHEDULE = "0 0 1 1 *"


def settings_for(s3: dict[str, str], bucket: str, **update: object):
    backup = BackupSettings(s3_endpoint=s3["containers"], bucket=bucket, schedule=SCHEDULE)
    return load_settings("macmini").model_copy(update={"backup": backup, **update})


def cli(engine: Engine, stacks: Path, *args: str, check: bool = True,
        timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return engine.run(MANACORE, *args, "--stack", "macmini", check=check, timeout=timeout,
                      env={"MANACORE_STACK_DIR": str(stacks)})


def write_env(est: Estate, **values: str) -> None:
    est.env.update(values)
    (est.folder / ".env").write_text("".join(f"{k}={v}\n" for k, v in sorted(est.env.items())))


def psql(est: Estate, db: str, sql: str) -> str:
    port = est.resolved["postgres"].port("postgres").published
    url = f"postgresql://postgres:{est.env['POSTGRES_PASSWORD']}@127.0.0.1:{port}/{db}"
    return subprocess.run(["psql", url, "-XAtqc", sql], check=True, capture_output=True,
                          text=True, timeout=60).stdout.strip()


def tables(est: Estate, db: str) -> dict[str, str]:
    """Every table of a database: rows and an md5 of its content in a stable order."""
    names = psql(est, db, "select format('%I.%I', schemaname, tablename) from pg_tables where "
                 "schemaname not in ('pg_catalog', 'information_schema') order by 1").split()
    return {t: psql(est, db, f"select count(*) || ':' || coalesce(md5(string_agg(x::text, ',' "
                             f"order by x::text)), '') from {t} x") for t in names}


def in_backup_image(est: Estate, script: str, network: bool = True) -> str:
    """A shell in a one-off container of the backup image on the estate's network, with the
    object store's keys (rclone's remote `store:`)."""
    store = next(s for s in est.resolved.services if s.dump and s.dump.kind == "s3")
    assert store.dump is not None
    access, secret = store.dump.secrets
    env = {"RCLONE_CONFIG_STORE_TYPE": "s3", "RCLONE_CONFIG_STORE_PROVIDER": "Other",
           "RCLONE_CONFIG_STORE_ENDPOINT": store.url(store.dump.port),
           "RCLONE_CONFIG_STORE_FORCE_PATH_STYLE": "true",
           "RCLONE_CONFIG_STORE_ACCESS_KEY_ID": est.env[access],
           "RCLONE_CONFIG_STORE_SECRET_ACCESS_KEY": est.env[secret]}
    args = [a for k in env for a in ("-e", k)]
    return est.engine.run("docker", "run", "--rm", "--label", "manacore.test=1",
                          *(["--network", est.resolved.settings.network] if network else []),
                          *args, "--entrypoint", "sh", est.resolved["backup"].image or "",
                          "-c", script, env=env).stdout


def volume_sums(est: Estate, sid: str) -> dict[str, str]:
    """sha256 of every file in a service's (first stateful) volume, through its subpath."""
    v = next(v for v in est.resolved[sid].volumes if v.stateful)
    mount = f"type=volume,src={v.name},dst=/v" + (f",volume-subpath={v.subpath}"
                                                   if v.subpath else "")
    out = est.engine.docker("run", "--rm", "--label", "manacore.test=1", "--mount", mount,
                            HELPER_IMAGE, "sh", "-c",
                            "cd /v && find . -type f | sort | xargs -r sha256sum")
    return {path: digest for digest, path in (line.split() for line in out.splitlines())}


def seed(est: Estate) -> dict[str, object]:
    """Real data in every kind of store; returns what must come back."""
    for db in DATABASES:
        owner = db
        psql(est, db, f"set role {owner}; create table notes (id int primary key, body text); "
             f"insert into notes select g, md5(g::text) from generate_series(1, {ROWS}) g")
    redis = est.resolved["redis"]
    rcli = ["docker", "exec", redis.container_name, "redis-cli", "-a", est.env["REDIS_PASSWORD"],
            "--no-auth-warning"]
    for i in range(50):
        est.engine.run(*rcli, "set", f"session:{i}", f"user-{i}")
    in_backup_image(est, "set -e; mkdir -p /tmp/o/photos/2026 /tmp/o/files; "
                    "for i in 1 2 3 4 5; do head -c 300000 /dev/urandom "
                    "> /tmp/o/photos/2026/$i.jpg; done; echo hello > /tmp/o/files/readme.txt; "
                    "rclone mkdir store:contacts-photos && rclone mkdir store:storage-files && "
                    "rclone copy /tmp/o/photos store:contacts-photos && "
                    "rclone copy /tmp/o/files store:storage-files && rclone mkdir store:empty")
    synapse = est.resolved["synapse"].container_name
    est.engine.docker("exec", "-u", est.resolved["synapse"].runs_as or "", synapse, "sh", "-c",
                      "mkdir -p /data/media_store/local_content/ab "
                      "&& head -c 500000 /dev/urandom > /data/media_store/local_content/ab/cdef")
    for bot in BOTS:
        container = est.resolved[bot].container_name
        est.engine.docker("exec", container, "sh", "-c",
                          f"mkdir -p /data/state && echo {bot} > /data/state/whoami && "
                          "head -c 200000 /dev/urandom > /data/state/blob")
    return snapshot_of(est)


def snapshot_of(est: Estate) -> dict[str, object]:
    redis = est.resolved["redis"]
    keys = est.engine.run("docker", "exec", redis.container_name, "redis-cli", "-a",
                          est.env["REDIS_PASSWORD"], "--no-auth-warning", "--scan").stdout.split()
    objects = in_backup_image(est, "for b in $(rclone lsf store: | tr -d /); do "
                              "rclone md5sum --download store:$b | sed \"s|  |  $b/|\"; done")
    return {"databases": {db: tables(est, db) for db in DATABASES},
            "synapse_tables": sorted(tables(est, "synapse")),  # Synapse writes its own rows
            "redis": sorted(keys),
            "objects": sorted(objects.splitlines()),
            "buckets": sorted(in_backup_image(est, "rclone lsf store:").split()),
            "synapse": {k: v for k, v in volume_sums(est, "synapse").items()
                        if "media_store" in k},
            **{bot: volume_sums(est, bot) for bot in BOTS}}


def snapshots(est: Estate) -> list[dict[str, object]]:
    out = est.engine.docker("exec", est.resolved["backup"].container_name, "restic", "-o",
                            "s3.bucket-lookup=path", "--cache-dir", "/backup/restic-cache",
                            "snapshots", "--json")
    return json.loads(out or "[]")


@pytest.fixture(scope="module")
def source(engine: Engine, s3: dict[str, str], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[dict[str, object]]:
    clear_project(engine)
    tmp = tmp_path_factory.mktemp("backup")
    bucket = f"manacore-test-{uuid.uuid4().hex[:8]}"
    resolved = resolve(load_estate(), settings_for(s3, bucket))
    stacks = stack_copy(tmp / "stacks", backup={"s3Endpoint": s3["containers"],
                                                "bucket": bucket, "schedule": SCHEDULE})
    est = render(engine, resolved, tmp / "source", stacks=stacks, extra_images=(HELPER_IMAGE,))
    write_env(est, BACKUP_S3_ACCESS_KEY=s3["access_key"], BACKUP_S3_SECRET_KEY=s3["secret_key"])
    legacy = sorted(n for n, v in est.model["volumes"].items() if v.get("external"))
    engine.remove_volumes(*legacy)
    for name in legacy:  # the Mac Mini's volumes, here empty (Synapse's owned as it left it)
        engine.volume(name)
    for s in resolved.containers:
        for v in s.volumes:
            if not v.migrated and s.runs_as:
                engine.docker("run", "--rm", "--label", "manacore.test=1", "-v",
                              f"{v.name}:/v", HELPER_IMAGE, "chown", s.runs_as, "/v")
    took = est.up()
    benchmark(f"backup source estate healthy in {took:.1f} s")
    data = seed(est)
    yield {"estate": est, "stacks": stacks, "data": data, "bucket": bucket, "tmp": tmp,
           "legacy": legacy}
    est.compose("down", "-v", "-t", "5", check=False)
    engine.remove_volumes(*legacy)


def test_a_backup_is_refused_until_the_repository_exists_then_taken(source: dict) -> None:
    est, stacks = source["estate"], source["stacks"]
    first = cli(est.engine, stacks, "backup", check=False)
    assert first.returncode == 2, first.stdout + first.stderr
    assert "no repository there" in first.stderr and "manacore backup --init" in first.stderr
    cli(est.engine, stacks, "backup", "--init")
    start = time.monotonic()
    done = cli(est.engine, stacks, "backup")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    benchmark(f"first backup of the seeded estate: {result['size'] / 1e6:.1f} MB in "
              f"{time.monotonic() - start:.1f} s ({result['files']} files)")
    assert [s["hostname"] for s in snapshots(est)] == ["macmini"]
    listed = cli(est.engine, stacks, "backup", "--snapshots").stdout
    assert result["snapshot"][:8] in listed


def test_the_figures_reach_the_pushgateway(source: dict) -> None:
    est = source["estate"]
    port = est.resolved["pushgateway"].port().published
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    values = {line.split("{")[0]: float(line.split()[-1]) for line in text.splitlines()
              if line.startswith("manacore_backup_") and 'stack="macmini"' in line}
    assert values["manacore_backup_last_run_success"] == 1
    assert time.time() - values["manacore_backup_last_success_timestamp_seconds"] < 600
    assert values["manacore_backup_last_size_bytes"] > 2_000_000


def test_a_wrong_repository_password_is_refused_clearly(source: dict) -> None:
    est = source["estate"]
    proc = est.engine.run("docker", "exec", "-e", "RESTIC_PASSWORD=not-the-password",
                          est.resolved["backup"].container_name, "manacore-backup", "run",
                          check=False)
    assert proc.returncode == 2
    assert "wrong password" in proc.stderr and "BACKUP_REPOSITORY_PASSWORD" in proc.stderr
    assert len(snapshots(est)) == 1


def _kill_when(engine: Engine, container: str, process: str, after: float) -> None:
    """SIGKILL every process of the container's `manacore-backup` run once `process` runs."""
    deadline = time.monotonic() + 120
    while True:
        top = engine.docker("top", container, "-o", "pid,args").splitlines()[1:]
        if any(process in line for line in top):
            break
        assert time.monotonic() < deadline, f"{process} never started in {container}"
        time.sleep(0.2)
    time.sleep(after)
    top = engine.docker("top", container, "-o", "pid,args").splitlines()[1:]
    for line in top:
        pid, args = line.split(None, 1)
        if "manacore-backup run" in args or "restic" in args:
            os.kill(int(pid), signal.SIGKILL)


def test_an_interrupted_backup_leaves_the_source_and_runs_again(source: dict) -> None:
    est, stacks = source["estate"], source["stacks"]
    bot = est.resolved["mana-bot"].container_name
    est.engine.docker("exec", bot, "sh", "-c", "head -c 20000000 /dev/urandom > /data/big")
    before = volume_sums(est, "mana-bot")
    source["data"]["mana-bot"] = before
    backup = est.resolved["backup"].container_name
    run = subprocess.Popen(["docker", "exec", backup, "manacore-backup", "run",
                            "--limit-upload", "2048"], env=est.engine.env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _kill_when(est.engine, backup, "restic", after=2)
    assert run.wait(timeout=60) != 0
    assert len(snapshots(est)) == 1, "an interrupted run makes no snapshot"
    assert volume_sums(est, "mana-bot") == before, "the source is untouched"
    cli(est.engine, stacks, "backup")
    assert len(snapshots(est)) == 2


@pytest.fixture(scope="module")
def target(source: dict) -> Iterator[Estate]:
    """The source down (its volumes kept), a fresh estate up: new volumes, new secrets but
    the repository's (password and bucket keys move with the backup), everything running."""
    src: Estate = source["estate"]
    src.compose("down", "-t", "5")
    engine, tmp = src.engine, source["tmp"]
    s3 = {"containers": str(src.resolved.settings.backup.s3_endpoint)}
    resolved = resolve(load_estate(), settings_for(s3, source["bucket"], adopt_legacy=False))
    stacks = stack_copy(tmp / "target-stacks", adoptLegacy=False,
                        backup={"s3Endpoint": s3["containers"], "bucket": source["bucket"],
                                "schedule": SCHEDULE})
    est = render(engine, resolved, tmp / "target", stacks=stacks)
    moved = ("BACKUP_REPOSITORY_PASSWORD", "BACKUP_S3_ACCESS_KEY", "BACKUP_S3_SECRET_KEY")
    write_env(est, **{k: src.env[k] for k in moved})
    volumes = sorted(est.model["volumes"])
    engine.remove_volumes(*volumes)
    took = est.up()
    benchmark(f"fresh target estate healthy in {took:.1f} s")
    source["target_stacks"] = stacks
    yield est
    est.compose("down", "-v", "-t", "5", check=False)
    engine.remove_volumes(*volumes)


def test_a_non_empty_target_is_refused_and_left_alone(source: dict, target: Estate) -> None:
    assert tables(target, "synapse"), "Synapse made its schema at its first start"
    psql(target, "auth", "set role auth; create table mine (v text); insert into mine "
         "values ('the target''s')")
    bot = target.resolved["mana-bot"].container_name
    target.engine.docker("exec", bot, "sh", "-c", "echo mine > /data/mine")
    before = {"auth": tables(target, "auth"), "mana-bot": volume_sums(target, "mana-bot")}
    proc = cli(target.engine, source["target_stacks"], "restore", check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "not empty, nothing restored" in proc.stderr
    assert "database:synapse: database synapse has" in proc.stderr
    assert "--force" in proc.stderr
    assert "database:auth: database auth has 1 tables" in proc.stderr
    assert "volume:mana-bot:/data: /volumes/mana-bot/data holds 1 entries" in proc.stderr
    assert {"auth": tables(target, "auth"),
            "mana-bot": volume_sums(target, "mana-bot")} == before, "nothing changed"
    assert target.diagnose() == "", "nothing was stopped"


def test_everything_restores_into_the_fresh_estate_equal(source: dict, target: Estate) -> None:
    start = time.monotonic()
    proc = cli(target.engine, source["target_stacks"], "restore", "--force")
    benchmark(f"restore of every service into the fresh estate: "
              f"{time.monotonic() - start:.1f} s")
    lines = [line for line in proc.stdout.splitlines() if line.startswith(
        ("database:", "roles", "redis", "objects", "volume:"))]
    assert lines and all(line.endswith("verified") for line in lines), proc.stdout
    # roles, Redis, the buckets, 7 volumes, each database; and Redis checked once it runs
    assert len(lines) == len(target.resolved.databases) + 3 + 7 + 1
    assert "Redis serves 50 keys, backup 50: verified" in proc.stdout
    got = snapshot_of(target)
    want = source["data"]
    for key in ("databases", "synapse_tables", "redis", "objects", "buckets", "synapse",
                *BOTS):
        assert got[key] == want[key], key
    assert target.diagnose() == "", "every restored service runs again"


def test_an_interrupted_restore_leaves_the_repository_and_runs_again(
        source: dict, target: Estate) -> None:
    stacks = source["target_stacks"]
    before = snapshots(target)
    run = subprocess.Popen([MANACORE, "restore", "mana-bot", "--force", "--limit-download",
                            "1024", "--stack", "macmini"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True,
                           env={**target.engine.env, "MANACORE_STACK_DIR": str(stacks)})
    deadline = time.monotonic() + 120
    writing = "label=manacore.restore=restore"  # not the dry run before it
    while not target.engine.docker("ps", "-q", "--filter", writing).strip():
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(4)  # writing, at 1 MiB/s
    ids = target.engine.docker("ps", "-q", "--filter", writing).split()
    target.engine.docker("kill", *ids)
    out, err = run.communicate(timeout=300)
    assert run.returncode != 0, out + err
    assert snapshots(target) == before, "the repository is as it was"
    # the killed restore's lock stays until it is 30 minutes old (restic cannot tell a process
    # of another container is gone): harmless for backups and restores, which share the
    # repository; `check` reads it without the exclusive lock
    check = target.engine.run("docker", "exec", target.resolved["backup"].container_name,
                              "restic", "-o", "s3.bucket-lookup=path", "--cache-dir",
                              "/backup/restic-cache", "--no-lock", "check", "--read-data",
                              check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    again = cli(target.engine, stacks, "restore", "mana-bot")  # no --force: it was ours
    assert "volume:mana-bot:/data" in again.stdout and "verified" in again.stdout
    assert volume_sums(target, "mana-bot") == source["data"]["mana-bot"]

