"""Backups on the real nodes (issue 27, stage 2): the release's CronJobs (conftest: `release`,
its repository a bucket in the suite's S3 server on this host) run as a Kubernetes user runs
them by hand, `kubectl create job --from=cronjob/…`: the servers' job dumps every database,
the roles, Redis and the buckets; each copied claim's job runs on the claim's node, reads it
read-only as the claim's service under restricted Pod Security, and writes a snapshot tagged
with its item. What the snapshots hold is read back with restic from outside the cluster.
Then `manacore restore --stack k3s` brings back what was lost since; and when PostgreSQL's
node is gone for good, the README's runbook brings PostgreSQL back on another node from that
backup (issue 26).

Runs after test_helm_cluster on the same release, before the nodes are drained, its tests in
order (the second restores the first's backup); its Jobs are deleted again (the restore's keep
a day, as an operator's do)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from catalog.backup import files_copied, mount_path, volume_item
from catalog.settings import ROOT
from tests.conftest import resolved
from tests.realengine.conftest import (
    REAL_NODE,
    RELEASE,
    RELEASE_NS,
    REPOSITORY_PASSWORD,
    Cluster,
    Engine,
    Nodes,
    benchmark,
    stack_copy,
)
from tests.realengine.pods import exec_in, key, node_of, pods_of, ready, until
from tests.realengine.release import helm, ours
from tests.test_backup import image_script

pytestmark = pytest.mark.kube_cluster
ESTATE = resolved("k3s")
PROBE = "manacore-probe.bin"  # written into Synapse's claim
ROWS = 500  # into a table of Synapse's database
MANACORE = str(ROOT / ".venv" / "bin" / "manacore")


def marker_of(item: str) -> str:
    """The tag of an item's snapshots, as the image names it."""
    return image_script().marker({"id": item})


def restic(engine: Engine, repository: dict[str, Any], script: str) -> str:
    """A shell script with restic in the backup image, on the suite's Docker engine, against
    the release's repository as containers reach it."""
    b = repository["backup"]
    return engine.docker(
        "run", "--rm", "--entrypoint", "sh",
        "-e", f"RESTIC_REPOSITORY=s3:{repository['containers']}/{b['bucket']}",
        "-e", f"RESTIC_PASSWORD={REPOSITORY_PASSWORD}",
        "-e", f"AWS_ACCESS_KEY_ID={repository['access_key']}",
        "-e", f"AWS_SECRET_ACCESS_KEY={repository['secret_key']}",
        ESTATE["backup"].image, "-c", f"export RESTIC_CACHE_DIR=/tmp; {script}", timeout=300)


def snapshots(engine: Engine, repository: dict[str, Any]) -> list[dict[str, Any]]:
    return json.loads(restic(engine, repository, "restic -o s3.bucket-lookup=path snapshots "
                             "--json") or "[]")


def psql(cluster: Cluster, database: str, statement: str) -> str:
    """A statement as PostgreSQL's superuser in the release's PostgreSQL pod; its rows."""
    pod = pods_of(cluster, ESTATE["postgres"], RELEASE)[0]
    return exec_in(cluster, pod, "psql", "-U", "postgres", "-d", database, "-XAtq", "-v",
                   "ON_ERROR_STOP=1", "-c", statement).stdout.strip()


def finished(cluster: Cluster, names: dict[str, str]) -> list[dict[str, Any]] | None:
    jobs = [cluster.items("jobs", "-n", ns, "--field-selector", f"metadata.name={name}")
            for name, ns in names.items()]
    found = [j[0] for j in jobs if j]
    done = [j for j in found if j.get("status", {}).get("succeeded") or any(
        c["type"] == "Failed" and c["status"] == "True"
        for c in j.get("status", {}).get("conditions", []))]
    return found if len(done) == len(names) else None


