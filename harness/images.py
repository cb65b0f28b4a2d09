"""Builds and tags every image a Compose file references, without a registry.

Each reference gets the closest real thing this machine can build from a registry: the real
server wherever one can be had (`SERVERS`) — at the image's own tag where its project publishes
to the Go module proxy, crates.io or PyPI (node-exporter, pushgateway, redis_exporter, Garage,
Synapse), else Debian's package (PostgreSQL 17 + pgvector for `pgvector/…`/`postgres:…`, Redis,
postgres-exporter, VictoriaMetrics, rclone) — each honouring its upstream image's entrypoint
contract; a MinIO stand-in (the estate's Garage behind MinIO's entrypoint) for the legacy
`minio/minio` of Phase 0's object copy, MinIO itself being on no registry; BusyBox for
`busybox:…`/`alpine:…` (the one-shot helpers); and the wiring stand-in (`harness/standin`) for
every other image, told which ports its health check and ports use and which hosts are its hard
dependencies. An image is rebuilt only when its recipe changes: each carries the hash of its
recipe as a label.

    python harness/images.py COMPOSE_FILE|- [IMAGE…]   (DOCKER_HOST: the engine to build on)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import yaml

HARNESS = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("MANACORE_CACHE")
             or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "manacore")
LABEL = "manacore.harness"  # value: the recipe hash; every image the harness builds has it
PACKAGES = {  # recipe → Debian trixie packages of its root filesystem
    # libnss-wrapper: initdb as a UID without a passwd entry (upstream installs it too)
    "postgres": ("postgresql-17", "postgresql-17-pgvector", "libnss-wrapper"),
    "redis": ("redis-server",),
    # busybox: sh and wget, curl: what health checks of either image family call
    "standin": ("busybox", "ca-certificates", "curl"),
    # + matrix-synapse from PyPI at the image's tag (pip_requirements)
    "synapse": ("python3", "python3-venv", "python3-psycopg2", "busybox", "curl",
                "ca-certificates"),
}


# Our own images with a Dockerfile in the project (images/NAME): built here from the same file,
# on a root filesystem holding the packages its `ARG PACKAGES="…"` names (containers here have
# no route to the archive, so its apt-get step finds them installed and does nothing).
OWN_IMAGES = HARNESS.parent / "images"


def dockerfile_packages(folder: Path) -> tuple[str, ...]:
    found = re.search(r'^ARG PACKAGES="([^"]+)"', (folder / "Dockerfile").read_text(), re.M)
    if found is None:
        sys.exit(f"{folder}/Dockerfile: no ARG PACKAGES=\"…\" line")
    return tuple(found.group(1).split())


for _own in sorted(OWN_IMAGES.glob("*/Dockerfile")):
    PACKAGES[_own.parent.name] = dockerfile_packages(_own.parent)


def pip_requirements(recipe: str, ref: str) -> tuple[str, ...]:
    """What PyPI adds to a recipe's root filesystem, pinned by the image's tag."""
    if recipe == "synapse":
        return (f"matrix-synapse=={ref.rsplit(':', 1)[1].removeprefix('v')}",)
    return ()


class Server(NamedTuple):
    """A real server in place of its upstream image, at the upstream entrypoint's path and user
    (the Compose `command` gives the arguments). `source` says where it comes from:
    `go:<package>` (built from the Go module proxy at the image's tag: the pinned release),
    `crate:<name>` (crates.io, the image's tag), or `debian:<package>[/<suite>]` (Debian's
    build, the nearest version there: `why` says why not the pinned one)."""

    source: str
    binary: str  # where the upstream image has it
    user: str
    upstream: str  # where the upstream image's entrypoint and user were read
    why: str = ""  # for a Debian build: why the pinned release cannot be built here
    cmd: tuple[str, ...] = ()  # the upstream image has no ENTRYPOINT but this CMD (Garage)
    features: tuple[str, ...] = ()  # a crate's cargo features: the ones the estate uses


SERVERS = {  # last part of the image repository → the server playing it
    "postgres-exporter": Server("debian:prometheus-postgres-exporter/sid",
                                "/bin/postgres_exporter", "nobody",
                                "prometheus-community/postgres_exporter Dockerfile: "
                                "ENTRYPOINT /bin/postgres_exporter, USER nobody",
                                "the Go module proxy refuses the module"),
    "redis_exporter": Server("go:github.com/oliver006/redis_exporter", "/redis_exporter",
                             "59000:59000", "oliver006/redis_exporter Dockerfile: ENTRYPOINT "
                             "/redis_exporter, USER 59000:59000"),
    "node-exporter": Server("go:github.com/prometheus/node_exporter", "/bin/node_exporter",
                            "65534", "prometheus/node_exporter Dockerfile: ENTRYPOINT "
                            "/bin/node_exporter, USER nobody"),
    "pushgateway": Server("go:github.com/prometheus/pushgateway", "/bin/pushgateway", "65534",
                          "prometheus/pushgateway Dockerfile: ENTRYPOINT /bin/pushgateway, "
                          "USER 65534"),
    "victoria-metrics": Server("debian:victoria-metrics/sid", "/victoria-metrics-prod", "root",
                               "VictoriaMetrics app/victoria-metrics/deployment/Dockerfile: "
                               "ENTRYPOINT /victoria-metrics-prod, no USER",
                               "its module needs Go 1.27 and a replace directive, which "
                               "go install refuses"),
    "garage": Server("crate:garage", "/garage", "root",
                     "Garage's Dockerfile: FROM scratch, /garage, no ENTRYPOINT, CMD "
                     "[/garage, server], no USER", cmd=("/garage", "server"),
                     # the estate's garage.toml: LMDB metadata, the admin API's /metrics
                     # (catalog/configs.py); sqlite and K2V, default features, go unused
                     features=("bundled-libs", "lmdb", "metrics")),
    "rclone": Server("debian:rclone/sid", "/usr/local/bin/rclone", "root",
                     "rclone's Dockerfile: FROM alpine, ENTRYPOINT rclone, WORKDIR /data",
                     "its module (270 dependencies) builds for minutes; Debian sid's is one "
                     "minor behind"),
}
# The legacy object store: MinIO is on no registry here (the Go module proxy refuses it), so a
# single-node Garage plays it, honouring the MinIO image's contract (harness/images/minio).
LEGACY_S3 = "minio"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def docker(*args: str, stdin: bytes | None = None) -> str:
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}  # the legacy builder: no buildx here
    proc = subprocess.run(["docker", *args], input=stdin, capture_output=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"docker {' '.join(args[:3])}…: {proc.stderr.decode()[-2000:]}")
    return proc.stdout.decode()


def existing(ref: str) -> str | None:
    """The recipe hash of an image already tagged `ref`, if any."""
    proc = subprocess.run(["docker", "image", "inspect", "--format",
                           f'{{{{index .Config.Labels "{LABEL}"}}}}', ref],
                          capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()[:16]


def files_digest(folder: Path) -> str:
    return digest(*(f"{p.relative_to(folder)}:{p.read_bytes().hex()}"
                    for p in sorted(folder.rglob("*")) if p.is_file()))


def tag_version(ref: str) -> str:
    """The release an image reference pins (v1.12.1 → 1.12.1; the tag without a variant)."""
    return ref.rsplit(":", 1)[1].removeprefix("v").split("-")[0]


def server_version(ref: str) -> tuple[str, str]:
    """What plays an image (`go:…@v1.2.3`, `crate:…@1.2.3`, `pypi:…==1.2.3`, `debian:…`) and
    whether it is the pinned release itself ("pinned") or the nearest build ("nearest")."""
    recipe = recipe_of(ref)
    if recipe == "synapse":
        return f"pypi:{pip_requirements(recipe, ref)[0]}", "pinned"
    server = SERVERS.get(recipe)
    if server is None or server.source.startswith("debian:"):
        return (server.source if server else recipe), "nearest"
    kind, name = server.source.split(":", 1)
    return f"{kind}:{name}@{'v' if kind == 'go' else ''}{tag_version(ref)}", "pinned"


def rootfs_image(recipe: str, pip: tuple[str, ...] = ()) -> str:
    """A base image holding trixie + the recipe's packages (debootstrap, chroot, import)."""
    server = SERVERS.get(recipe)
    debian = server.source.removeprefix("debian:") if server and \
        server.source.startswith("debian:") else None
    packages = PACKAGES.get(recipe) or ((debian, "busybox") if debian else ("busybox",))
    ref = f"manacore-harness/trixie-{recipe.replace('_', '-')}:{digest(*packages, *pip)}"
    if existing(ref) is not None:
        return ref
    start = time.monotonic()
    tar = subprocess.run([str(HARNESS / "rootfs.sh"), *packages, *(("--", *pip) if pip else ())],
                         check=True, capture_output=True, text=True).stdout.strip()
    with open(tar, "rb") as stream:
        subprocess.run(["docker", "import", "--change", f"LABEL {LABEL}=base", "-", ref],
                       stdin=stream, check=True, capture_output=True)
    log(f"base {ref}: {time.monotonic() - start:.0f} s")
    return ref


def standin_binary() -> Path:
    """The stand-in, built with Go once per source version (static: runs on any base)."""
    src = HARNESS / "standin"
    out = CACHE / "standin" / files_digest(src) / "standin"
    if not out.exists():
        start = time.monotonic()
        out.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"}
        subprocess.run(["go", "build", "-trimpath", "-ldflags=-s -w", "-o", str(out), "."],
                       cwd=src, env=env, check=True)
        log(f"standin binary: {time.monotonic() - start:.0f} s")
    return out


def go_server(module: str, version: str) -> Path:
    """A Go server built from the module proxy at a release, static, once per version."""
    out = CACHE / "go-servers" / module.replace("/", "+") / version
    binary = out / module.rsplit("/", 1)[-1]
    if not binary.exists():
        start = time.monotonic()
        out.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "CGO_ENABLED": "0", "GOBIN": str(out), "GOFLAGS": "-mod=mod"}
        subprocess.run(["go", "install", "-trimpath", "-ldflags=-s -w", f"{module}@{version}"],
                       env=env, check=True, cwd=out)
        log(f"go install {module}@{version}: {time.monotonic() - start:.0f} s")
    return binary


