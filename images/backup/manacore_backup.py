#!/usr/bin/env python3
"""manacore-backup: the ManaCore estate's backup job (the image images/backup).

What it takes is the plan the catalogue derives (catalog/backup.py, mounted at
/etc/manacore/backup.json); restic does the archiving (encrypted, deduplicated, retention, S3),
pg_dump/pg_dumpall the databases and roles, redis-cli the RDB, rclone the buckets.

  manacore-backup schedule                 run a backup at every time of the plan's schedule
  manacore-backup init                     create the repository (once, explicitly)
  manacore-backup run [--limit-upload KIB] one backup now: one snapshot, all or nothing
                      [--servers | --item ID…]  only what is taken through the servers, or
                                           these items (Kubernetes: one job per claim)
  manacore-backup snapshots [--from-stack S]
  manacore-backup restore [SERVICE… | --item ID…] [--snapshot ID] [--from-stack S] [--force]
                          [--limit-download KIB] [--dry-run]
  manacore-backup check [SERVICE…] [--snapshot ID] [--from-stack S]   (after the restart)

Exit codes: 0 done · 1 a step failed or a check differs · 2 refused (wrong password, no
repository, a non-empty target without --force, an unknown service).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PLAN = Path(os.environ.get("MANACORE_BACKUP_PLAN", "/etc/manacore/backup.json"))
RETRY_LOCK = "10m"  # jobs of one schedule overlap: a backup waits for a prune, and back
# a new pod's NetworkPolicy paths open a few seconds after it started (kube-router learns of it;
# until then its connections are refused), a server restarted with the estate a little later
REACH_SECONDS = 60
# the servers an item's backup (and restore, and check) talks to; Redis is restored as a file
# while it is stopped, so only its backup and its check need it running
SERVER_OF = {"roles": "postgres", "database": "postgres", "objects": "objects", "redis": "redis"}
RESTIC_CODES = {10: "no repository there", 11: "the repository is locked",
                12: "wrong password or no key found"}


class Refused(Exception):
    """Nothing was changed; exit 2 with the message."""


class Failed(Exception):
    """A step failed; exit 1 with the message."""


def log(message: str) -> None:
    print(f"[{datetime.now(UTC).strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(argv: list[str], *, env: dict[str, str] | None = None, stdin: Any = None,
        what: str = "") -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=stdin,
                          env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise Failed(f"{what or argv[0]} failed ({proc.returncode}): "
                     f"{(proc.stderr or proc.stdout).strip()[-1500:]}")
    return proc.stdout


class Job:
    def __init__(self, plan: dict[str, Any]):
        self.plan = plan
        self.cache = Path(plan["cache"])
        self.staging = self.cache / "staging"  # the dumps and the manifest of one run
        self.objects = self.cache / "objects"  # a mirror of the buckets, synced each run
        self.restore_dir = self.cache / "restore"
        self.state = self.cache / "restore-state"  # items a restore has started to write
        self.repo = os.environ.get("RESTIC_REPOSITORY") or plan["repository"]

    # --- restic ------------------------------------------------------------------------

    def argv(self, *args: str, json_out: bool = False) -> list[str]:
        return ["restic", "--cache-dir", str(self.cache / "restic-cache"), "-o",
                "s3.bucket-lookup=path", *(["--json"] if json_out else []), *args]

    def restic(self, *args: str, json_out: bool = False) -> str:
        proc = subprocess.run(self.argv(*args, json_out=json_out), capture_output=True,
                              text=True)
        self.refuse(proc.returncode)
        if proc.returncode != 0:
            raise Failed(f"restic {args[0]} failed ({proc.returncode}): "
                         f"{proc.stderr.strip()[-1500:]}")
        return proc.stdout

    def refuse(self, code: int, why: str = "") -> None:
        if code in RESTIC_CODES and code != 11:
            hint = ("the password (secret BACKUP_REPOSITORY_PASSWORD) does not open it"
                    if code == 12 else
                    "create it once with `manacore backup --init`, or check the setting "
                    "backup and the disk or bucket")
            raise Refused(f"repository {self.repo}: {why or RESTIC_CODES[code]}: {hint}")

    def open(self, retries: int = 4) -> None:
        """The repository opens with the password. restic retries a missing bucket or an
        unreachable endpoint for up to 15 minutes: a missing bucket is said at once, and
        after a few retries the endpoint is called unreachable."""
        proc = subprocess.Popen(self.argv("cat", "config"), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        seen: list[str] = []
        for line in proc.stderr:
            seen.append(line.strip())
            if "bucket does not exist" in line or "NoSuchBucket" in line:
                proc.kill()
                proc.wait()
                self.refuse(10, "no repository there (the bucket does not exist)")
            if sum("retrying after" in x for x in seen) >= retries:
                proc.kill()
                proc.wait()
                raise Failed(f"repository {self.repo} does not answer: {seen[-1]}")
        code = proc.wait()
        self.refuse(code)
        if code != 0:
            raise Failed(f"restic cat config failed ({code}): {' '.join(seen)[-1500:]}")

    def reach(self, items: list[dict[str, Any]], skip: tuple[str, ...] = ()) -> None:
        """Waits until each server the items are taken through (but `skip`) accepts
        connections, for up to REACH_SECONDS: a job's first connection may come before its
        pod's NetworkPolicy paths are open. One that still refuses is named."""
        needed = dict.fromkeys(SERVER_OF[i["kind"]] for i in items if i["kind"] in SERVER_OF)
        deadline = time.monotonic() + REACH_SECONDS
        for name in needed:
            server = self.plan.get(name)
            if name in skip or not server:
                continue
            waited = time.monotonic()
            while True:
                try:
                    socket.create_connection((server["host"], server["port"]), timeout=3).close()
                    break
                except OSError as exc:
                    if time.monotonic() > deadline:
                        raise Failed(f"{server['service']} at {server['host']}:"
                                     f"{server['port']} does not answer: {exc}") from exc
                    time.sleep(1)
            if time.monotonic() - waited > 1:
                log(f"{server['service']} answered after {time.monotonic() - waited:.0f} s")

    # --- backup ------------------------------------------------------------------------

    def backup(self, limit_upload: int | None = None,
               items: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """One snapshot of the items (all of the plan's by default), tagged `manacore` and
        with each item's tag, so a restore finds the newest snapshot holding an item
        whichever job took it. Retention runs after a run that took the servers' data (the
        whole plan on Docker, the servers' job on Kubernetes): one job prunes, the others
        only add."""
        start = time.time()
        items = self.plan["items"] if items is None else items
        self.open()
        self.reach(items)
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)
        manifest: dict[str, Any] = {"version": 1, "stack": self.plan["stack"],
                                    "started": datetime.now(UTC).isoformat(), "items": {}}
        paths = [str(self.staging)]
        for item in items:
            kind = item["kind"]
            log(f"backup {item['id']}")
            if kind == "roles":
                out = self.staging / "postgres" / "roles.sql"
                out.parent.mkdir(parents=True, exist_ok=True)
                pg = self.plan["postgres"]
                run(["pg_dumpall", "--roles-only", "-h", pg["host"], "-p", str(pg["port"]),
                     "-U", pg["user"], "-f", str(out)], env=self.pg_env(), what="pg_dumpall")
                roles = re.findall(r"^CREATE ROLE (\S+);", out.read_text(), re.M)
                manifest["items"][item["id"]] = {"roles": sorted(roles)}
            elif kind == "database":
                manifest["items"][item["id"]] = self.dump_database(item["database"])
            elif kind == "redis":
                manifest["items"][item["id"]] = self.dump_redis()
            elif kind == "objects":
                manifest["items"][item["id"]] = self.mirror_objects()
                paths.append(str(self.objects))
            elif kind == "volume":
                manifest["items"][item["id"]] = listing(Path(item["path"]))
                paths.append(item["path"])
        (self.staging / "manifest.json").write_text(json.dumps(manifest))
        tags = [a for i in items for a in ("--tag", marker(i))]
        args = ["backup", "--host", self.plan["stack"], "--tag", "manacore", *tags,
                "--retry-lock", RETRY_LOCK, *paths]
        if limit_upload:
            args[1:1] = ["--limit-upload", str(limit_upload)]
        summary = next(json.loads(line) for line in reversed(
            self.restic(*args, json_out=True).splitlines())
            if '"message_type":"summary"' in line.replace(" ", ""))
        took = time.time() - start
        result = {"snapshot": summary["snapshot_id"], "size": summary["total_bytes_processed"],
                  "added": summary["data_added"], "files": summary["total_files_processed"],
                  "seconds": round(took, 1), "items": len(items)}
        if any(i["kind"] != "volume" for i in items):
            self.retention()
        return result

    def pg_env(self) -> dict[str, str]:
        return {"PGPASSWORD": os.environ[self.plan["postgres"]["credentials"][0]]}

    def pg_connect(self, database: str) -> Any:
        import psycopg2

        pg = self.plan["postgres"]
        return psycopg2.connect(host=pg["host"], port=pg["port"], user=pg["user"],
                                password=self.pg_env()["PGPASSWORD"], dbname=database)

    def dump_database(self, database: str) -> dict[str, Any]:
        """pg_dump in the snapshot the row counts are read in: the counts are the dump's."""
        out = self.staging / "postgres" / f"{database}.dump"
        out.parent.mkdir(parents=True, exist_ok=True)
        conn = self.pg_connect(database)
        try:
            conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
            with conn.cursor() as cur:
                cur.execute("SELECT pg_export_snapshot()")
                snapshot = cur.fetchone()[0]
                tables = table_counts(cur)
            pg = self.plan["postgres"]
            # -Z0: restic compresses and deduplicates; a compressed dump would defeat both
            run(["pg_dump", "-Fc", "-Z0", f"--snapshot={snapshot}", "-h", pg["host"], "-p",
                 str(pg["port"]), "-U", pg["user"], "-d", database, "-f", str(out)],
                env=self.pg_env(), what=f"pg_dump {database}")
        finally:
            conn.rollback()
            conn.close()
        return {"tables": tables, "rows": sum(tables.values())}

    def redis_env(self) -> dict[str, str]:
        return {"REDISCLI_AUTH": os.environ[self.plan["redis"]["credentials"][0]]}

    def dump_redis(self) -> dict[str, Any]:
        r = self.plan["redis"]
        out = self.staging / "redis" / "dump.rdb"
        out.parent.mkdir(parents=True, exist_ok=True)
        run(["redis-cli", "-h", r["host"], "-p", str(r["port"]), "--rdb", str(out)],
            env=self.redis_env(), what="redis-cli --rdb")
        return {"keys": rdb_keys(out), "sha256": sha256(out)}

    def rclone_env(self) -> dict[str, str]:
        o = self.plan["objects"]
        access, secret = (os.environ[n] for n in o["credentials"])
        return {"RCLONE_CONFIG_STORE_TYPE": "s3", "RCLONE_CONFIG_STORE_PROVIDER": "Other",
                "RCLONE_CONFIG_STORE_ENDPOINT": o["url"], "RCLONE_CONFIG_STORE_ACCESS_KEY_ID":
                access, "RCLONE_CONFIG_STORE_SECRET_ACCESS_KEY": secret,
                "RCLONE_CONFIG_STORE_FORCE_PATH_STYLE": "true"}

    def buckets(self) -> list[str]:
        found = json.loads(run(["rclone", "lsjson", "store:"], env=self.rclone_env(),
                               what="rclone lsjson"))
        return sorted(b["Path"] for b in found if b.get("IsDir"))

    def mirror_objects(self) -> dict[str, Any]:
        """Every bucket synced into the mirror (only what changed moves), then listed."""
        buckets = self.buckets()
        self.objects.mkdir(parents=True, exist_ok=True)
        for gone in {p.name for p in self.objects.iterdir()} - set(buckets):
            shutil.rmtree(self.objects / gone)
        for b in buckets:
            (self.objects / b).mkdir(exist_ok=True)
            run(["rclone", "sync", f"store:{b}", str(self.objects / b)], env=self.rclone_env(),
                what=f"rclone sync bucket {b}")
        return {"buckets": {b: listing(self.objects / b) for b in buckets}}

    def retention(self) -> None:
        keep = [a for k, n in self.plan["keep"].items() for a in (f"--keep-{k}", str(n))]
        try:
            self.restic("unlock")  # only stale locks (a backup that was killed)
            # per group of snapshots of the same paths: each job's snapshots are kept alike
            self.restic("forget", "--host", self.plan["stack"], "--tag", "manacore", *keep,
                        "--prune", "--retry-lock", RETRY_LOCK)
        except (Failed, Refused) as exc:
            log(f"retention: {exc} (the backup itself succeeded; next run tries again)")

    # --- metrics -----------------------------------------------------------------------

    def push(self, result: dict[str, Any] | None, started: float, part: str = "all") -> None:
        """The run's figures, grouped by stack and part (`all` on Docker; `servers` and one
        per claim on Kubernetes, whose jobs run side by side)."""
        url = self.plan.get("pushgateway") or os.environ.get("PUSHGATEWAY_URL")
        if not url:
            return
        from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway

        registry = CollectorRegistry()

        def gauge(name: str, doc: str, value: float) -> None:
            Gauge(f"manacore_backup_{name}", doc, registry=registry).set(value)

        now = time.time()
        gauge("last_run_timestamp_seconds", "when the last backup run ended", now)
        gauge("last_run_success", "1 when the last backup run succeeded", int(bool(result)))
        if result:
            gauge("last_success_timestamp_seconds", "when the last backup succeeded", now)
            gauge("last_size_bytes", "bytes the last snapshot holds", result["size"])
            gauge("last_added_bytes", "bytes the last snapshot added", result["added"])
            gauge("last_duration_seconds", "seconds the last backup took", now - started)
        try:
            pushadd_to_gateway(url.removeprefix("http://"), job="manacore_backup",
                               grouping_key={"stack": self.plan["stack"], "part": part},
                               registry=registry)
        except OSError as exc:
            log(f"metrics: the Pushgateway at {url} did not take them: {exc}")

    # --- restore -----------------------------------------------------------------------

    def sources(self, items: list[dict[str, Any]], snapshot: str | None, stack: str
                ) -> list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
        """(item, snapshot, the snapshot's manifest) for each item: the given snapshot, or the
        newest snapshot of the stack that holds the item. On Docker one snapshot holds every
        item; on Kubernetes the servers' job and each claim's job take snapshots of their
        own, so a restore of everything reads several. A snapshot without item tags (taken
        before they existed) holds every item of its time."""
        args = ["snapshots", snapshot] if snapshot else [
            "snapshots", "--host", stack, "--tag", "manacore"]
        found = json.loads(self.restic(*args, json_out=True) or "[]")
        if not found:
            raise Refused(f"no snapshot {snapshot or f'of stack {stack}'} in {self.repo}")
        chosen, lacking = [], []
        for i in items:
            holding = [s for s in found if snapshot or marker(i) in s.get("tags", [])
                       or s.get("tags") == ["manacore"]]
            if holding:
                chosen.append((i, max(holding, key=lambda s: s["time"])))
            else:
                lacking.append(i["id"])
        if lacking:
            raise Refused(f"no snapshot of stack {stack} holds {', '.join(lacking)}")
        manifests: dict[str, dict[str, Any]] = {}
        for _, snap in chosen:
            if snap["id"] not in manifests:
                manifests[snap["id"]] = self.manifest(snap)
        missing = [f"{i['id']} ({snap['short_id']})" for i, snap in chosen
                   if i["id"] not in manifests[snap["id"]]["items"]]
        if missing:
            raise Refused(f"the snapshot has no {', '.join(missing)}")
        return [(i, snap, manifests[snap["id"]]) for i, snap in chosen]

    def manifest(self, snap: dict[str, Any]) -> dict[str, Any]:
        return json.loads(self.restic("dump", snap["id"], str(self.staging / "manifest.json")))

    def extract(self, snap: dict[str, Any], path: str, target: str, limit: int | None) -> None:
        args = ["restore", snap["id"], "--target", target, "--include", path, "--verify"]
        if limit:
            args += ["--limit-download", str(limit)]
        self.restic(*args)

    def restore(self, items: list[dict[str, Any]], snapshot: str | None, stack: str,
                force: bool, limit: int | None, dry_run: bool) -> bool:
        self.open()
        sources = self.sources(items, snapshot, stack)
        for snap in {s["id"]: s for _, s, _ in sources}.values():
            held = [i["id"] for i, s, _ in sources if s is snap]
            print(f"snapshot {snap['short_id']} of stack {snap['hostname']}, taken "
                  f"{snap['time']}: {', '.join(held)}")
        items = [i for i, _, _ in sources]
        self.reach(items, skip=("redis",))  # stopped while its file is put in place
        self.state.mkdir(parents=True, exist_ok=True)
        full = [f"{i['id']}: {why}" for i in items if (why := self.occupied(i))
                and not (self.state / marker(i)).exists()]
        if full and not force:
            raise Refused("not empty, nothing restored (restore with --force to replace what "
                          "is there):\n  " + "\n  ".join(full))
        if dry_run:
            for i in items:
                print(f"would restore {i['id']}")
            return True
        ok = True
        for i, snap, manifest in sources:
            start = time.time()
            (self.state / marker(i)).touch()  # a rerun may replace what this one wrote
            shutil.rmtree(self.restore_dir, ignore_errors=True)
            self.restore_dir.mkdir(parents=True)
            report = getattr(self, f"restore_{i['kind']}")(i, snap, manifest["items"][i["id"]],
                                                            limit)
            differs = report.pop("differs", [])
            ok &= not differs
            if not differs:
                (self.state / marker(i)).unlink()
            line = ", ".join(f"{v} {k}" for k, v in report.items())
            mark = "verified" if not differs else "DIFFERS: " + "; ".join(differs[:10])
            print(f"{i['id']}: {line} ({time.time() - start:.1f} s): {mark}", flush=True)
        shutil.rmtree(self.restore_dir, ignore_errors=True)
        return ok

    def occupied(self, item: dict[str, Any]) -> str:
        """Why the item's target is not empty ("" when it is)."""
        kind = item["kind"]
        if kind == "database":
            conn = self.pg_connect(item["database"])
            try:
                with conn.cursor() as cur:
                    n = len(table_counts(cur))
            finally:
                conn.close()
            return f"database {item['database']} has {n} tables" if n else ""
        if kind == "volume":
            entries = [p.name for p in Path(item["path"]).iterdir() if p.name != "lost+found"]
            return f"{item['path']} holds {len(entries)} entries" if entries else ""
        if kind == "redis":
            keys = sum(rdb_keys(f) for f in redis_files(Path(item["path"])))
            return f"Redis holds {keys} keys" if keys else ""
        if kind == "objects":
            used = [b for b in self.buckets() if run(
                ["rclone", "lsf", "-R", "--files-only", "--max-depth", "1", f"store:{b}"],
                env=self.rclone_env()).strip()]
            return f"buckets {', '.join(used)} hold objects" if used else ""
        return ""

    def restore_roles(self, item: dict[str, Any], snap: dict[str, Any], want: dict[str, Any],
                      limit: int | None) -> dict[str, Any]:
        """Only the roles the target lacks: a role the estate made keeps its password (the
        secrets of the target stack), so no role is ever overwritten."""
        path = self.staging / "postgres" / "roles.sql"
        self.extract(snap, str(path), str(self.restore_dir), limit)
        text = (self.restore_dir / str(path).lstrip("/")).read_text()
        conn = self.pg_connect("postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT rolname FROM pg_roles")
            have = {r[0] for r in cur.fetchall()}
            made = 0
            for role in want["roles"]:
                name = role.strip('"')
                if name in have:
                    continue
                for line in re.findall(rf"^(?:CREATE|ALTER) ROLE {re.escape(role)}[ ;].*$",
                                       text, re.M):
                    cur.execute(line)
                made += 1
            cur.execute("SELECT rolname FROM pg_roles")
            now = {r[0] for r in cur.fetchall()}
        conn.close()
        lacking = [r for r in want["roles"] if r.strip('"') not in now]
        return {"roles": len(want["roles"]), "created": made,
                "differs": [f"role {r} missing" for r in lacking]}

    def restore_database(self, item: dict[str, Any], snap: dict[str, Any],
                         want: dict[str, Any], limit: int | None) -> dict[str, Any]:
        db = item["database"]
        path = self.staging / "postgres" / f"{db}.dump"
        self.extract(snap, str(path), str(self.restore_dir), limit)
        conn = self.pg_connect(db)
        conn.autocommit = True
        with conn.cursor() as cur:  # what is there goes (checked empty, --force, or ours)
            cur.execute("SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' "
                        "AND nspname <> 'information_schema'")
            for (schema,) in cur.fetchall():
                cur.execute(f'DROP SCHEMA "{schema}" CASCADE')
            cur.execute("CREATE SCHEMA public AUTHORIZATION pg_database_owner")
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (db,))
            if cur.fetchone():  # the database's role, as the estate's init grants it
                cur.execute(f'GRANT ALL ON SCHEMA public TO "{db}"')
        conn.close()
        pg = self.plan["postgres"]
        run(["pg_restore", "--single-transaction", "--exit-on-error", "-h", pg["host"], "-p",
             str(pg["port"]), "-U", pg["user"], "-d", db,
             str(self.restore_dir / str(path).lstrip("/"))], env=self.pg_env(),
            what=f"pg_restore {db}")
        conn = self.pg_connect(db)
        with conn.cursor() as cur:
            got = table_counts(cur)
        conn.close()
        differs = [f"{t}: {got.get(t)} rows, backup {n}" for t, n in want["tables"].items()
                   if got.get(t) != n] + [f"{t}: not in the backup" for t in got
                                          if t not in want["tables"]]
        return {"tables": len(got), "rows": sum(got.values()), "differs": differs}

    def restore_redis(self, item: dict[str, Any], snap: dict[str, Any], want: dict[str, Any],
                      limit: int | None) -> dict[str, Any]:
        """The RDB in place of Redis's files (Redis is stopped): as dump.rdb, and as the base
        of its append-only file, which Redis loads first when appendonly is on."""
        path = self.staging / "redis" / "dump.rdb"
        self.extract(snap, str(path), str(self.restore_dir), limit)
        rdb = self.restore_dir / str(path).lstrip("/")
        data = Path(item["path"])
        clear(data)
        shutil.copyfile(rdb, data / "dump.rdb")
        aof = data / "appendonlydir"
        aof.mkdir()
        shutil.copyfile(rdb, aof / "appendonly.aof.1.base.rdb")
        (aof / "appendonly.aof.manifest").write_text(
            "file appendonly.aof.1.base.rdb seq 1 type b\n")
        keys = rdb_keys(aof / "appendonly.aof.1.base.rdb")
        differs = [] if (keys, sha256(data / "dump.rdb")) == (want["keys"], want["sha256"]) \
            else [f"{keys} keys, backup {want['keys']}"]
        return {"keys": keys, "differs": differs}

    def restore_objects(self, item: dict[str, Any], snap: dict[str, Any],
                        want: dict[str, Any], limit: int | None) -> dict[str, Any]:
        self.extract(snap, str(self.objects), str(self.restore_dir), limit)
        local = self.restore_dir / str(self.objects).lstrip("/")
        differs, objects = [], 0
        for bucket, listed in want["buckets"].items():
            src = local / bucket
            src.mkdir(parents=True, exist_ok=True)
            differs += [f"{bucket}: {d}" for d in compare(listing(src), listed)]
            run(["rclone", "mkdir", f"store:{bucket}"], env=self.rclone_env())
            run(["rclone", "sync", str(src), f"store:{bucket}"], env=self.rclone_env(),
                what=f"rclone sync into bucket {bucket}")
            check = subprocess.run(["rclone", "check", "--download", str(src),
                                    f"store:{bucket}"], capture_output=True, text=True,
                                   env={**os.environ, **self.rclone_env()})
            if check.returncode != 0:
                differs.append(f"bucket {bucket}: {check.stderr.strip()[-300:]}")
            objects += listed["files"]
        return {"buckets": len(want["buckets"]), "objects": objects, "differs": differs}

    def held(self, snap: dict[str, Any], path: str) -> set[str]:
        """The files (and links) the snapshot holds under path, relative to it."""
        out = self.restic("ls", "--recursive", snap["id"], path, json_out=True)
        nodes = (json.loads(line) for line in out.splitlines() if line.startswith("{"))
        return {str(Path(n["path"]).relative_to(path)) for n in nodes
                if "node" in (n.get("struct_type"), n.get("message_type"))
                and n.get("type") in ("file", "symlink")
                and n["path"] != path}

    def restore_volume(self, item: dict[str, Any], snap: dict[str, Any], want: dict[str, Any],
                       limit: int | None) -> dict[str, Any]:
        target = Path(item["path"])
        clear(target)
        # the tree under the path into the path itself (`<snapshot>:<path>`): restic touches
        # nothing above it (on Kubernetes the pod's root is read-only and not the user's)
        args = ["restore", f"{snap['id']}:{item['path']}", "--target", item["path"], "--verify"]
        if limit:
            args += ["--limit-download", str(limit)]
        self.restic(*args)
        got = listing(target)
        report = {"files": got["files"], "bytes": got["bytes"]}
        if n := changed(got, want):
            report["written while backed up"] = n
        return {**report, "differs": compare(got, want, self.held(snap, item["path"]))}

    def check(self, items: list[dict[str, Any]], snapshot: str | None, stack: str) -> bool:
        """What can only be read once the restored services run again: Redis's keys."""
        self.open()
        ok = True
        redis = [i for i in items if i["kind"] == "redis"]
        self.reach(redis)
        for i, _, manifest in self.sources(redis, snapshot, stack) if redis else []:
            r = self.plan["redis"]
            info = run(["redis-cli", "-h", r["host"], "-p", str(r["port"]), "info", "keyspace"],
                       env=self.redis_env())
            keys = sum(int(n) for n in re.findall(r"keys=(\d+)", info))
            want = manifest["items"][i["id"]]["keys"]
            ok &= keys == want
            print(f"{i['id']}: Redis serves {keys} keys, backup {want}: "
                  f"{'verified' if keys == want else 'DIFFERS'}")
        return ok


