"""The backup plan and the backup service, derived from the resolved estate (issue 27): what
is backed up, how, where to, and what the restore stops; the settings; the Grafana panel; the
restore command's refusals that need no engine. The real proof is
tests/realengine/test_backup.py."""

from __future__ import annotations

import importlib.util
import json
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from catalog.backup import (
    PASSWORD_SECRET,
    REPOSITORY_MOUNT,
    S3_SECRETS,
    SERVERS,
    VOLUMES_ROOT,
    backup_service,
    files_copied,
    plan,
)
from catalog.configs import GRAFANA_DASHBOARD_DIR, GRAFANA_DASHBOARDS
from catalog.load import load_estate
from catalog.resolve import resolve
from catalog.rules import EstateError
from catalog.settings import (
    ROOT,
    BackupSettings,
    SettingsError,
    load_settings,
    settings_from_values,
)
from components.base import BackupJob
from components.base import plan as components_plan
from exports.compose import to_compose
from tests.cli_run import invoke
from tests.conftest import resolved

S3 = {"s3Endpoint": "https://s3.example.com", "bucket": "manacore-backup"}


def with_backup(stack: str = "macmini", **backup: object):
    settings = load_settings(stack).model_copy(update={
        "backup": settings_from_values(stack, {
            "target": "docker", "domain": "a.b", "registry": "r", "tag": "1",
            "memoryBudget": "1Gi", "backup": backup}).backup})
    return resolve(load_estate(), settings)


def test_every_stateful_service_is_covered_exactly_once() -> None:
    """Each database, Redis, the object store and every other stateful volume is one item; the
    volumes of PostgreSQL and the object store are never copied as files."""
    estate = resolved("macmini")
    found = plan(estate.services, estate.databases, estate.settings)
    kinds = {i.id: i.kind for i in found.items}
    assert {f"database:{db.name}" for db in estate.databases} <= set(kinds)
    assert kinds["roles"] == "roles" and kinds["redis"] == "redis"
    assert kinds["objects"] == "objects"
    stateful = {(s.id, v.path) for s in estate.containers for v in s.volumes if v.stateful
                and s.role != "backup"}
    as_files = {(i.service, i.path.removeprefix(f"{VOLUMES_ROOT}/{i.service}"))
                for i in found.items if i.kind == "volume"}
    by_server = {(s.id, v.path) for s in estate.containers if s.dump for v in s.volumes}
    assert as_files | by_server == stateful and not as_files & by_server
    assert {sid for sid, _ in by_server} == {"postgres", "redis", "s3"}
    assert found.postgres.host == estate["postgres"].host
    assert found.objects.url == estate["s3"].url("api")
    assert found.pushgateway == estate["pushgateway"].url()


def test_the_restore_stops_the_users_of_what_it_restores() -> None:
    estate = resolved("macmini")
    found = {i.id: i for i in plan(estate.services, estate.databases, estate.settings).items}
    assert found["database:synapse"].stop == ("synapse",)
    assert found["redis"].stop == ("redis",)
    assert set(found["objects"].stop) == {"contacts-backend", "storage-backend"}
    assert found["volume:mana-bot:/data"].stop == ("mana-bot",)
    pg = plan(estate.services, estate.databases, estate.settings).select(["postgres"])
    assert {i.kind for i in pg} == {"roles", "database"} and len(pg) == 1 + len(
        estate.databases)


def test_the_backup_service_mounts_what_it_copies_read_only_through_each_subpath() -> None:
    estate = resolved("macmini")
    backup = backup_service(estate.services)
    assert backup is not None and backup.caps == ("DAC_READ_SEARCH",)
    own = [v for v in backup.volumes if not v.stateful]
    assert [v.path for v in own] == ["/backup"] and not own[0].read_only
    copies = {v.path: v for v in backup.volumes if v.stateful}
    assert all(v.read_only and v.owner is None for v in copies.values())
    owners = {f"{VOLUMES_ROOT}/{s.id}{v.path}": v for s in estate.containers
              for v in s.volumes if v.stateful and s.role != "backup"}
    for path, v in copies.items():
        assert (v.name, v.subpath) == (owners[path].name, owners[path].subpath), path
    assert not any(p.startswith(f"{VOLUMES_ROOT}/postgres") for p in copies)
    assert {"postgres", "redis", "s3", "pushgateway"} <= set(backup.lazy)