def crate_server(name: str, version: str, features: tuple[str, ...] = ()) -> Path:
    """A Rust server built from crates.io at a release with its own Cargo.lock, once per
    version and feature set (CARGO_TARGET_DIR in the cache: a new version rebuilds only what
    changed). Optimised at level 1: the tests need its behaviour, not its speed, and a cold
    machine builds it in half the time of level 3 (a 2-core machine: the cold run's longest
    build)."""
    key = f"{name}-{version}" + (f"-{'+'.join(sorted(features))}" if features else "")
    root = CACHE / "crates" / key
    binary = root / "bin" / name
    if not binary.exists():
        start = time.monotonic()
        env = {**os.environ, "CARGO_TARGET_DIR": str(CACHE / "crates" / "target"),
               "CARGO_PROFILE_RELEASE_OPT_LEVEL": "1"}
        chosen = ("--no-default-features", "--features", ",".join(features)) if features else ()
        subprocess.run(["cargo", "install", "--locked", "--quiet", "--root", str(root),
                        *chosen, "--version", version, name], env=env, check=True)
        log(f"cargo install {name}@{version}: {time.monotonic() - start:.0f} s")
    return binary


def recipe_of(ref: str) -> str:
    name = ref.rsplit(":", 1)[0].split("@")[0]
    last = name.rsplit("/", 1)[-1]
    if last == LEGACY_S3:
        return LEGACY_S3
    if last in ("postgres", "pgvector"):
        return "postgres"
    if last == "redis":
        return "redis"
    if last in ("busybox", "alpine"):
        return "busybox"
    if last in SERVERS:
        return last
    if last == "synapse":
        return last
    if last.startswith("manacore-") and (OWN_IMAGES / last.removeprefix("manacore-")).is_dir():
        return last.removeprefix("manacore-")
    return "standin"


