"""The Phase 1 move on the real engines (issue 27): Synapse's data leaves a Docker estate on the
suite's engine and arrives in the chart's release on the cluster's real nodes, with
`manacore move synapse --from macmini --to k3s`.

The Docker estate (the Compose export, fresh volumes) backs up to the release's repository (one
bucket on the suite's S3 server, reached by containers and by pods at their own addresses), as
the Mac Mini and the cluster share the backup disk served over S3. Its Synapse has written
rows and media. The move first refuses: Synapse's signing and macaroon keys differ between the
stacks (the release generated its own). The operator carries them (for the chart: `helm
upgrade --reuse-values` with the Docker stack's values); the move then stops Synapse on Docker,
takes the final backup, restores that snapshot into the cluster and verifies it. The real
Synapse on the cluster serves with the moved signing key, its database holds the rows, its
claim the media byte for byte, and the Docker side is stopped with its volume untouched.

Runs after test_backup_k3s on the same release (its repository exists), before the drains.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from catalog.load import load_estate
from catalog.resolve import resolve
from catalog.settings import ROOT, BackupSettings, load_settings
from exports.migration import HELPER_IMAGE
from tests.realengine.conftest import (
    NEVER_DURING_A_TEST,
    RELEASE,
    RELEASE_NS,
    REPOSITORY_PASSWORD,
    Cluster,
    Engine,
    Estate,
    benchmark,
    clear_project,
    render,
    stack_copy,
)
from tests.realengine.pods import exec_in, pods_of, ready, until
from tests.realengine.pulumi_cli import PulumiStack
from tests.realengine.release import helm
from tests.realengine.test_backup import psql as over_port
from tests.realengine.test_backup import tables, volume_sums, write_env
from tests.realengine.test_backup_k3s import ESTATE, clean, psql

pytestmark = pytest.mark.kube_cluster

MANACORE = str(ROOT / ".venv" / "bin" / "manacore")
ROWS = 3000
MEDIA = "/data/media_store/local_content/mo"  # Synapse's media, written on Docker
# MB of media moved: small in the suite; MANACORE_MOVE_MB=3000 measures the move of a few GB
MEDIA_MB = int(os.environ.get("MANACORE_MOVE_MB", "64"))
# what a Synapse publishes as its server's keys, asked from inside its container
KEYS = ("import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:"
        f"{ESTATE['synapse'].port('http').container}/_matrix/key/v2/server').read().decode())")


def verify_key(server: str) -> str:
    """The public keys in a Synapse's `/_matrix/key/v2/server` answer."""
    return json.dumps(json.loads(server)["verify_keys"], sort_keys=True)