def test_repository_from_the_stack_settings() -> None:
    local = resolved("macmini")["backup"]
    assert local.env["RESTIC_REPOSITORY"].plain == REPOSITORY_MOUNT
    assert [(m.source, m.path, m.read_only, m.create) for m in local.host_mounts] == [
        ("/Volumes/Backup/manacore-restic", REPOSITORY_MOUNT, False, True)]
    [bind] = [m for m in to_compose(resolved("macmini"))["services"]["backup"]["volumes"]
              if m["type"] == "bind"]
    assert bind["bind"] == {"create_host_path": True}  # a missing path: no refused start
    assert "AWS_ACCESS_KEY_ID" not in local.env
    s3 = with_backup(**S3)
    backup = s3["backup"]
    assert backup.env["RESTIC_REPOSITORY"].plain == "s3:https://s3.example.com/manacore-backup"
    assert backup.env["AWS_ACCESS_KEY_ID"].secrets == (S3_SECRETS[0],)
    assert backup.env["RESTIC_PASSWORD"].secrets == (PASSWORD_SECRET,)
    assert not backup.host_mounts
    assert {*S3_SECRETS, PASSWORD_SECRET, "POSTGRES_PASSWORD", "REDIS_PASSWORD"} <= set(
        backup.secrets)
    assert {*S3_SECRETS, PASSWORD_SECRET} <= {x.name for x in s3.secrets}


def test_a_stack_without_a_repository_is_a_violation() -> None:
    settings = load_settings("macmini").model_copy(update={"backup": BackupSettings()})
    with pytest.raises(EstateError) as caught:
        resolve(load_estate(), settings)
    assert [str(v) for v in caught.value.violations] == [
        "settings: backup: stack macmini: no backup repository: set manacore:backup with "
        "s3Endpoint and bucket (off the host), or a local path"]


def test_a_path_repository_on_kubernetes_is_a_violation() -> None:
    """A path on Kubernetes would be a folder of whichever node ran the job."""
    settings = load_settings("k3s").model_copy(update={
        "backup": BackupSettings(path="/srv/backup")})
    with pytest.raises(EstateError) as caught:
        resolve(load_estate(), settings)
    assert [str(v) for v in caught.value.violations] == [
        "settings: backup: stack k3s: backup.path '/srv/backup' would be a folder of one "
        "node; on Kubernetes the repository is an S3 bucket off the cluster: set s3Endpoint "
        "and bucket"]


@pytest.mark.parametrize(("backup", "fragment"), [
    ({"s3Endpoint": "https://s3.example.com"}, "needs both s3Endpoint and bucket"),
    ({**S3, "path": "/srv/b"}, "not both"),
    ({"path": "relative/dir"}, "absolute host path"),
    ({"path": "/srv/b", "schedule": "hourly"}, "cron expression"),
    ({"path": "/srv/b", "schedule": "0 * * *"}, "cron expression"),
    ({"s3Endpoint": "s3.example.com", "bucket": "b-1"}, "S3 endpoint"),
    ({"path": "/srv/b", "keep": {"hourly": -1}}, "greater than or equal to 0"),
    ({"path": "/srv/b", "every": "1h"}, "unknown setting; known: s3Endpoint, bucket, path"),
])
def test_bad_backup_settings_are_reported(backup: dict, fragment: str) -> None:
    with pytest.raises(SettingsError) as caught:
        settings_from_values("macmini", {"target": "docker", "domain": "a.b", "registry": "r",
                                         "tag": "1", "memoryBudget": "1Gi", "backup": backup})
    assert any(fragment in p and p.startswith("backup") for p in caught.value.problems), \
        caught.value.problems


def test_defaults_keep_at_most_an_hour_of_data_at_risk() -> None:
    b = load_settings("macmini").backup
    assert b.schedule == "0 * * * *"
    assert b.keep.model_dump() == {"hourly": 24, "daily": 7, "weekly": 5, "monthly": 12,
                                   "yearly": 2}