# --- helpers ---------------------------------------------------------------------------


def select(plan: dict[str, Any], services: list[str]) -> list[dict[str, Any]]:
    """The plan's items of these services (catalog.backup.Plan.select, on the JSON)."""
    items = plan["items"]
    if not services:
        return items
    known = {i["service"] for i in items} | {plan["postgres"]["service"]} \
        if plan.get("postgres") else {i["service"] for i in items}
    unknown = sorted(set(services) - known)
    if unknown:
        raise Refused(f"nothing backed up of {', '.join(unknown)}; services with data: "
                      f"{', '.join(sorted(known))}")
    pg = (plan.get("postgres") or {}).get("service")
    return [i for i in items if i["service"] in services
            or (pg in services and i["kind"] in ("database", "roles"))]


def marker(item: dict[str, Any]) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", item["id"])


def table_counts(cur: Any) -> dict[str, int]:
    """Exact row count of every table outside the system schemas."""
    cur.execute("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON "
                "n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname NOT LIKE 'pg\\_%' "
                "AND n.nspname <> 'information_schema' ORDER BY 1, 2")
    counts = {}
    for schema, table in cur.fetchall():
        cur.execute(f'SELECT count(*) FROM "{schema}"."{table}"')
        counts[f"{schema}.{table}"] = cur.fetchone()[0]
    return counts


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def listing(root: Path) -> dict[str, Any]:
    """Every file under root: size, modification time and SHA-256 (symlinks: their target)."""
    entries: dict[str, list[Any]] = {}
    total = 0
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            p = Path(dirpath, name)
            rel = str(p.relative_to(root))
            st = p.lstat()
            if p.is_symlink():
                entries[rel] = [0, st.st_mtime_ns, "link:" + os.readlink(p)]
            elif p.is_file():
                entries[rel] = [st.st_size, st.st_mtime_ns, sha256(p)]
                total += st.st_size
    return {"files": len(entries), "bytes": total, "entries": entries}


