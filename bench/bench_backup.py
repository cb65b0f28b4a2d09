"""Backup and restore throughput of the backup image against the raw copy speed of the same
data on the same disk (issue 27, item 6). Printed, never asserted.

A seeded estate of a few GB: a volume of files (big and small, random so nothing compresses)
and a PostgreSQL database, backed up by the real pipeline (`manacore-backup run`: pg_dump in
one snapshot with its row counts, every file listed with its SHA-256, restic into the S3
server of `scripts/s3`), backed up again unchanged (deduplication), and restored with
verification (`manacore-backup restore --force`) into an empty volume and database; beside it
`cp -a` of the same files and `pg_dump` alone, on the same disk.

    flock /tmp/manacore-engines.lock .venv/bin/python bench/bench_backup.py [--gb 2]

Needs the suite's engine (`scripts/engine up`), the images (`scripts/images`, the backup image
and PostgreSQL) and starts the S3 server itself if it does not run (stopped again after).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from catalog.load import load_stack  # noqa: E402

PREFIX = "manacore-bench-backup"
HELPER = "busybox:1.37.0"


def sh(*args: str, env: dict[str, str] | None = None, check: bool = True) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        sys.exit(f"{' '.join(args[:5])} …: {proc.stderr[-2000:]}")
    return proc.stdout


def timed(*args: str, env: dict[str, str] | None = None) -> float:
    start = time.monotonic()
    sh(*args, env=env)
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gb", type=float, default=2.0, help="size of the seeded files")
    parser.add_argument("--rows", type=int, default=3_000_000, help="rows of the database")
    args = parser.parse_args()
    engine_running = subprocess.run([ROOT / "scripts" / "engine", "status"],
                                    capture_output=True).returncode == 0
    os.environ["DOCKER_HOST"] = sh(str(ROOT / "scripts" / "engine"), "up").strip().splitlines()[-1]
    s3_running = subprocess.run([ROOT / "scripts" / "s3", "status"],
                                capture_output=True).returncode == 0
    s3 = dict(line.split("=", 1) for line in sh(str(ROOT / "scripts" / "s3"), "up")
              .strip().splitlines()[:-1])
    _, estate = load_stack("macmini")
    image, pg_image = estate["backup"].image or "", estate["postgres"].image or ""
    wanted = ROOT / "out" / "bench-backup-images.yaml"  # the images it runs, built if missing
    wanted.parent.mkdir(exist_ok=True)
    wanted.write_text(json.dumps({"services": {"backup": {"image": image},
                                               "postgres": {"image": pg_image}}}))
    sh(str(ROOT / "scripts" / "images"), str(wanted), HELPER)
    run_id = uuid.uuid4().hex[:8]
    net, pg = f"{PREFIX}-{run_id}", f"{PREFIX}-pg-{run_id}"
    vols = {k: f"{PREFIX}-{k}-{run_id}" for k in ("data", "copy", "restored", "cache")}
    try:
        sh("docker", "network", "create", net)
        for v in vols.values():
            sh("docker", "volume", "create", "--label", "manacore.test=1", v)
        big = int(args.gb * 1024 * 0.6)  # MiB: 60 % in big files, the rest in 1 MiB and 16 KiB
        seed = (f"set -e; cd /v; dd if=/dev/urandom of=big.bin bs=1048576 count={big} "
                f"2>/dev/null; mkdir m s; for i in $(seq 1 {int(args.gb * 1024 * 0.3)}); do "
                "head -c 1048576 /dev/urandom > m/$i; done; "
                f"for i in $(seq 1 {int(args.gb * 1024 * 0.1 * 64)}); do "
                "head -c 16384 /dev/urandom > s/$i; done")
        took = timed("docker", "run", "--rm", "-v", f"{vols['data']}:/v", HELPER, "sh", "-c",
                     seed)
        size = int(sh("docker", "run", "--rm", "-v", f"{vols['data']}:/v", HELPER, "du", "-sb",
                      "/v").split()[0])
        files = int(sh("docker", "run", "--rm", "-v", f"{vols['data']}:/v", HELPER, "sh", "-c",
                       "find /v -type f | wc -l").strip())
        print(f"seeded {size / 1e9:.2f} GB in {files} files ({took:.0f} s)")
        password = uuid.uuid4().hex
        sh("docker", "run", "-d", "--name", pg, "--network", net, "--label", "manacore.test=1",
           "-e", f"POSTGRES_PASSWORD={password}", pg_image)
        for _ in range(120):
            if subprocess.run(["docker", "exec", pg, "pg_isready", "-h", "127.0.0.1", "-U",
                               "postgres"], capture_output=True).returncode == 0:
                break
            time.sleep(1)
        time.sleep(3)
        sh("docker", "exec", pg, "psql", "-U", "postgres", "-qc", "create database bench")
        sh("docker", "exec", pg, "psql", "-U", "postgres", "-d", "bench", "-qc",
           f"create table t as select g as id, md5(g::text) as a, md5((g*7)::text) as b from "
           f"generate_series(1, {args.rows}) g; alter table t add primary key (id)")
        db_bytes = int(sh("docker", "exec", pg, "psql", "-U", "postgres", "-XAtc",
                          "select pg_database_size('bench')").strip())
        print(f"database bench: {args.rows} rows, {db_bytes / 1e6:.0f} MB on disk")

        plan = {"stack": "bench", "repository": "", "schedule": "0 * * * *",
                "keep": {"hourly": 24}, "pushgateway": None, "cache": "/backup",
                "postgres": {"service": "postgres", "host": pg, "port": 5432,
                             "credentials": ["PGPW"], "user": "postgres", "url": ""},
                "redis": None, "objects": None,
                "items": [{"id": "database:bench", "kind": "database", "service": "bench",
                           "path": "", "database": "bench", "stop": []},
                          {"id": "volume:bench:/data", "kind": "volume", "service": "bench",
                           "path": "/volumes/bench/data", "database": "", "stop": []}]}
        env = {"MANACORE_BACKUP_PLAN_JSON": json.dumps(plan), "PGPW": password,
               "RESTIC_PASSWORD": password,
               "RESTIC_REPOSITORY": f"s3:{s3['containers']}/{PREFIX}-{run_id}",
               "AWS_ACCESS_KEY_ID": s3["access_key"], "AWS_SECRET_ACCESS_KEY": s3["secret_key"]}
        common = ["docker", "run", "--rm", "--network", net, *(a for k in env
                                                               for a in ("-e", k)),
                  "-v", f"{vols['cache']}:/backup"]

        def job(volume: str, mode: str, *cmd: str) -> float:
            return timed(*common, "-v", f"{volume}:/volumes/bench/data:{mode}", image, *cmd,
                         env=env)

        job(vols["data"], "ro", "init")
        t_backup = job(vols["data"], "ro", "run")
        t_again = job(vols["data"], "ro", "run")
        sh("docker", "exec", pg, "psql", "-U", "postgres", "-qc", "drop database bench")
        sh("docker", "exec", pg, "psql", "-U", "postgres", "-qc", "create database bench")
        t_restore = job(vols["restored"], "rw", "restore", "--force")
        t_copy = timed("docker", "run", "--rm", "-v", f"{vols['data']}:/src:ro", "-v",
                       f"{vols['copy']}:/dst", HELPER, "sh", "-c", "cp -a /src/. /dst/ && sync")
        t_dump = timed("docker", "exec", pg, "sh", "-c",
                       "pg_dump -U postgres -Fc -Z0 -d bench -f /tmp/d.dump && sync")
        dump = int(sh("docker", "exec", pg, "stat", "-c", "%s", "/tmp/d.dump").strip())
        total = size + dump
        rows = [("backup (pg_dump + SHA-256 of every file + restic to S3)", total, t_backup),
                ("backup again, nothing changed (deduplicated)", total, t_again),
                ("restore + verification (restic from S3, pg_restore, SHA-256)", total,
                 t_restore),
                ("raw copy of the files, cp -a on the same disk", size, t_copy),
                ("pg_dump alone, to the same disk", dump, t_dump)]
        print(f"\n{'what':<64} {'MB':>8} {'s':>7} {'MB/s':>8}")
        for what, n, t in rows:
            print(f"{what:<64} {n / 1e6:8.0f} {t:7.1f} {n / 1e6 / t:8.1f}")
        print(f"\n(engine {sh('docker', 'version', '--format', '{{.Server.Version}}').strip()},"
              f" {os.cpu_count()} cores; S3: versitygw on the host, over the bridge)")
    finally:
        subprocess.run(["docker", "rm", "-f", pg], capture_output=True)
        subprocess.run(["docker", "volume", "rm", "-f", *vols.values()], capture_output=True)
        subprocess.run(["docker", "network", "rm", net], capture_output=True)
        if not s3_running:
            subprocess.run([ROOT / "scripts" / "s3", "down"], capture_output=True)
        if not engine_running:
            subprocess.run([ROOT / "scripts" / "engine", "down"], capture_output=True)


if __name__ == "__main__":
    main()
