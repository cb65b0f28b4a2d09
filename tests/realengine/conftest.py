"""The real-engine suites: a Docker Engine the suite owns (`scripts/engine`), images built from
Debian packages (`scripts/images`), and the Compose estate deployed on them for real.

Every test here carries the `docker_engine` marker (`pytest -m 'not docker_engine'` runs the
fast suite alone). Without an engine a test is skipped on a workstation, and **fails** under
`CI=true`: CI must never pass on a skipped proof.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from base64 import b64encode
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from catalog.model import ED25519_KEY_ID
from catalog.resolve import ResolvedEstate
from catalog.settings import ROOT, stack_file
from exports.kubernetes import WAIT_IMAGE, Concrete
from exports.migration import HELPER_IMAGE as MIGRATION_HELPER
from tests.conftest import COMPOSE_BINARY, resolved

TEST_LABEL = "manacore.test=1"  # on everything the suite creates itself (volumes, containers)


BENCHMARKS: list[str] = []  # figures printed at the end of the run (never asserted)


def benchmark(line: str) -> None:
    BENCHMARKS.append(line)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if BENCHMARKS:
        terminalreporter.section("real-engine benchmarks")
        for line in BENCHMARKS:
            terminalreporter.write_line(line)


# The order of the real-engine modules. Those needing only the Docker engine come first, so
# that on a cold machine the cluster's and the Pulumi toolchain's builds (`prebuild`) run
# while they do; then the cluster's, of which test_helm_cluster, test_backup_k3s, test_move,
# test_self_healing and test_helm_upgrade run one after another on one release of the chart
# (`release`): the install and what leaves it as it is, its backups and restores, the move of
# Synapse's data into it, the drains and the lost node, then its upgrade and uninstall.
MODULE_ORDER = ("test_backup", "test_compose_estate", "test_fresh_install", "test_phase0",
                "test_cluster", "test_helm_cluster", "test_backup_k3s", "test_move",
                "test_self_healing", "test_helm_upgrade", "test_pulumi_k3s")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    ours = [i for i in items if here in Path(i.fspath).parents]
    for item in ours:
        item.add_marker(pytest.mark.docker_engine)
    if not ours:
        return
    def rank(item: pytest.Item) -> int:
        stem = Path(item.fspath).stem
        return MODULE_ORDER.index(stem) if stem in MODULE_ORDER else len(MODULE_ORDER)
    at = items.index(ours[0])  # the real-engine modules stay where they were collected
    rest = [i for i in items if i not in ours]
    items[:] = rest[:at] + sorted(ours, key=rank) + rest[at:]  # stable: file order inside


PREBUILD: dict[str, Any] = {}  # the background build `prebuild` started: process and log
PREBUILD_STEPS = {"cluster": ROOT / "harness" / "cluster" / "build.sh",
                  "toolchain": ROOT / "scripts" / "toolchain"}


def pytest_collection_finish(session: pytest.Session) -> None:
    """On a cold machine the cluster's binaries and the Pulumi toolchain take ~20 minutes of
    Go builds: when the selected tests need them, they start in the background now, one after
    the other, while the Docker engine's modules run (MODULE_ORDER); the `cluster` and
    `toolchain` fixtures wait for theirs (`prebuilt`). Warm, both finish in seconds."""
    used = {name for item in session.items for name in getattr(item, "fixturenames", ())}
    steps = [name for name in PREBUILD_STEPS if name in used]
    if not steps or session.config.option.collectonly:
        return
    fd, log = tempfile.mkstemp(prefix="manacore-prebuild.", suffix=".log")
    script = "".join(f"{PREBUILD_STEPS[name]} >/dev/null; echo \"prebuilt {name}: exit $?\"; "
                     for name in steps)
    PREBUILD.update(log=Path(log), process=subprocess.Popen(
        ["bash", "-c", script], stdin=subprocess.DEVNULL, stdout=fd, stderr=fd,
        start_new_session=True))
    os.close(fd)


def prebuilt(name: str) -> None:
    """Waits until the background build has done step `name` (if it was started); its lines
    so far (cold build times) become benchmark lines. A failed build is not reported here: the
    harness's own call, which follows, builds again and fails with its message."""
    process, log = PREBUILD.get("process"), PREBUILD.get("log")
    if process is None or log is None:
        return
    start, done = time.monotonic(), f"prebuilt {name}: "
    while process.poll() is None and done not in log.read_text():
        time.sleep(1)
    lines = log.read_text().strip().splitlines()
    for line in lines[PREBUILD.get("reported", 0):]:
        # each build's time (the harness's timed lines), not Go's downloads nor what the
        # proxy refuses (the harness's own call, which follows, reports that)
        if line.startswith("[") and "not built:" not in line:
            benchmark(f"prebuild: {line}")
    PREBUILD["reported"] = len(lines)
    benchmark(f"prebuild: {name}: waited {time.monotonic() - start:.0f} s for it")