def test_the_plan_file_reaches_the_container_and_holds_no_secret() -> None:
    estate = with_backup(**S3)
    model = to_compose(estate)
    svc = model["services"]["backup"]
    [plan_file] = [c for c in svc["configs"] if c["target"] == "/etc/manacore/backup.json"]
    text = model["configs"][plan_file["source"]]["content"]
    data = json.loads(text.replace("$$", "$"))
    assert data["repository"] == "s3:https://s3.example.com/manacore-backup"
    assert "${" not in text
    mounts = [m for m in svc["volumes"] if m.get("read_only")]
    assert {m["target"] for m in mounts} == {i["path"] for i in data["items"] if i["path"]}
    assert svc["environment"]["RESTIC_PASSWORD"].startswith("${BACKUP_REPOSITORY_PASSWORD:?")
    assert svc["cap_add"] == ["CAP_DAC_READ_SEARCH"] and svc["cap_drop"] == ["ALL"]


def test_the_backup_component_is_created_after_every_volume_owner() -> None:
    groups = components_plan(resolved("macmini"))
    assert groups[-1][0] is BackupJob and [s.id for s in groups[-1][2]] == ["backup"]
    assert all(cls is not BackupJob for cls, _, _ in groups[:-1])


def test_grafana_gets_the_backup_panel_for_the_metrics_the_job_pushes() -> None:
    files = {f.path: f.content.plain for f in resolved("macmini")["grafana"].files}
    assert GRAFANA_DASHBOARD_DIR in files[GRAFANA_DASHBOARDS]
    board = json.loads(files[f"{GRAFANA_DASHBOARD_DIR}/backup.json"])
    queried = {m for p in board["panels"] for t in p["targets"]
               for m in re.findall(r"manacore_backup_\w+", t["expr"])}
    script = (ROOT / "images" / "backup" / "manacore_backup.py").read_text()
    pushed = {f"manacore_backup_{m}" for m in re.findall(r'gauge\("(\w+)"', script)}
    assert queried and queried <= pushed
    assert {"manacore_backup_last_success_timestamp_seconds",
            "manacore_backup_last_size_bytes"} <= queried