def test_each_cron_job_backs_up_its_items_from_its_node(
        cluster: Cluster, engine: Engine, release: dict[str, Any],
        repository: dict[str, Any]) -> None:
    # once per repository, as the operator does (README "Backups"); kept across sessions
    # (restic retries a missing bucket for minutes: `init` says at once that one is there)
    restic(engine, repository, "out=$(restic -o s3.bucket-lookup=path init 2>&1) || "
           'echo "$out" | grep -q "already initialized" || { echo "$out" >&2; exit 1; }')
    before = {s["id"] for s in snapshots(engine, repository)}
    synapse = pods_of(cluster, ESTATE["synapse"], RELEASE)[0]
    [volume] = [v for s, v in files_copied(ESTATE.services) if s.id == "synapse"]
    digest = exec_in(cluster, synapse, "sh", "-c", f"head -c 300000 /dev/urandom > "
                     f"{volume.path}/{PROBE} && sha256sum {volume.path}/{PROBE}"
                     ).stdout.split()[0]
    database = ESTATE["synapse"].database

    def sql(statement: str) -> str:
        return psql(cluster, database, statement)

    sql("DROP TABLE IF EXISTS manacore_probe; CREATE TABLE manacore_probe AS "
        f"SELECT g AS n FROM generate_series(1, {ROWS}) g")

    cron = {c["metadata"]["name"]: c["metadata"]["namespace"] for c in ours(cluster, "cronjobs")}
    assert len(cron) == 1 + len(files_copied(ESTATE.services))
    names = {f"{name}-now": ns for name, ns in cron.items()}
    start = time.monotonic()
    try:
        for name, ns in cron.items():
            cluster.kubectl("create", "job", f"{name}-now", f"--from=cronjob/{name}", "-n", ns)
        jobs = until("every backup job finished", lambda: finished(cluster, names), 600, 2)
        took = time.monotonic() - start
        pods = {p["metadata"]["labels"]["job-name"]: p for p in cluster.items(
            "pods", "-A", "-l", f"app.kubernetes.io/instance={RELEASE}")
            if p["metadata"]["labels"].get("job-name") in names}
        failed = [f"{j['metadata']['name']}:\n" + cluster.kubectl(
            "logs", "-n", j["metadata"]["namespace"], f"job/{j['metadata']['name']}",
            "--tail", "20", check=False).stdout[-2000:]
            for j in jobs if not j.get("status", {}).get("succeeded")]
        assert not failed, "\n".join(failed)
        for j in jobs:  # each job's figures reached the Pushgateway (its policies admit it)
            log = cluster.kubectl("logs", "-n", j["metadata"]["namespace"],
                                  f"job/{j['metadata']['name']}").stdout
            assert "did not take them" not in log, (j["metadata"]["name"], log[-1500:])
        benchmark(f"backup on the real nodes: {len(jobs)} jobs (the servers' and one per "
                  f"claim) done in {took:.1f} s")
        for s, v in files_copied(ESTATE.services):  # on the claim's node, as its owner
            pod = pods[f"{ESTATE['backup'].name}-{v.claim}-now"]
            owner = pods_of(cluster, s, RELEASE)[0]
            assert node_of(pod) == node_of(owner), (key(pod), s.id)
            assert pod["spec"]["securityContext"]["runAsUser"] == \
                owner["spec"]["securityContext"]["runAsUser"], s.id
    finally:
        clean(cluster)

    new = [s for s in snapshots(engine, repository) if s["id"] not in before]
    assert len(new) == len(cron), [s.get("tags") for s in new]
    by_tag = {t: s for s in new for t in s.get("tags", [])}
    for s, v in files_copied(ESTATE.services):
        assert marker_of(volume_item(s, v)) in by_tag, s.id
    servers = by_tag[marker_of(f"database:{database}")]
    assert {marker_of("roles"), marker_of("redis"), marker_of("objects")} <= set(
        servers["tags"])
    manifest = json.loads(restic(engine, repository, "restic -o s3.bucket-lookup=path dump "
                                 f"{servers['id']} /backup/staging/manifest.json"))
    assert manifest["items"][f"database:{database}"]["tables"]["public.manacore_probe"] == ROWS
    media = by_tag[marker_of(volume_item(ESTATE["synapse"], volume))]
    held = restic(engine, repository, "restic -o s3.bucket-lookup=path dump "
                  f"{media['id']} {mount_path(ESTATE['synapse'], volume)}/{PROBE} | sha256sum")
    assert held.split()[0] == digest

    # lost since the backup: the file and the table; `manacore restore --stack k3s synapse`
    # refuses while Synapse's database and claim hold data, then with --force restores both
    exec_in(cluster, synapse, "rm", f"{volume.path}/{PROBE}")
    sql("DROP TABLE manacore_probe")

    def manacore(*args: str) -> subprocess.CompletedProcess[str]:
        return restore(cluster, repository, *args)

    release["changed"].add("synapse")  # stopped and started again by the restore
    refused = manacore("synapse")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "not empty" in refused.stdout + refused.stderr
    assert sql("SELECT count(*) FROM pg_tables WHERE tablename = 'manacore_probe'") == "0"
    start = time.monotonic()
    done = manacore("synapse", "--force")
    took = time.monotonic() - start
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    for item in (f"database:{database}", volume_item(ESTATE["synapse"], volume)):
        assert any(x.startswith(f"{item}: ") and x.endswith(": verified") for x in lines), \
            (item, done.stdout[-3000:])
    benchmark(f"manacore restore --stack k3s synapse (its database and claim; Synapse "
              f"stopped and started again): {took:.1f} s")
    synapse = until("Synapse Ready again", lambda: next(
        (p for p in pods_of(cluster, ESTATE["synapse"], RELEASE) if ready(p)), None), 300)
    assert exec_in(cluster, synapse, "sha256sum", f"{volume.path}/{PROBE}"
                   ).stdout.split()[0] == digest
    assert sql("SELECT count(*) FROM manacore_probe") == str(ROWS)
    clean(cluster)  # the restore's Jobs (kept a day for an operator to read)