PORT_IN_TEXT = re.compile(r"(?:https?://)?(?:127\.0\.0\.1|localhost|0\.0\.0\.0)?:(\d{2,5})\b")


def listen_ports(service: dict) -> list[int]:
    """Every port a service must answer on: its container ports and what its health check
    (and command, e.g. a metrics address) names."""
    ports: set[int] = set()
    for p in service.get("ports") or ():
        text = p if isinstance(p, str) else str(p.get("target", ""))
        ports.add(int(str(text).rsplit(":", 1)[-1].split("/")[0]))
    for p in service.get("expose") or ():
        ports.add(int(str(p).split("/")[0]))
    test = (service.get("healthcheck") or {}).get("test") or []
    words = [*(test if isinstance(test, list) else [test]), *(service.get("command") or [])]
    for word in words:
        ports.update(int(m) for m in PORT_IN_TEXT.findall(str(word)))
    env = service.get("environment") or {}
    if isinstance(env, dict) and str(env.get("PORT", "")).isdigit():
        ports.add(int(env["PORT"]))
    return sorted(ports)


SHELL_TOOLS = {"sh", "wget", "curl", "CMD-SHELL", "CMD", "NONE"}  # real in the stand-in image


def probe_binaries(service: dict) -> list[str]:
    """Executables an exec-form health check calls that the stand-in must answer as
    (e.g. `mc`, `cloudflared`, `/watchtower`): each becomes a link to the stand-in."""
    test = (service.get("healthcheck") or {}).get("test") or []
    if not isinstance(test, list) or not test or test[0] != "CMD" or len(test) < 2:
        return []
    return [] if test[1] in SHELL_TOOLS else [test[1]]