def pytest_sessionfinish(session: pytest.Session) -> None:
    process, log = PREBUILD.get("process"), PREBUILD.get("log")
    if process is not None and process.poll() is None:  # the tests that needed it failed early
        os.killpg(process.pid, 15)
        process.wait()
    if log is not None:
        log.unlink(missing_ok=True)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"real-engine test without its engine under CI: {reason}")
    pytest.skip(reason)


@dataclass
class Engine:
    """The suite's Docker Engine: `docker` and `compose` calls against its DOCKER_HOST."""

    host: str
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.env = {**os.environ, "DOCKER_HOST": self.host}

    def run(self, *args: str, check: bool = True, timeout: float = 600,
            cwd: Path | None = None, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                              env={**self.env, **(env or {})}, cwd=cwd)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args[:4])} … exited {proc.returncode}:\n"
                                 f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    def docker(self, *args: str, check: bool = True, timeout: float = 600) -> str:
        return self.run("docker", *args, check=check, timeout=timeout).stdout

    def inspect(self, *names: str, kind: str = "container") -> list[dict[str, Any]]:
        return json.loads(self.docker(kind, "inspect", *names))

    def exists(self, name: str, kind: str = "volume") -> bool:
        return self.run("docker", kind, "inspect", name, check=False).returncode == 0

    def volume(self, name: str) -> None:
        """A volume of the suite's own (labelled), created empty."""
        self.docker("volume", "create", "--label", TEST_LABEL, name)

    def remove_volumes(self, *names: str, owned: bool = False) -> None:
        """Removes volumes the suite created (labelled, or `owned`: made by a script the suite
        ran) — never another one."""
        for name in names:
            if self.exists(name):
                labels = self.inspect(name, kind="volume")[0].get("Labels") or {}
                assert owned or labels.get("manacore.test") == "1" or labels.get(
                    "com.docker.compose.project") == "manacore", f"{name} is not the suite's"
                self.docker("volume", "rm", "-f", name)


@contextmanager
def harness(name: str, timeout: float) -> Iterator[str]:
    """`scripts/NAME up` (idempotent; each of its stages, with its time, becomes a benchmark
    line) → the last line it prints; `scripts/NAME down` afterwards only if this session
    started it. The one way the suite starts the harness's engine and cluster."""
    script = ROOT / "scripts" / name
    running = subprocess.run([script, "status"], capture_output=True).returncode == 0
    proc = subprocess.run([script, "up"], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not proc.stdout.strip():
        _unavailable(f"scripts/{name} up failed:\n{proc.stderr[-3000:]}")
    for line in proc.stderr.strip().splitlines():
        benchmark(line)
    try:
        yield proc.stdout.strip().splitlines()[-1]
    finally:
        if not running:
            subprocess.run([script, "down"], capture_output=True, timeout=600)


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    """The suite's Docker Engine (`scripts/engine`)."""
    with harness("engine", 1200) as host:
        yield Engine(host)


@dataclass
class Cluster:
    """The suite's Kubernetes cluster (`scripts/cluster`): `kubectl` against its kubeconfig."""

    kubeconfig: Path

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(ROOT / ".tools" / "bin" / "kubectl"), "--kubeconfig",
                               str(self.kubeconfig), *args], input=input, capture_output=True,
                              text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args[:4])} … exited {proc.returncode}:\n"
                                 f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    def get(self, *args: str) -> dict[str, Any]:
        """`kubectl get … -o json`, parsed."""
        return json.loads(self.kubectl("get", "-o", "json", *args).stdout)

    def items(self, *args: str) -> list[dict[str, Any]]:
        """The objects of `kubectl get … -o json`."""
        return self.get(*args)["items"]

    @property
    def context(self) -> str:
        """The kubeconfig's context: what a stack's `kubeContext` names."""
        return self.kubectl("config", "current-context").stdout.strip()