def test_postgres_whose_node_is_gone_for_good_comes_back_from_its_backup_on_another_node(
        cluster: Cluster, release: dict[str, Any], chart: Path, nodes: Nodes,
        repository: dict[str, Any]) -> None:
    """Issue 26's stateful case, the README's runbook for PostgreSQL when its node is gone for
    good: its pod cannot leave that node (its claim is on the node's disk), so the operator
    deletes the node, PostgreSQL's pod and its claim; `helm upgrade --reuse-values` makes an
    empty claim, which the scheduler puts on a node that is there; PostgreSQL starts on it
    empty (the estate's roles and databases from its init); `manacore restore --stack k3s
    postgres --force` brings every database back from the latest backup — the servers'
    snapshot the test above took, holding the probe table it restored. What was written after
    that backup is lost with the node (the schedule's interval: hourly by default)."""
    pg, database = ESTATE["postgres"], ESTATE["synapse"].database
    assert psql(cluster, database, "SELECT count(*) FROM manacore_probe") == str(ROWS)
    psql(cluster, database, "INSERT INTO manacore_probe VALUES (0)")  # after the backup

    pod = pods_of(cluster, pg, RELEASE)[0]
    lost = node_of(pod)
    [claim] = [v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"]
               if "persistentVolumeClaim" in v]
    release["changed"] |= {pg.id, *(db.owner for db in ESTATE.databases)}
    start = time.monotonic()
    nodes.stop(lost)
    try:
        cluster.kubectl("delete", "node", lost)
        cluster.kubectl("delete", "pod", "-n", pg.namespace, pod["metadata"]["name"],
                        "--force", "--grace-period=0")
        cluster.kubectl("delete", "pvc", "-n", pg.namespace, claim, timeout=120)
        helm(cluster, "upgrade", RELEASE, str(chart), "-n", RELEASE_NS, "--reuse-values")
        again = until("PostgreSQL Ready on a new claim", lambda: next(
            (p for p in pods_of(cluster, pg, RELEASE) if ready(p)), None), 300)
        serving = time.monotonic() - start
    finally:
        nodes.start(lost)  # the machine replaced: every other workload back on its claims
    assert node_of(again) != lost and REAL_NODE.fullmatch(node_of(again)), node_of(again)
    assert psql(cluster, database, "SELECT count(*) FROM pg_tables WHERE tablename = "
                "'manacore_probe'") == "0"  # empty indeed
    start = time.monotonic()
    done = restore(cluster, repository, pg.id, "--force")
    took = time.monotonic() - start
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    for db in ESTATE.databases:
        assert any(x.startswith(f"database:{db.name}: ") and x.endswith(": verified")
                   for x in lines), (db.name, done.stdout[-3000:])
    assert psql(cluster, database, "SELECT count(*), min(n) FROM manacore_probe") == f"{ROWS}|1"
    benchmark(f"PostgreSQL's node gone for good: serving again, empty, on {node_of(again)} "
              f"{serving:.1f} s after the loss (node, pod and claim deleted, helm upgrade); "
              f"manacore restore --stack k3s postgres --force ({len(ESTATE.databases)} "
              f"databases, their services stopped and started again): {took:.1f} s")
    clean(cluster)


def restore(cluster: Cluster, repository: dict[str, Any], *args: str
            ) -> subprocess.CompletedProcess[str]:
    """`manacore restore --stack k3s ARGS` as the operator runs it, the k3s stack pointed at
    the suite's cluster and the release's repository."""
    stacks = stack_copy(Path(str(cluster.kubeconfig)).parent / "stacks-k3s", "k3s",
                        kubeContext=cluster.context, backup=repository["backup"])
    env = {**os.environ, "MANACORE_STACK_DIR": str(stacks), "KUBECONFIG": str(
        cluster.kubeconfig), "PATH": f"{ROOT / '.tools' / 'bin'}:{os.environ['PATH']}"}
    return subprocess.run([MANACORE, "restore", "--stack", "k3s", *args], env=env,
                          capture_output=True, text=True, timeout=1800)


def clean(cluster: Cluster) -> None:
    """No backup or restore Job of the release left: later modules count its pods."""
    cluster.kubectl("delete", "jobs", "-A", "-l", "app.kubernetes.io/component=backup,"
                    f"app.kubernetes.io/instance={RELEASE}", "--cascade=foreground",
                    timeout=300)