def compare(got: dict[str, Any], want: dict[str, Any],
            held: set[str] | None = None) -> list[str]:
    """What differs between a restored tree and the backup: its files are exactly those the
    snapshot holds (`held`; the listing's when none is given), and every file whose size and
    time are those the listing read has the listing's SHA-256. A live volume changes while it
    is backed up: a file written or removed between the listing and restic's read is the
    snapshot's (restic's own hashes, `restore --verify`), not a difference."""
    held = set(want["entries"]) if held is None else held
    differs = [f"{p}: missing" for p in sorted(held) if p not in got["entries"]]
    differs += [f"{p}: not in the backup" for p in got["entries"] if p not in held]
    for p, (size, mtime, digest) in want["entries"].items():
        have = got["entries"].get(p)
        if have is not None and have[2] != digest and (have[0], have[1]) == (size, mtime):
            differs.append(f"{p}: checksum differs")
    return differs


def changed(got: dict[str, Any], want: dict[str, Any]) -> int:
    """Files the snapshot holds otherwise than the listing read them (written meanwhile)."""
    return sum(1 for p, have in got["entries"].items()
               if (want["entries"].get(p) or [None, None])[:2] != have[:2])


def clear(path: Path) -> None:
    for p in path.iterdir():
        if p.name == "lost+found":
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def redis_files(data: Path) -> list[Path]:
    return [p for p in (data / "dump.rdb", *sorted((data / "appendonlydir").glob("*.rdb")))
            if p.is_file()]


