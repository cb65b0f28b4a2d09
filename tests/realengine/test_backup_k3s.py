"""Backups on the real nodes (issue 27, stage 2): the release's CronJobs (conftest: `release`,
its repository a bucket in the suite's S3 server on this host) run as a Kubernetes user runs
them by hand, `kubectl create job --from=cronjob/…`: the servers' job dumps every database,
the roles, Redis and the buckets; each copied claim's job runs on the claim's node, reads it
read-only as the claim's service under restricted Pod Security, and writes a snapshot tagged
with its item. What the snapshots hold is read back with restic from outside the cluster.

Runs after test_helm_cluster on the same release, before the nodes are drained; its Jobs are
deleted again."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from catalog.backup import files_copied, mount_path, volume_item
from tests.conftest import resolved
from tests.realengine.conftest import (
    RELEASE,
    REPOSITORY_PASSWORD,
    Cluster,
    Engine,
    benchmark,
)
from tests.realengine.pods import exec_in, key, node_of, pods_of, until
from tests.realengine.release import ours
from tests.test_backup import image_script

pytestmark = pytest.mark.kube_cluster
ESTATE = resolved("k3s")
PROBE = "manacore-probe.bin"  # written into Synapse's claim
ROWS = 500  # into a table of the first database


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
    database = ESTATE.databases[0].name
    postgres = pods_of(cluster, ESTATE["postgres"], RELEASE)[0]
    exec_in(cluster, postgres, "psql", "-U", "postgres", "-d", database, "-v",
            "ON_ERROR_STOP=1", "-c", "DROP TABLE IF EXISTS manacore_probe; CREATE TABLE "
            f"manacore_probe AS SELECT g AS n FROM generate_series(1, {ROWS}) g")

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
        for name, ns in names.items():
            cluster.kubectl("delete", "job", name, "-n", ns, "--cascade=foreground",
                            check=False)

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