def image_script():
    path = ROOT / "images" / "backup" / "manacore_backup.py"
    spec = importlib.util.spec_from_file_location("manacore_backup", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_verification_finds_a_changed_missing_or_extra_file(tmp_path: Path) -> None:
    m = image_script()
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_bytes(b"alpha")
    (tmp_path / "b").write_bytes(b"beta")
    want = m.listing(tmp_path)
    assert want["files"] == 2 and want["bytes"] == 9 and m.compare(m.listing(tmp_path), want) == []
    stat = (tmp_path / "b").stat()
    (tmp_path / "b").write_bytes(b"BETA")  # same size and time: corrupted, not changed
    import os

    os.utime(tmp_path / "b", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    (tmp_path / "d" / "a").unlink()
    (tmp_path / "c").write_bytes(b"new")
    assert m.compare(m.listing(tmp_path), want) == [
        "d/a: missing", "c: not in the backup", "b: checksum differs"]


def test_restore_refuses_without_an_engine_what_it_cannot_do() -> None:
    for stack in ("macmini", "k3s"):
        unknown = invoke("restore", "--stack", stack, "nothing-here")
        assert unknown.exit_code == 2, unknown.output
        assert "nothing is backed up of nothing-here" in unknown.stderr
        assert "services with data:" in unknown.stderr and "synapse" in unknown.stderr
    limited = invoke("restore", "--stack", "k3s", "--limit-download", "100")
    assert limited.exit_code == 2 and "on Docker only" in limited.stderr


def test_a_file_written_while_a_live_volume_was_backed_up_is_the_snapshots(
        tmp_path: Path) -> None:
    """VictoriaMetrics writes parts while restic reads (seen on the real engine): the listing
    taken before restic lacks them. The snapshot's files count, and a file the listing read
    unchanged must still have its checksum."""
    m = image_script()
    (tmp_path / "old").write_bytes(b"old")
    (tmp_path / "kept").write_bytes(b"kept")
    want = m.listing(tmp_path)
    (tmp_path / "old").unlink()  # merged away before restic read the folder
    (tmp_path / "part").write_bytes(b"new part")
    got = m.listing(tmp_path)
    assert m.compare(got, want, held={"kept", "part"}) == []
    assert m.changed(got, want) == 1
    assert m.compare(got, want, held={"kept", "part", "lost"}) == ["lost: missing"]


# --- Kubernetes: the servers' job and one job per claim ---------------------------------------


def test_on_kubernetes_each_item_is_taken_by_exactly_one_cron_job() -> None:
    """A claim is mounted only on its node and in its namespace: the servers' CronJob takes
    the roles, databases, Redis and the buckets; each copied claim has a CronJob of its own
    beside it that mounts it read-only and reads it as the claim's service (restricted Pod
    Security: no root, no capability), with the repository's secrets alone."""
    from exports.kubernetes import concrete_objects, runtime

    estate = resolved("k3s")
    items = plan(estate.services, estate.databases, estate.settings).items
    objs = {(o.kind, o.manifest["metadata"].get("namespace"), o.name): o.manifest
            for o in concrete_objects(estate, lambda n: f"value-of-{n}")}
    jobs = {k: m for k, m in objs.items() if k[0] == "CronJob"}
    backup = estate["backup"]
    assert not [k for k in objs if k[0] in ("Deployment", "StatefulSet") and k[2] == "backup"]

    def pod(m):
        return m["spec"]["jobTemplate"]["spec"]["template"]["spec"]

    taken: list[str] = []
    servers = jobs.pop(("CronJob", backup.namespace, backup.name))
    assert pod(servers)["containers"][0]["args"] == list(SERVERS)
    assert not [v for v in pod(servers)["volumes"] if "persistentVolumeClaim" in v]
    taken += [i.id for i in items if i.kind != "volume"]
    copied = files_copied(estate.services)
    assert len(copied) >= 7 and len(jobs) == len(copied)
    for s, v in copied:
        m = jobs[("CronJob", s.namespace, f"{backup.name}-{v.claim}")]
        spec = pod(m)
        [c] = spec["containers"]
        assert c["args"][:2] == ["run", "--item"]
        taken.append(c["args"][2])
        [claim] = [x for x in spec["volumes"] if "persistentVolumeClaim" in x]
        assert claim["persistentVolumeClaim"] == {"claimName": v.claim, "readOnly": True}
        [mount] = [x for x in c["volumeMounts"] if x["name"] == claim["name"]]
        assert mount == {"name": claim["name"], "mountPath": f"{VOLUMES_ROOT}/{s.id}{v.path}",
                         "readOnly": True}
        uid = runtime(s).uid
        assert (spec["securityContext"]["runAsUser"], c["securityContext"]["runAsUser"]) == \
            (uid, uid), s.id
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert spec["restartPolicy"] == "Never"
        secret = objs[("Secret", s.namespace, f"{backup.name}-{v.claim}-secrets")]
        assert set(secret["stringData"]) == {PASSWORD_SECRET, *S3_SECRETS}
        refs = {e["valueFrom"]["secretKeyRef"]["key"] for e in c["env"] if "valueFrom" in e}
        assert refs == {PASSWORD_SECRET, *S3_SECRETS}
        policy = objs[("NetworkPolicy", s.namespace, f"{backup.name}-{v.claim}")]["spec"]
        assert policy["ingress"] == []
        assert {"ipBlock": {"cidr": "100.64.0.10/32"}} in [
            t for r in policy["egress"] for t in r["to"]]
        push = estate["pushgateway"]  # takes the job's figures
        admitted = objs[("NetworkPolicy", push.namespace, push.name)]["spec"]["ingress"]
        assert any(peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == m[
            "metadata"]["name"] and peer["namespaceSelector"]["matchLabels"][
            "kubernetes.io/metadata.name"] == s.namespace
            for rule in admitted for peer in rule["from"]), s.id
    for m in (servers, *jobs.values()):
        assert (m["spec"]["schedule"], m["spec"]["concurrencyPolicy"]) == (
            estate.settings.backup.schedule, "Forbid")
    assert sorted(taken) == sorted(i.id for i in items)  # every item, by one job


def test_the_schedule_is_the_containers_on_docker_and_the_cron_jobs_on_kubernetes() -> None:
    """The plan carries a schedule only where the container runs it itself: on Kubernetes the
    CronJobs' (a value of the chart) is the one that counts, so the plan is the same for any."""
    for stack, expected in (("macmini", "0 * * * *"), ("k3s", None)):
        estate = resolved(stack)
        assert plan(estate.services, estate.databases, estate.settings).schedule == expected


def test_the_repository_egress_follows_the_endpoint() -> None:
    from exports.kubernetes import repository_egress

    assert repository_egress("http://100.64.0.10:7070") == {
        "to": [{"ipBlock": {"cidr": "100.64.0.10/32"}}], "ports": [{"protocol": "TCP",
                                                                   "port": 7070}]}
    assert repository_egress("https://s3.example.com") == {
        "to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "TCP", "port": 443}]}


def test_a_run_takes_the_part_of_the_plan_it_is_given() -> None:
    m = image_script()
    estate = resolved("k3s")
    found = json.loads(plan(estate.services, estate.databases, estate.settings
                            ).model_dump_json())
    assert m.part(found, False, []) is None  # Docker: everything in one snapshot
    assert {i["kind"] for i in m.part(found, True, [])} == {"roles", "database", "redis",
                                                            "objects"}
    assert [i["id"] for i in m.part(found, False, ["volume:synapse:/data"])] == [
        "volume:synapse:/data"]
    with pytest.raises(m.Refused, match="no item volume:nope:/x"):
        m.part(found, False, ["volume:nope:/x"])


def test_a_restore_takes_each_item_from_the_newest_snapshot_that_holds_it() -> None:
    """On Kubernetes each job writes snapshots of its own items: a restore of everything reads
    the servers' latest snapshot for the databases and each claim's latest for its files; a
    snapshot from before the item tags holds everything of its time."""
    m = image_script()
    items = [{"id": "database:chat", "kind": "database"},
             {"id": "volume:synapse:/data", "kind": "volume"}]
    snaps = [
        {"id": "old", "short_id": "old", "time": "2026-12-01T00:00:00Z", "tags": ["manacore"]},
        {"id": "s1", "short_id": "s1", "time": "2026-12-07T10:00:00Z",
         "tags": ["manacore", "database_chat"]},
        {"id": "v1", "short_id": "v1", "time": "2026-12-07T09:00:00Z",
         "tags": ["manacore", "volume_synapse_data"]},
        {"id": "v0", "short_id": "v0", "time": "2026-12-07T08:00:00Z",
         "tags": ["manacore", "volume_synapse_data"]},
    ]
    job = m.Job.__new__(m.Job)
    job.repo = "s3:test"
    job.restic = lambda *args, json_out=False: json.dumps(
        [s for s in snaps if len(args) < 2 or args[1] == "--host" or s["id"] == args[1]])
    job.manifest = lambda snap: {"items": {i["id"]: {} for i in items}}
    assert [(i["id"], s["id"]) for i, s, _ in job.sources(items, None, "k3s")] == [
        ("database:chat", "s1"), ("volume:synapse:/data", "v1")]
    assert [s["id"] for _, s, _ in job.sources(items, "old", "k3s")] == ["old", "old"]
    snaps[:] = snaps[1:2]
    with pytest.raises(m.Refused, match="no snapshot of stack k3s holds volume:synapse:/data"):
        job.sources(items, None, "k3s")


def test_a_k3s_restore_writes_each_item_from_the_pod_that_can() -> None:
    """The servers' pod restores a database (it reaches PostgreSQL); a claim's pod its claim,
    now read-write, on the claim's node as the claim's service's user; Redis's RDB from a pod
    on Redis's claim (no CronJob: only a restore writes there)."""
    from exports.kubernetes import runtime
    from ops.kube_backup import KubeBackup

    estate = resolved("k3s")
    ops = KubeBackup(estate)
    items = ops.plan.select(["synapse", "redis"])
    assert [i.id for i in items] == ["database:synapse", "redis", "volume:synapse:/data"]
    jobs = ops._pods_for(items, ["restore", "--force"], True)
    names = [j["metadata"]["name"] for j in jobs]
    assert len(set(names)) == 3 and all(len(n) <= 63 for n in names)

    def pod(j):
        return j["spec"]["template"]["spec"]

    servers, redis, synapse = jobs
    assert servers["metadata"]["namespace"] == estate["backup"].namespace
    assert pod(servers)["containers"][0]["args"] == [
        "restore", "--item", "database:synapse", "--force"]
    assert not [v for v in pod(servers)["volumes"] if "persistentVolumeClaim" in v]
    for job, owner, path in ((redis, estate["redis"], "/volumes/redis/data"),
                             (synapse, estate["synapse"], "/volumes/synapse/data")):
        spec = pod(job)
        assert job["metadata"]["namespace"] == owner.namespace
        [claim] = [v for v in spec["volumes"] if "persistentVolumeClaim" in v]
        assert claim["persistentVolumeClaim"] == {
            "claimName": next(v.claim for v in owner.volumes if v.stateful)}
        [mount] = [m for m in spec["containers"][0]["volumeMounts"]
                   if m["name"] == claim["name"]]
        assert mount == {"name": claim["name"], "mountPath": path}  # writable
        assert spec["securityContext"]["runAsUser"] == runtime(owner).uid
    assert job["spec"]["backoffLimit"] == 0
    # Redis's restore pod has its config and Secret in Redis's namespace, and no CronJob
    from exports.kubernetes import concrete_objects

    objs = {(o.kind, o.name) for o in concrete_objects(estate, str)}
    redis_job = f"{estate['backup'].name}-redis-data"
    assert ("Secret", f"{redis_job}-secrets") in objs and ("CronJob", redis_job) not in objs


def test_a_k3s_restore_waits_only_for_pods_that_run() -> None:
    """A finished pod with the workload's labels (a `helm test` pod) holds nothing: waiting
    for it to go would wait forever (seen on the real nodes)."""
    import subprocess

    from ops.kube_backup import KubeBackup

    ops = KubeBackup(resolved("k3s"))
    states = [["Running", "Succeeded"], ["Succeeded"]]
    asked = []

    def kubectl(*args, **kwargs):
        asked.append(args)
        pods = [{"metadata": {"name": f"p{i}"}, "status": {"phase": phase}}
                for i, phase in enumerate(states.pop(0))]
        return subprocess.CompletedProcess(args, 0, json.dumps({"items": pods}), "")

    ops.kubectl = kubectl  # type: ignore[method-assign]
    ops.stopped({"metadata": {"name": "synapse", "namespace": "manacore-matrix"},
                 "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": "synapse"}}}})
    assert len(asked) == 2 and not states