def rdb_keys(path: Path) -> int:
    """Keys in an RDB file, as redis-check-rdb reads them."""
    out = subprocess.run(["redis-check-rdb", str(path)], capture_output=True, text=True)
    found = re.search(r"(\d+) keys read", out.stdout + out.stderr)
    if out.returncode != 0 or found is None:
        raise Failed(f"redis-check-rdb {path}: {(out.stdout + out.stderr).strip()[-500:]}")
    return int(found.group(1))


def schedule(job: Job, limit_upload: int | None) -> None:
    from croniter import croniter

    if not job.plan["schedule"]:
        raise Refused("the plan has no schedule: on Kubernetes the CronJobs run `run`")
    log(f"schedule {job.plan['schedule']} into {job.repo}")
    times = croniter(job.plan["schedule"], datetime.now(UTC))
    while True:
        due = times.get_next(float)
        time.sleep(max(0.0, due - time.time()))
        once(job, limit_upload)


def part(plan: dict[str, Any], servers: bool, ids: list[str]) -> list[dict[str, Any]] | None:
    """The items of one job (None: the whole plan)."""
    if servers:
        return [i for i in plan["items"] if i["kind"] != "volume"]
    if not ids:
        return None
    known = {i["id"]: i for i in plan["items"]}
    unknown = [x for x in ids if x not in known]
    if unknown:
        raise Refused(f"the plan has no item {', '.join(unknown)}; items: "
                      f"{', '.join(known)}")
    return [known[x] for x in ids]