@pytest.fixture(scope="module")
def docker_estate(engine: Engine, cluster: Cluster, repository: dict[str, Any],
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The Mac Mini's side: Synapse (and what it needs) and the backup container from the
    Compose export on the suite's engine, its backups in the release's bucket, with rows and a
    media file written, and one scheduled-style backup of Synapse's data taken."""
    clear_project(engine)
    tmp = tmp_path_factory.mktemp("move")
    backup = {**repository["backup"], "s3Endpoint": repository["containers"]}
    stacks = stack_copy(tmp / "stacks", "macmini", adoptLegacy=False, backup=backup)
    stack_copy(tmp / "stacks", "k3s", kubeContext=cluster.context,
               backup=repository["backup"])
    settings = load_settings("macmini").model_copy(update={
        "adopt_legacy": False, "backup": BackupSettings(
            s3_endpoint=backup["s3Endpoint"], bucket=backup["bucket"],
            schedule=NEVER_DURING_A_TEST)})
    est = render(engine, resolve(load_estate(), settings), tmp / "macmini", stacks=stacks,
                 extra_images=(HELPER_IMAGE,))
    write_env(est, BACKUP_S3_ACCESS_KEY=repository["access_key"],
              BACKUP_S3_SECRET_KEY=repository["secret_key"],
              BACKUP_REPOSITORY_PASSWORD=REPOSITORY_PASSWORD)
    synapse, backup_svc = est.resolved["synapse"], est.resolved["backup"]
    est.compose("up", "-d", "--wait", "--wait-timeout", "300", synapse.id, backup_svc.id)
    env = {**engine.env, "MANACORE_STACK_DIR": str(stacks), "KUBECONFIG": str(
        cluster.kubeconfig), "PATH": f"{ROOT / '.tools' / 'bin'}:{os.environ['PATH']}"}
    try:
        psql_docker(est, f"CREATE TABLE manacore_moved AS SELECT g AS n, md5(g::text) AS body "
                    f"FROM generate_series(1, {ROWS}) g")
        files, size = -(-MEDIA_MB // 64), min(MEDIA_MB, 64)  # files of 64 MB at most
        engine.docker("exec", "-u", synapse.runs_as or "", synapse.container_name, "sh", "-c",
                      f"mkdir -p {MEDIA} && for i in $(seq {files}); do head -c {size}M "
                      f"/dev/urandom > {MEDIA}/$i; done", timeout=1800)
        # the repository is test_backup_k3s's when it ran first (init then refuses: it exists)
        engine.docker("exec", backup_svc.container_name, "manacore-backup", "init", check=False)
        engine.docker("exec", backup_svc.container_name, "manacore-backup", "run", "--item",
                      "database:synapse", "--item", f"volume:synapse:{synapse.volumes[0].path}",
                      timeout=900)
        yield {"estate": est, "env": env}
    finally:
        est.compose("down", "-v", "-t", "5", check=False)


def psql_docker(est: Estate, sql: str) -> str:
    return over_port(est, est.resolved["synapse"].database or "", sql)


def move(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MANACORE, "move", *args], env=env, capture_output=True, text=True,
                          timeout=1800)


def test_synapse_moves_from_docker_to_the_cluster_with_its_keys_rows_and_media(
        engine: Engine, cluster: Cluster, release: dict[str, Any], chart: Path,
        docker_estate: dict[str, Any], toolchain: Path) -> None:
    est, env = docker_estate["estate"], docker_estate["env"]
    synapse = est.resolved["synapse"]
    database = synapse.database or ""
    source_key = verify_key(engine.docker("exec", synapse.container_name, "python", "-c", KEYS))
    moved = tables(est, database)["public.manacore_moved"]
    media = {k: v for k, v in volume_sums(est, "synapse").items() if "media_store" in k}
    assert media and moved.startswith(f"{ROWS}:")

    # the release generated its own keys: the data would arrive under another server identity
    refused = move(env, "synapse")
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
    assert re.search(r"these secrets differ .*SYNAPSE_MACAROON_SECRET_KEY, "
                     r"SYNAPSE_SIGNING_KEY", refused.stderr), refused.stderr
    assert est.engine.inspect(synapse.container_name)[0]["State"]["Running"]  # nothing stopped
    assert not any(v in refused.stdout + refused.stderr for k, v in est.env.items()
                   if k.startswith("SYNAPSE_"))  # no value printed

    # the k3s stack's way to carry them: into its Pulumi config, as secrets (the real CLI)
    stack = PulumiStack.create(Path(str(cluster.kubeconfig)).parent / "move-pulumi", "k3s")
    carried = subprocess.run([MANACORE, "move", "synapse", "--carry-secrets"], cwd=stack.workdir,
                             env={**env, "PATH": stack.env["PATH"], **{
                                 k: v for k, v in stack.env.items() if k.startswith("PULUMI")}},
                             capture_output=True, text=True, timeout=600)
    assert carried.returncode == 0, carried.stdout[-2000:] + carried.stderr[-2000:]
    assert "secrets: 2 carried; now: pulumi up -s k3s" in carried.stdout, carried.stdout
    config = (stack.workdir / "Pulumi.k3s.yaml").read_text()
    for name in ("SYNAPSE_SIGNING_KEY", "SYNAPSE_MACAROON_SECRET_KEY"):
        assert stack.run("config", "get", name, "--stack", "k3s").stdout.strip() == est.env[name]
        assert est.env[name] not in config
        assert set(yaml.safe_load(config)["config"][f"manacore:{name}"]) == {"secure"}
    shutil.rmtree(stack.workdir.parent)

    # the chart's way: the Docker stack's values into the release's
    release["changed"].add("synapse")
    values = Path(str(cluster.kubeconfig)).parent / "moved-secrets.yaml"
    values.write_text(yaml.safe_dump({"secrets": {
        k: est.env[k] for k in ("SYNAPSE_SIGNING_KEY", "SYNAPSE_MACAROON_SECRET_KEY")}}))
    try:
        helm(cluster, "upgrade", RELEASE, str(chart), "-n", RELEASE_NS, "--reuse-values",
             "-f", str(values), "--wait", "--timeout", "10m")
    finally:
        values.unlink()

    done = move(env, "synapse", "--force")  # the release's Synapse has written its tables
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-5000:]
    for step in ("check", "stop", "backup", "restore"):
        assert re.search(rf"^move: {step}: [\d.]+ s$", done.stdout, re.M), out[-3000:]
    assert re.search(r"^database:synapse: .*: verified$", done.stdout, re.M), out[-3000:]
    assert re.search(r"^volume:synapse:/data: .*: verified$", done.stdout, re.M), out[-3000:]
    down = re.search(r"^move: done; down for ([\d.]+) s \((.*)\), after the checks "
                     r"\(([\d.]+) s\)$", done.stdout, re.M)
    assert down, out[-3000:]

    # the cluster's Synapse: the same key, rows and media; Docker's stopped, its data kept
    pod = until("Synapse Ready on the cluster", lambda: next(
        (p for p in pods_of(cluster, ESTATE["synapse"], RELEASE) if ready(p)), None), 300)
    assert verify_key(exec_in(cluster, pod, "python", "-c", KEYS).stdout) == source_key
    assert psql(cluster, database, "SELECT count(*) || ':' || md5(string_agg(x::text, ',' "
                "ORDER BY x::text)) FROM manacore_moved x") == moved
    sums = exec_in(cluster, pod, "sh", "-c", "cd /data && find media_store -type f | sort | "
                   "xargs -r sha256sum").stdout
    assert {f"./{p}": d for d, p in (line.split() for line in sums.splitlines())} == media
    assert not est.engine.inspect(synapse.container_name)[0]["State"]["Running"]
    assert {k: v for k, v in volume_sums(est, "synapse").items() if "media_store" in k} == media
    mb = sum(int(x) for x in engine.docker(
        "run", "--rm", "--label", "manacore.test=1", "--mount", f"type=volume,src="
        f"{synapse.volumes[0].name},dst=/v", HELPER_IMAGE, "du", "-sm", "/v").split()[:1])
    benchmark(f"manacore move synapse ({mb} MB: {len(media)} media files and its database), "
              f"Docker engine → real nodes: Synapse down for {float(down.group(1)):.1f} s "
              f"({down.group(2)}) after {down.group(3)} s of checks")
    clean(cluster)