@pytest.fixture(scope="session")
def cluster(engine: Engine) -> Iterator[Cluster]:
    """The suite's Kubernetes cluster (`scripts/cluster`): a real control plane, real nodes
    (their images come from the engine, which therefore outlives it) and simulated ones; its
    data deleted at the end if this session started it. A cold first run builds the
    binaries (minutes)."""
    prebuilt("cluster")
    with harness("cluster", 3600) as kubeconfig:
        yield Cluster(Path(kubeconfig))


@pytest.fixture(scope="session")
def node_images(engine: Engine, cluster: Cluster,
                tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Every image the k3s estate runs, built by the harness as for the Compose estate (the
    same references: one registry and tag on both stacks) and loaded into every real node,
    where pods find them without a registry (pull policy IfNotPresent). The references."""
    folder = tmp_path_factory.mktemp("node-images")
    engine.run(str(ROOT / ".venv" / "bin" / "manacore"), "render", "compose", "--stack",
               "macmini", "--out", str(folder))
    refs = sorted({s.image for s in resolved("k3s").services if s.image} | {WAIT_IMAGE})
    built = engine.run(str(ROOT / "scripts" / "images"), str(folder / "compose.yaml"),
                       WAIT_IMAGE, timeout=3000)
    benchmark(built.stderr.strip().splitlines()[-1])
    with benchmark_time(f"images loaded into the real nodes ({len(refs)} references)"):
        engine.run(str(ROOT / "scripts" / "cluster"), "images", *refs, timeout=1800)
    return refs


REAL_NODE = re.compile(r"node-\d+")  # harness/cluster/env.sh: real nodes node-1 … node-N


@dataclass
class Nodes:
    """The real nodes a test may drain or lose (`scripts/cluster node …`)."""

    cluster: Cluster
    names: tuple[str, ...]

    def _node(self, verb: str, name: str) -> None:
        proc = subprocess.run([ROOT / "scripts" / "cluster", "node", verb,
                               name.removeprefix("node-")], capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, f"scripts/cluster node {verb} {name} exited " \
            f"{proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"

    def stop(self, name: str) -> None:
        """The node dies at once, as when its power goes: every process of it, its pods too,
        SIGKILLed; its Node stops answering."""
        self._node("kill", name)

    def start(self, name: str) -> None:
        """The node boots again (its disk kept) and rejoins; a no-op on a running one."""
        self._node("up", name)


@pytest.fixture(scope="module")
def nodes(cluster: Cluster) -> Iterator[Nodes]:
    """The real nodes of the self-healing tests; afterwards every one runs and is schedulable
    again."""
    names = tuple(sorted(n["metadata"]["name"] for n in cluster.items("nodes")
                         if REAL_NODE.fullmatch(n["metadata"]["name"])))
    if len(names) < 2:
        _unavailable(f"real nodes: {names}; a node's loss needs two at least")
    found = Nodes(cluster, names)
    yield found
    for name in names:
        found.start(name)
        cluster.kubectl("uncordon", name)


HELM = ROOT / ".venv" / "bin" / "helm"
# the chart's release in the suite's cluster, named like the k3s stack's instance (the
# `app.kubernetes.io/instance` label its objects and selectors carry): the release's objects
# and the stack's are compared field by field (test_pulumi_k3s)
RELEASE = Concrete(resolved("k3s"), secret=str).instance
RELEASE_NS = "manacore-release"  # where helm keeps its record
# the database the release's marker row goes to (test_helm_cluster) and is read from after the
# upgrades (test_helm_upgrade): one the backups hold, so the row also comes through PostgreSQL's
# recovery from its backup onto another node (test_backup_k3s)
MARKER_DATABASE = resolved("k3s").databases[0].name


@pytest.fixture(scope="session")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart as `manacore render helm --stack k3s` writes it."""
    out = tmp_path_factory.mktemp("chart")
    subprocess.run([ROOT / ".venv" / "bin" / "manacore", "render", "helm", "--stack", "k3s",
                    "--out", str(out)], check=True, capture_output=True)
    return out / "manacore"


# the schedule of the backups the suite deploys: never during a test (the hourly default would
# fire at the full hour); the tests take their backups themselves
NEVER_DURING_A_TEST = "0 0 1 1 *"
REPOSITORY_PASSWORD = "manacore-test-repository-password"


@contextmanager
def s3_server(*where: str) -> Iterator[dict[str, Any]]:
    """`scripts/s3 up` (versitygw): its keys, its addresses by who reaches them (`containers`,
    `nodes`; `endpoint`: this host's), which must include `where`; stopped at the end if this
    call started it."""
    script = ROOT / "scripts" / "s3"
    running = subprocess.run([script, "status"], capture_output=True).returncode == 0
    proc = subprocess.run([script, "up"], capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        _unavailable(f"scripts/s3 up failed:\n{proc.stderr[-3000:]}")
    lines = proc.stdout.strip().splitlines()
    found: dict[str, Any] = dict(line.split("=", 1) for line in lines[:-1])
    found["endpoint"] = lines[-1]
    if not set(where) <= set(found):
        _unavailable(f"the S3 server listens on {lines}: not where {', '.join(where)} reach "
                     "this host (start the engine, and the cluster for nodes, first)")
    try:
        yield found
    finally:
        if not running:
            subprocess.run([script, "down"], capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def repository(cluster: Cluster) -> Iterator[dict[str, Any]]:
    """The S3 server of the backups, listening where the cluster's pods reach this host (the
    `nodes=` line) and where containers do (`containers=`). "backup": the stack setting (and
    chart values) pointing the estate's backups at a bucket of its own there."""
    with s3_server("nodes", "containers") as found:
        found["backup"] = {"s3Endpoint": found["nodes"], "bucket": "manacore-k3s",
                           "schedule": NEVER_DURING_A_TEST}
        yield found


@pytest.fixture(scope="session")
def release(cluster: Cluster, node_images: list[str], chart: Path, repository: dict[str, Any],
            tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The chart installed once with its default values, every workload Ready on real nodes,
    for test_helm_cluster, test_backup_k3s, test_move, test_self_healing and test_helm_upgrade
    (MODULE_ORDER); its backups go to the suite's S3 server (`values`: the arguments every
    install and upgrade of it passes). What was true right then — each pod's restarts, every
    object as the API server held it (`normalised`, which test_pulumi_k3s compares with the
    stack's) — and what tests disturb on purpose ("changed": service ids)."""
    from tests.realengine.pods import instance_pods, key, restarts
    from tests.realengine.release import install, normalised

    clear_cluster(cluster)
    path = tmp_path_factory.mktemp("release") / "values.yaml"
    path.write_text(yaml.safe_dump({"backup": repository["backup"], "secrets": {
        "BACKUP_S3_ACCESS_KEY": repository["access_key"],
        "BACKUP_S3_SECRET_KEY": repository["secret_key"],
        "BACKUP_REPOSITORY_PASSWORD": REPOSITORY_PASSWORD}}))
    values = ("-f", str(path))
    took = install(cluster, chart, *values)
    benchmark(f"helm install --wait on real nodes: every pod Ready in {took:.0f} s")
    pods = instance_pods(cluster, RELEASE)
    return {"installed": time.monotonic(), "pods": pods, "objects": normalised(cluster),
            "restarts": {key(p): restarts(p) for p in pods}, "changed": set(),
            "values": values}


WORKLOADS = "deployments,statefulsets,daemonsets"


def not_ready(items: list[dict[str, Any]]) -> list[str]:
    """The workloads among `items` with fewer Ready pods than they want (or wanting none)."""
    bad = []
    for item in items:
        spec, status = item["spec"], item.get("status") or {}
        want = spec["replicas"] if "replicas" in spec else status.get("desiredNumberScheduled")
        have = status.get("readyReplicas", status.get("numberReady", 0)) or 0
        if not want or have < want:
            bad.append(f"{item['kind']} {item['metadata'].get('namespace')}/"
                       f"{item['metadata']['name']}: {have}/{want} ready")
    return bad


def clear_cluster(cluster: Cluster) -> None:
    """No release of the chart and none of the estate's namespaces (with all they hold): what
    the chart and the k3s stack install starts from."""
    helm = [str(HELM), "--kubeconfig", str(cluster.kubeconfig), "-n", RELEASE_NS]
    releases = subprocess.run([*helm, "list", "-q"], capture_output=True, text=True,
                              timeout=120).stdout.split()
    for release in releases:
        subprocess.run([*helm, "uninstall", release, "--wait"], capture_output=True,
                       timeout=600)
    names = [n["metadata"]["name"] for n in cluster.items("namespaces")
             if n["metadata"]["name"].startswith("manacore")]
    if names:
        cluster.kubectl("delete", "namespace", "--wait=true", "--timeout=300s", *names,
                        timeout=330)


def random_env(estate: ResolvedEstate) -> dict[str, str]:
    """A value for every secret of the estate, as a user fills `.env` (random, fresh)."""
    values = {}
    for s in estate.secrets:
        if s.kind == "ed25519":  # Synapse's key line: algorithm, key id, unpadded base64 seed
            seed = b64encode(secrets.token_bytes(32)).decode().rstrip("=")
            values[s.name] = f"ed25519 {ED25519_KEY_ID} {seed}"
        elif s.kind == "hex32":  # Garage's RPC secret: exactly 32 bytes
            values[s.name] = secrets.token_hex(32)
        else:
            values[s.name] = secrets.token_hex(16)
    return values


def stack_copy(tmp: Path, stack: str = "macmini", **overrides: Any) -> Path:
    """A copy of a stack file with `manacore:` overrides (e.g. adoptLegacy)."""
    data = yaml.safe_load(stack_file(stack).read_text())
    for key, value in overrides.items():
        data["config"][f"manacore:{key}"] = value
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(data))
    return tmp


@dataclass
class Estate:
    """A rendered Compose estate on the suite's engine."""

    engine: Engine
    folder: Path
    resolved: ResolvedEstate
    env: dict[str, str]
    events: list[dict[str, Any]] = field(default_factory=list)  # of the latest `up`

    @property
    def model(self) -> dict[str, Any]:
        return yaml.safe_load((self.folder / "compose.yaml").read_text())

    def compose(self, *args: str, check: bool = True, timeout: float = 900
                ) -> subprocess.CompletedProcess[str]:
        return self.engine.run(str(COMPOSE_BINARY), "--project-directory", str(self.folder),
                               "-f", str(self.folder / "compose.yaml"), *args,
                               check=check, timeout=timeout)

    def up(self) -> float:
        """`docker compose up -d --wait`; the seconds until every container was healthy. On
        failure the unhealthy containers are named with their last log lines."""
        # the engine keeps only its last 256 events: record them live while the estate starts
        # (into a file: a pipe would fill up and stall the stream)
        with tempfile.TemporaryFile("w+") as log:
            watch = subprocess.Popen(["docker", "events", "--filter", "type=container",
                                      "--format", "{{json .}}"], stdout=log,
                                     env=self.engine.env)
            start = time.monotonic()
            try:
                proc = self.compose("up", "-d", "--wait", "--wait-timeout", "300", check=False)
            finally:
                took = time.monotonic() - start
                time.sleep(1)
                watch.terminate()
                watch.wait()
                log.seek(0)
                self.events = [json.loads(line) for line in log if line.strip()]
        if proc.returncode != 0:
            raise AssertionError(f"compose up failed:\n{proc.stderr[-2500:]}\n{self.diagnose()}")
        return took

    def diagnose(self) -> str:
        lines = []
        for c in self.engine.inspect(*self.container_names()):
            health = (c["State"].get("Health") or {}).get("Status", c["State"]["Status"])
            if c["RestartCount"]:
                health += f", restarted {c['RestartCount']} times"
            if health not in ("healthy", "running") or c["State"]["Status"] != "running":
                logs = self.engine.run("docker", "logs", "--tail", "8", c["Name"].lstrip("/"),
                                       check=False)
                lines.append(f"{c['Name'].lstrip('/')}: {health}\n{logs.stdout}{logs.stderr}")
        return "\n".join(lines)

    def container_names(self) -> list[str]:
        return [s["container_name"] for s in self.model["services"].values()
                if s.get("restart") != "no"]

    def legacy_volumes(self) -> list[str]:
        """The legacy volumes the estate mounts (external in the Compose file)."""
        return sorted(n for n, v in (self.model.get("volumes") or {}).items()
                      if v.get("external"))

    def seed_legacy_volumes(self) -> None:
        """The legacy volumes the Mac Mini has, here empty (an earlier run's are removed first,
        so PostgreSQL's init runs), owned as the old containers left them (Synapse: its
        991:991). Needs the migration scripts' helper image (render's extra_images)."""
        self.engine.remove_volumes(*self.legacy_volumes())
        for name in self.legacy_volumes():
            self.engine.volume(name)
        for s in self.resolved.containers:
            for v in s.volumes:
                if not v.migrated and s.runs_as:
                    self.engine.docker("run", "--rm", "--label", TEST_LABEL, "-v",
                                       f"{v.name}:/v", MIGRATION_HELPER, "chown", s.runs_as,
                                       "/v")


def render(engine: Engine, resolved: ResolvedEstate, folder: Path,
           stacks: Path | None = None, extra_images: tuple[str, ...] = ()) -> Estate:
    """`manacore render compose` into `folder`, a random `.env`, and every image built."""
    if folder.exists():
        shutil.rmtree(folder)
    env = {"MANACORE_STACK_DIR": str(stacks)} if stacks else {}
    engine.run(str(ROOT / ".venv" / "bin" / "manacore"), "render", "compose", "--stack",
               "macmini", "--out", str(folder), env=env)
    values = random_env(resolved)
    (folder / ".env").write_text("".join(f"{k}={v}\n" for k, v in sorted(values.items())))
    built = engine.run(str(ROOT / "scripts" / "images"), str(folder / "compose.yaml"),
                       *extra_images, timeout=3000)
    benchmark(built.stderr.strip().splitlines()[-1])
    return Estate(engine, folder, resolved, values)


def clear_project(engine: Engine) -> None:
    """Removes what an earlier run of the estate left on the suite's engine: its containers and
    network (compose project `manacore`), never a volume it did not label."""
    ids = engine.docker("ps", "-aq", "--filter", "label=com.docker.compose.project=manacore")
    if ids.split():
        engine.docker("rm", "-f", *ids.split())
    ids = engine.docker("ps", "-aq", "--filter", "label=" + TEST_LABEL)
    if ids.split():
        engine.docker("rm", "-f", *ids.split())
    engine.run("docker", "network", "rm", "manacore", check=False)


@contextmanager
def benchmark_time(what: str) -> Iterator[None]:
    """Times the block and prints it among the real-engine benchmarks (never asserted)."""
    start = time.monotonic()
    yield
    benchmark(f"{what}: {time.monotonic() - start:.1f} s")


@pytest.fixture(scope="session")
def toolchain() -> Path:
    """`scripts/toolchain`: the real Pulumi engine, language host and provider plugins in
    .tools/bin (built once per version, then reused)."""
    prebuilt("toolchain")
    proc = subprocess.run([ROOT / "scripts" / "toolchain"], capture_output=True, text=True,
                          timeout=3000)
    if proc.returncode != 0 or not proc.stdout.strip():
        _unavailable(f"scripts/toolchain failed:\n{proc.stderr[-3000:]}")
    for line in proc.stderr.strip().splitlines():  # cold build times, refused modules
        benchmark(line)
    return Path(proc.stdout.strip().splitlines()[-1])