def once(job: Job, limit_upload: int | None,
         items: list[dict[str, Any]] | None = None) -> int:
    started = time.time()
    name = "servers" if items and all(i["kind"] != "volume" for i in items) else \
        ",".join(marker(i) for i in items) if items else "all"
    try:
        result = job.backup(limit_upload, items)
    except (Failed, Refused) as exc:
        log(f"backup failed: {exc}")
        job.push(None, started, name)
        return 2 if isinstance(exc, Refused) else 1
    job.push(result, started, name)
    print(json.dumps(result), flush=True)
    log(f"backup {result['snapshot'][:8]}: {result['size']} bytes, {result['added']} added, "
        f"{result['seconds']} s")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="manacore-backup")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("schedule", "run"):
        p = sub.add_parser(name)
        p.add_argument("--limit-upload", type=int, help="KiB/s")
    only = p.add_mutually_exclusive_group()  # run: a part of the plan
    only.add_argument("--servers", action="store_true", help="what the servers give")
    only.add_argument("--item", action="append", default=[], help="an item of the plan")
    sub.add_parser("init")
    p = sub.add_parser("snapshots")
    p.add_argument("--from-stack")
    for name in ("restore", "check"):
        p = sub.add_parser(name)
        p.add_argument("services", nargs="*")
        p.add_argument("--item", action="append", default=[],
                       help="an item of the plan instead of services (Kubernetes: one job "
                            "per claim)")
        p.add_argument("--snapshot")
        p.add_argument("--from-stack")
        if name == "restore":
            p.add_argument("--force", action="store_true")
            p.add_argument("--limit-download", type=int, help="KiB/s")
            p.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    # a restore container gets the plan from `manacore restore` (the same, derived from the
    # same estate); the backup container has it as a file
    job = Job(json.loads(os.environ.get("MANACORE_BACKUP_PLAN_JSON") or PLAN.read_text()))
    stack = getattr(args, "from_stack", None) or job.plan["stack"]
    try:
        if args.command == "schedule":
            schedule(job, args.limit_upload)
        if args.command == "run":
            return once(job, args.limit_upload, part(job.plan, args.servers, args.item))
        if args.command == "init":
            job.restic("init")
            print(f"created the repository {job.repo}")
        if args.command == "snapshots":
            out = job.restic("snapshots", "--host", stack, "--tag", "manacore", json_out=True)
            for s in json.loads(out or "[]"):
                print(f"{s['short_id']}  {s['time'][:19]}  {s['hostname']}")
        if args.command in ("restore", "check"):
            items = part(job.plan, False, args.item) if args.item else \
                select(job.plan, args.services)
        if args.command == "restore":
            return 0 if job.restore(items, args.snapshot, stack, args.force,
                                    args.limit_download, args.dry_run) else 1
        if args.command == "check":
            return 0 if job.check(items, args.snapshot, stack) else 1
    except Refused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    except Failed as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