def hard_hosts(service: dict, services: dict[str, dict]) -> list[str]:
    """The hosts of the dependencies a service waits for to be healthy: their container names
    (Docker) and their Compose service names, which are their ids and so their Kubernetes
    Service names (the first label of the cluster DNS name the same image is given there)."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return []
    hard = [d for d, how in deps.items() if (how or {}).get("condition") == "service_healthy"]
    return sorted({*hard, *(services[d].get("container_name", d) for d in hard)})


def standin_context(ctx: Path, base: str, binary: Path, service_name: str,
                    service: dict, services: dict[str, dict]) -> str:
    shutil.copy(binary, ctx / "standin")
    (ctx / "standin.json").write_text(json.dumps(
        {"service": service_name, "listen": listen_ports(service),
         "hard_hosts": hard_hosts(service, services),
         "self": sorted({service_name, service.get("container_name", service_name)})},
        sort_keys=True))
    links = []
    for exe in probe_binaries(service):
        path = exe if exe.startswith("/") else f"/usr/local/bin/{exe}"
        links.append(f"mkdir -p {shlex.quote(str(Path(path).parent))} && "
                     f"ln -sf /usr/local/bin/standin {shlex.quote(path)}")
    run = f"RUN {' && '.join(links)}\n" if links else ""
    (ctx / "Dockerfile").write_text(
        f"FROM {base}\nCOPY standin /usr/local/bin/standin\nCOPY standin.json /etc/standin.json\n"
        # busybox provides wget (and the usual tools) for CMD-SHELL health checks
        "RUN for t in wget; do [ -e /usr/bin/$t ] || ln -s /bin/busybox /usr/bin/$t; done\n"
        f"{run}ENTRYPOINT [\"/usr/local/bin/standin\"]\nSTOPSIGNAL SIGTERM\n")
    return digest(base, (ctx / "Dockerfile").read_text(), (ctx / "standin.json").read_text(),
                  binary.read_bytes())


def static_image(ref: str, binary: Path, *changes: str, tree: dict[str, str] | None = None) -> str:
    """`ref` as a single static binary at /`binary.name` (plus files `tree`: path → text), built
    with `docker import` (no registry, no base image); rebuilt when the binary changes."""
    key = digest(binary.read_bytes(), *changes, json.dumps(tree or {}, sort_keys=True))
    if existing(ref) == key:
        return ref
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copy(binary, root / binary.name)
        for path, text in (tree or {}).items():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(text)
        archive = subprocess.run(["tar", "-C", tmp, "-c", "."], check=True,
                                 capture_output=True).stdout
    args = [arg for change in (f"LABEL {LABEL}={key}", *changes) for arg in ("--change", change)]
    docker("import", *args, "-", ref, stdin=archive)
    return ref


TOOLS = HARNESS.parent / ".tools" / "bin"  # harness/cluster/build.sh's binaries


def busybox_base() -> str:
    """BusyBox as the official image builds it (harness/busybox.sh: upstream's source, make
    defconfig, every applet linked) with the buildroot skeleton's root and nobody users: what
    the one-shot helpers, the init containers and local-path's helper pods run."""
    ref = "manacore-harness/busybox:defconfig"
    binary = Path(subprocess.run([str(HARNESS / "busybox.sh")], check=True, capture_output=True,
                                 text=True).stdout.strip())
    key = digest(binary.read_bytes(), "defconfig-2")
    if existing(ref) == key:
        return ref
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        (tree / "bin").mkdir(parents=True)
        shutil.copy(binary, tree / "bin" / "busybox")
        applets = subprocess.run([str(tree / "bin" / "busybox"), "--list"], check=True,
                                 capture_output=True, text=True).stdout.split()
        for a in applets:
            if a != "busybox":
                (tree / "bin" / a).symlink_to("busybox")
        (tree / "usr" / "bin").mkdir(parents=True)
        (tree / "usr" / "bin" / "env").symlink_to("../../bin/env")
        for d in ("tmp", "etc", "root", "home"):
            (tree / d).mkdir()
        (tree / "tmp").chmod(0o1777)
        (tree / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                             "nobody:x:65534:65534:nobody:/home:/bin/false\n")
        (tree / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
        archive = subprocess.run(["tar", "-C", str(tree), "-c", "."], check=True,
                                 capture_output=True).stdout
    docker("import", "--change", f"LABEL {LABEL}={key}", "--change", 'CMD ["sh"]',
           "--change", "ENV PATH=/bin:/usr/bin", "-", ref, stdin=archive)
    return ref


def cluster_image(ref: str) -> bool:
    """The test cluster's own images (harness/cluster/env.sh): the pod sandbox (pause) and the
    cluster DNS (CoreDNS, as its upstream image: the binary alone, port 53)."""
    name = ref.rsplit(":", 1)[0]
    if name == "registry.k8s.io/pause":
        static_image(ref, TOOLS / "pause", 'ENTRYPOINT ["/pause"]')
    elif name == "manacore-harness/coredns":
        static_image(ref, TOOLS / "coredns", 'ENTRYPOINT ["/coredns"]', "EXPOSE 53 53/udp")
    elif name == "manacore-harness/busybox":
        busybox_base()
    else:
        return False
    return True


def server_context(ctx: Path, recipe: str, ref: str) -> tuple[str, str]:
    """The build context of a real server (`SERVERS`): its base and the recipe's hash."""
    ctx.mkdir(parents=True, exist_ok=True)
    server = SERVERS[recipe]
    kind, name = server.source.split(":", 1)
    lines = [f"# {server.upstream}"]
    if kind == "debian":
        base = rootfs_image(recipe)
        package = name.split("/")[0]
        found = f"/usr/bin/{package}"
        lines.append(f"RUN mkdir -p {Path(server.binary).parent} && "
                     f"ln -sf {found} {server.binary}")
        payload = b""
    else:
        binary = go_server(name, f"v{tag_version(ref)}") if kind == "go" else \
            crate_server(name, tag_version(ref), server.features)
        # Go servers are static: the busybox base is what the Prometheus images use; a crate
        # links glibc: trixie's minimal root
        base = busybox_base() if kind == "go" else rootfs_image(recipe)
        shutil.copy(binary, ctx / "server")
        lines.append(f"COPY server {server.binary}")
        payload = binary.read_bytes()
    (ctx / "Dockerfile").write_text("\n".join([
        f"FROM {base}", *lines,
        # the upstream images are busybox-based: sh and wget for their health checks
        "RUN command -v wget >/dev/null || ln -s /bin/busybox /usr/bin/wget",
        f"USER {server.user}",
        f"CMD {json.dumps(list(server.cmd))}" if server.cmd else
        f'ENTRYPOINT ["{server.binary}"]', ""]))
    return base, digest(base, (ctx / "Dockerfile").read_text(), payload)


def build(ref: str, recipe: str, service_name: str, service: dict,
          services: dict[str, dict]) -> bool:
    """Builds `ref` unless an image with the same recipe hash has it; True when built."""
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Path(tmp)
        if recipe == "standin":
            key = standin_context(ctx, rootfs_image("standin"), standin_binary(),
                                  service_name, service, services)
        elif recipe in SERVERS:
            base, key = server_context(ctx, recipe, ref)
        elif recipe == LEGACY_S3:  # the estate's Garage behind MinIO's entrypoint
            garage = next((s["image"] for s in services.values()
                           if recipe_of(s.get("image", "")) == "garage"), None)
            if garage is None:
                sys.exit(f"{ref}: the MinIO stand-in is the estate's Garage, and no service of "
                         "the file runs dxflrs/garage")
            _, key = server_context(Path(tmp) / "garage", "garage", garage)
            base = f"manacore-harness/garage:{key}"
            if existing(base) != key:
                docker("build", "-q", "--label", f"{LABEL}={key}", "-t", base,
                       str(Path(tmp) / "garage"))
            shutil.copytree(HARNESS / "images" / recipe, ctx, dirs_exist_ok=True)
            key = digest(base, files_digest(HARNESS / "images" / recipe))
        elif recipe == "busybox":
            base = busybox_base()
            (ctx / "Dockerfile").write_text(f"FROM {base}\n")
            key = digest(base, (ctx / "Dockerfile").read_text())
        else:
            base = rootfs_image(recipe, pip_requirements(recipe, ref))
            folder = HARNESS / "images" / recipe
            if not folder.is_dir():
                folder = OWN_IMAGES / recipe
            shutil.copytree(folder, ctx, dirs_exist_ok=True)
            key = digest(base, files_digest(ctx))
        if existing(ref) == key:
            return False
        docker("build", "-q", "--build-arg", f"BASE={base if recipe != 'standin' else ''}",
               "--label", f"{LABEL}={key}", "--label", "manacore.test=1", "-t", ref, str(ctx))
        return True


def main(compose_file: str, *extra: str) -> None:
    services = {} if compose_file == "-" else (
        yaml.safe_load(Path(compose_file).read_text()) or {}).get("services") or {}
    start = time.monotonic()
    for ref in extra:  # images a script runs beside the file (e.g. the migration helper)
        if not cluster_image(ref):
            services.setdefault(f"extra:{ref}", {"image": ref})
    built = 0
    by_ref: dict[str, tuple[str, dict]] = {}
    for name, svc in sorted(services.items()):
        ref = svc.get("image")
        if not ref:
            continue
        if ref in by_ref and recipe_of(ref) == "standin":
            # one image for several services: answer on the union of their ports
            prev_name, prev = by_ref[ref]
            merged = {**prev, "expose": [*(prev.get("expose") or []), *listen_ports(svc)]}
            by_ref[ref] = (prev_name, merged)
        else:
            by_ref.setdefault(ref, (name, svc))
    for ref, (name, svc) in sorted(by_ref.items()):
        recipe = recipe_of(ref)
        t0 = time.monotonic()
        if build(ref, recipe, name, svc, services):
            built += 1
            log(f"{ref} ({recipe} for {name}): {time.monotonic() - t0:.1f} s")
    log(f"images: {len(by_ref)} references, {built} built, "
        f"{len(by_ref) - built} reused, {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: images.py COMPOSE_FILE|- [IMAGE…]")
    main(sys.argv[1], *sys.argv[2:])