def test_a_job_waits_for_a_server_that_refuses_at_first_and_names_one_that_never_answers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A job's pod may connect before its NetworkPolicy paths are open (refused for a few
    seconds, found on the real nodes): the job waits for each server its items need, up to
    REACH_SECONDS; one that never answers is a failure naming it. Redis is not waited for
    where it is stopped on purpose (its restore)."""
    m = image_script()
    late = socket.socket()
    late.bind(("127.0.0.1", 0))
    port = late.getsockname()[1]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: refused
    plan = {"cache": str(tmp_path), "repository": "x",
            "postgres": {"service": "postgres", "host": "127.0.0.1", "port": port},
            "redis": {"service": "redis", "host": "127.0.0.1",
                      "port": closed.getsockname()[1]}}
    job = m.Job(plan)
    threading.Timer(1.5, late.listen).start()
    start = time.monotonic()
    job.reach([{"kind": "database"}, {"kind": "volume"}], skip=("redis",))
    assert 1.0 < time.monotonic() - start < 10
    job.reach([{"kind": "redis"}], skip=("redis",))  # skipped: no wait, no failure
    monkeypatch.setattr(m, "REACH_SECONDS", 1)
    with pytest.raises(m.Failed, match=rf"redis at 127.0.0.1:{closed.getsockname()[1]} "
                       "does not answer"):
        job.reach([{"kind": "redis"}])
    late.close()
    closed.close()
