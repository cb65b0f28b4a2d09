"""The Compose export: `compose.yaml` and `.env.example`, so `docker compose up -d` starts the
estate in dependency order on one Docker host, with no secret value written anywhere.

This module also holds the Docker engine's vocabulary (health probe, durations, memory and swap,
capabilities, stop grace, port order, host gateway, volume subpath preparation) as pure
functions: `components.docker` uses the same ones, so a Pulumi container and its Compose service
agree by construction, not by copy. Each value is spelled the way the engine reports it back
(`docker inspect`): the docker provider keeps what the engine reports in its state, so any other
spelling of the same setting is a change on every preview, or a replacement after a refresh
(tests/realengine/test_compose_estate.py compares the two field by field).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from catalog import yamltext
from catalog.configs import scrape_targets
from catalog.resolve import (
    URL_SAFE_TEXT,
    ResolvedEstate,
    ResolvedFile,
    ResolvedPort,
    ResolvedService,
    ResolvedVolume,
    Template,
)
from catalog.rules import EstateError, Violation
from catalog.units import mebibytes
from exports.tunnel import CONNECTOR

PROJECT = "manacore"
LOOPBACK = "127.0.0.1"  # published ports: only the tunnel connector reaches the outside
NATIVE_ALIAS = "host.docker.internal"
SCRAPER = "victoriametrics"  # scrapes every metrics port (catalog.configs.scrape_targets)
HOST_GATEWAY = "host-gateway"  # the daemon's alias for the host, so Linux hosts resolve it too
RESTART = "unless-stopped"
# Creates the subdirectories of a shared volume: Docker mounts a `subpath` only if it exists
# (moby/moby#47842), so a fresh volume needs them made before the first consumer starts.
VOLUME_INIT_IMAGE = "busybox:1.38.0"
VOLUME_INIT_MOUNT = "/volume"
VOLUME_INIT_MEMORY_MB = 16
NO_NEW_PRIVILEGES = "no-new-privileges:true"
ALL_CAPABILITIES = "ALL"
# Seconds a container gets to stop on SIGTERM (its image's STOPSIGNAL) before it is killed,
# when it is replaced, removed or stopped: the docker provider otherwise kills at once
# (`destroy_grace_seconds` unset is 0) and Docker's default is 10 s. A database flushes and
# checkpoints on a clean shutdown, so stateful services get longer.
STOP_GRACE_SECONDS = 10
STOP_GRACE_STATEFUL_SECONDS = 60


class Privileges(NamedTuple):
    """How a container is confined, spelled once for Compose and the Pulumi docker adapter."""

    security_opt: tuple[str, ...]
    cap_drop: tuple[str, ...]
    cap_add: tuple[str, ...]


def capability(name: str) -> str:
    """A capability as the engine stores and reports it: `CAP_CHOWN` for `CHOWN`, `ALL` as it
    is (moby's `NormalizeLegacyCapabilities`: upper case, `CAP_` prefix). The docker provider
    reads the engine's spelling back into its state, and a capability change replaces the
    container: any other spelling would restart PostgreSQL after every `pulumi refresh`."""
    name = name.upper()
    return name if name == ALL_CAPABILITIES or name.startswith("CAP_") else f"CAP_{name}"


def _confined(add: tuple[str, ...]) -> Privileges:
    return Privileges((NO_NEW_PRIVILEGES,), (ALL_CAPABILITIES,),
                      tuple(sorted({capability(c) for c in add})))


# a volume's init only creates and chowns directories as root in a root-owned volume
VOLUME_INIT_PRIVILEGES = _confined(("CHOWN",))


def privileges(svc: ResolvedService) -> Privileges:
    """`no-new-privileges` for every container; every capability dropped but those the image's
    entrypoint needs (`Image.caps`), unless the image keeps Docker's defaults for a declared
    reason (`Image.default_caps`: cAdvisor)."""
    if svc.default_caps:
        return Privileges((NO_NEW_PRIVILEGES,), (), ())
    return _confined(svc.caps)


def compose_privileges(p: Privileges) -> dict[str, list[str]]:
    out = {"security_opt": list(p.security_opt), "cap_drop": list(p.cap_drop),
           "cap_add": list(p.cap_add)}
    return {k: v for k, v in out.items() if v}


# --- the Docker engine's vocabulary, shared with components.docker ----------------------


def duration(seconds: int) -> str:
    """A Docker duration as the engine reports it back, Go's `time.Duration.String()`: "30s",
    "1m30s", "1h0m0s" (the docker provider stores the engine's spelling, so "90s" would differ
    on every preview). Compose and the engine API read the same text."""
    if seconds < 0:
        raise ValueError(f"a negative duration: {seconds}")
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def health_test(svc: ResolvedService) -> list[str] | None:
    """The HEALTHCHECK test of a service's `Health`, probed from inside its container."""
    h = svc.health
    if h is None:
        return None
    if h.cmd is not None:
        return ["CMD", *h.cmd]
    port = svc.port(h.port).container
    if h.http is not None:  # images ship either busybox wget or curl; try both
        url = shlex.quote(f"http://{LOOPBACK}:{port}{h.http}")
        return ["CMD-SHELL", f"wget -qO /dev/null {url} || curl -fsS -o /dev/null {url} || exit 1"]
    return ["CMD-SHELL", f"nc -z {LOOPBACK} {port} || "
                         f"bash -c 'exec 3<>/dev/tcp/{LOOPBACK}/{port}' || exit 1"]


def healthcheck(svc: ResolvedService) -> dict[str, Any] | None:
    """test, interval, timeout, retries, start_period, start_interval (Compose's keys; the
    adapter maps them). `start_interval` needs Docker Engine >= 25 and Compose >= 2.20.2."""
    test = health_test(svc)
    if test is None or svc.health is None:
        return None
    h = svc.health
    return {"test": test, "interval": duration(h.interval), "timeout": duration(h.timeout),
            "retries": h.retries, "start_period": duration(h.start_period),
            "start_interval": duration(h.start_interval)}


def wait_timeout(svc: ResolvedService) -> int:
    """Seconds to wait for a container to turn healthy: the grace period plus every allowed
    failure, each taking an interval and a timeout, plus the first interval."""
    h = svc.health
    assert h is not None
    return h.start_period + (h.retries + 1) * (h.interval + h.timeout)


def memory_mb(svc: ResolvedService) -> int | None:
    """The limit in MiB: the docker provider takes whole MiB, so Compose gets the same figure."""
    return None if svc.memory is None else mebibytes(svc.memory)


def memory_swap_mb(memory: int | None) -> int | None:
    """Memory plus swap, in MiB: the memory limit itself, so no container swaps, and its limits
    follow the catalogue alone. Left unset, the engine picks twice the memory when the
    container is created and keeps that allowance across later memory changes (a container's
    limits would depend on its history), and the docker provider shows the engine's figure as a
    change on every preview. (A host without swap accounting reports -1 instead: Docker Desktop
    and Linux with cgroup v2 or `swapaccount=1` have it.)"""
    return memory


def stop_grace(svc: ResolvedService) -> int:
    """Seconds between the stop signal and a kill (STOP_GRACE_*)."""
    return STOP_GRACE_STATEFUL_SECONDS if svc.stateful else STOP_GRACE_SECONDS


def published(svc: ResolvedService) -> list[ResolvedPort]:
    """Published ports in the engine's order (by container port, as the provider reads them
    back), so the registered list is the list refreshed into the state."""
    return sorted((p for p in svc.ports if p.published), key=lambda p: p.container)


def hard_containers(svc: ResolvedService, estate: ResolvedEstate) -> list[str]:
    """Ids of the containers `svc` must wait for (native hard dependencies are always there)."""
    containers = {s.id for s in estate.containers}
    return [d for d in svc.hard if d in containers]




def uses_host_gateway(svc: ResolvedService, estate: ResolvedEstate) -> bool:
    """Containers reaching a native macOS service through `host.docker.internal`."""
    natives = {s.id for s in estate.services if s.native}
    return (estate.settings.native_host == NATIVE_ALIAS
            and any(d in natives for d in (*svc.hard, *svc.lazy)))


class VolumeInit(NamedTuple):
    """What a volume needs before any consumer starts: the subpaths of a shared volume to
    create (Docker mounts a `subpath` only if it exists), and the directories to hand to the
    user an image steps down to (a fresh volume is root's)."""

    subpaths: tuple[str, ...] = ()
    owners: tuple[tuple[str, str], ...] = ()  # (directory in the volume, uid:gid)


def _needs_init(v: ResolvedVolume) -> bool:
    return bool(v.subpath or v.owner)


def volume_inits(estate: ResolvedEstate) -> dict[str, VolumeInit]:
    """Volumes → what to prepare in them before any consumer starts."""
    subpaths: dict[str, set[str]] = {}
    owners: dict[str, set[tuple[str, str]]] = {}
    for svc in estate.containers:
        for v in svc.volumes:
            if not _needs_init(v):
                continue
            subpaths.setdefault(v.name, set())
            owners.setdefault(v.name, set())
            if v.subpath:
                subpaths[v.name].add(v.subpath)
            if v.owner:
                owners[v.name].add((v.subpath or "", v.owner))
    return {name: VolumeInit(tuple(sorted(subpaths[name])), tuple(sorted(owners[name])))
            for name in sorted(subpaths)}


def volume_init_name(volume: str) -> str:
    """Container name of a volume's one-shot init (`manacore-matrix-bots-data-init`)."""
    return f"{volume}-init"


def volume_init_command(init: VolumeInit) -> list[str]:
    """mkdir the subpaths, then chown each owned directory itself (never recursively: the data
    in it stays as it is)."""
    dirs = [f"{VOLUME_INIT_MOUNT}/{p}".rstrip("/") for p in init.subpaths]
    steps = [["mkdir", "-p", *dirs]] if dirs else []
    steps += [["chown", owner, f"{VOLUME_INIT_MOUNT}/{d}".rstrip("/")]
              for d, owner in init.owners]
    if len(steps) == 1:
        return steps[0]
    return ["sh", "-c", " && ".join(shlex.join(step) for step in steps)]


def inits_needed(svc: ResolvedService) -> list[str]:
    """Volumes whose init must have run before `svc` starts."""
    return sorted({v.name for v in svc.volumes if _needs_init(v)})


def file_key(svc: ResolvedService, file: ResolvedFile) -> str:
    """A stable, unique name for a generated file (Compose `configs:` key)."""
    return f"{svc.id}-" + re.sub(r"[^A-Za-z0-9._-]+", "-", file.path.strip("/"))


# --- Compose ------------------------------------------------------------------------------


def _literal(text: str) -> str:
    """Compose interpolates `$`: a literal dollar is written `$$`."""
    return text.replace("$", "$$")


def reference(name: str) -> str:
    """A secret as Compose interpolation; `:?` stops `up` when .env leaves it empty, instead of
    starting a database with an empty password."""
    return f"${{{name}:?set {name} in .env}}"


def interpolated(template: Template) -> str:
    return template.render(reference, _literal)


def _service(svc: ResolvedService, estate: ResolvedEstate) -> dict[str, Any]:
    entry: dict[str, Any] = {"container_name": svc.container_name, "image": svc.image}
    if svc.command:
        entry["command"] = [interpolated(c) for c in svc.command]
    environment = svc.environment
    if environment:
        entry["environment"] = {k: interpolated(t) for k, t in environment.items()}
    ports = [f"{LOOPBACK}:{p.published}:{p.container}" for p in published(svc)]
    if ports:
        entry["ports"] = ports
    check = healthcheck(svc)
    if check:
        entry["healthcheck"] = {**check, "test": [_literal(t) for t in check["test"]]}
    depends = {d: {"condition": "service_healthy", "required": True}
               for d in hard_containers(svc, estate)}
    depends |= {_init_key(v): {"condition": "service_completed_successfully", "required": True}
                for v in inits_needed(svc)}
    if depends:
        entry["depends_on"] = depends
    entry["restart"] = RESTART
    entry["stop_grace_period"] = duration(stop_grace(svc))
    entry |= compose_privileges(privileges(svc))
    entry |= _memory(memory_mb(svc))
    mounts: list[dict[str, Any]] = []
    for v in svc.volumes:
        mount: dict[str, Any] = {"type": "volume", "source": v.name, "target": v.path}
        if v.subpath:
            mount["volume"] = {"subpath": v.subpath}
        if v.read_only:
            mount["read_only"] = True
        mounts.append(mount)
    mounts += [{"type": "bind", "source": m.source, "target": m.path, "read_only": m.read_only,
                **({"bind": {"create_host_path": True}} if m.create else {})}
               for m in svc.host_mounts]
    if mounts:
        entry["volumes"] = mounts
    if svc.files:
        entry["configs"] = [{"source": file_key(svc, f), "target": f.path,
                             "mode": f"{f.mode:04o}"} for f in svc.files]
    entry["networks"] = networks(svc, estate)
    if uses_host_gateway(svc, estate):
        entry["extra_hosts"] = [f"{NATIVE_ALIAS}:{HOST_GATEWAY}"]
    entry["labels"] = {k: _literal(v) for k, v in sorted(svc.labels.items())}
    return entry


def networks(svc: ResolvedService, estate: ResolvedEstate) -> list[str]:
    """The Docker networks of a container. The tunnel connector sits on the edge network
    alone, with exactly the services it routes to (those with a public hostname) and whoever
    scrapes its metrics; everything else, PostgreSQL and Redis among them, only on the internal
    network, out of the connector's reach."""
    s = estate.settings
    if svc.id == CONNECTOR:
        return [s.edge_network]
    if svc.public is not None or svc.id in edge_scrapers(estate):
        return [s.network, s.edge_network]
    return [s.network]


def edge_scrapers(estate: ResolvedEstate) -> set[str]:
    """The services that scrape the connector's metrics (VictoriaMetrics), so must reach it."""
    connector = next((c for c in estate.containers if c.id == CONNECTOR), None)
    if connector is None or CONNECTOR not in scrape_targets(estate):
        return set()
    return {c.id for c in estate.containers if c.id == SCRAPER}


def _memory(memory: int | None) -> dict[str, Any]:
    """The memory limit (honoured by `docker compose up` without swarm since Compose v2) and
    memory+swap (memory_swap_mb), as the docker adapter sets them."""
    if memory is None:
        return {}
    return {"deploy": {"resources": {"limits": {"memory": f"{memory}m"}}},
            "memswap_limit": f"{memory_swap_mb(memory)}m"}


def _init_key(volume: str) -> str:
    return volume_init_name(volume).removeprefix(f"{PROJECT}-")


def _init_service(volume: str, init: VolumeInit) -> dict[str, Any]:
    return {"container_name": volume_init_name(volume), "image": VOLUME_INIT_IMAGE,
            "command": volume_init_command(init), "restart": "no",
            **compose_privileges(VOLUME_INIT_PRIVILEGES),
            **_memory(VOLUME_INIT_MEMORY_MB),
            "volumes": [{"type": "volume", "source": volume, "target": VOLUME_INIT_MOUNT}],
            "network_mode": "none", "labels": {"manacore.volume-init": volume}}


def to_compose(estate: ResolvedEstate) -> dict[str, Any]:
    """The Compose model of a docker-target estate: services in startup order."""
    if estate.target != "docker":
        raise EstateError([Violation(estate.settings.stack, "compose-target", f"targets "
                                     f"{estate.target}; render Compose from a docker stack "
                                     "(--stack macmini)")])
    services = {s.id: _service(s, estate) for s in estate.containers}
    inits = volume_inits(estate)
    services = {**{_init_key(v): _init_service(v, p) for v, p in inits.items()}, **services}
    volumes: dict[str, dict[str, Any]] = {}
    for svc in estate.containers:
        for v in svc.volumes:
            # data still in a legacy volume: Compose must neither create nor ever remove it
            volumes.setdefault(v.name, {"name": v.name, **({} if v.migrated else
                                                           {"external": True})})
    model: dict[str, Any] = {"name": PROJECT, "services": services}
    if volumes:
        model["volumes"] = dict(sorted(volumes.items()))
    model["networks"] = {n: {"name": n, "external": False}
                         for n in (estate.settings.network, estate.settings.edge_network)}
    configs = {file_key(s, f): {"content": interpolated(f.content)}
               for s in estate.containers for f in s.files}
    if configs:
        model["configs"] = dict(sorted(configs.items()))
    return model


def env_example(estate: ResolvedEstate) -> str:
    """Every secret the Compose file interpolates: its description and an empty value."""
    lines = [
        f"# Secrets for compose.yaml (stack {estate.settings.stack}). Copy to .env next to",
        "# compose.yaml, set every value, keep .env out of version control. `docker compose`",
        "# refuses to start while one is empty. `generate`: any long random string, e.g.",
        "# `openssl rand -hex 32`; the others come from their service (tokens, API keys).",
    ]
    in_urls = set(estate.url_secrets)
    for secret in estate.secrets:
        note = ("from its service" if not secret.generate else
                "generate" if secret.kind == "password" else
                "generate: 64 hex digits, `openssl rand -hex 32`" if secret.kind == "hex32" else
                f"generate: {secret.kind} key")
        if secret.name in in_urls:
            note += f"; part of a URL: {URL_SAFE_TEXT}"
        lines += ["", f"# {secret.description or secret.name} ({note})", f"{secret.name}="]
    return "\n".join(lines) + "\n"


class _Dumper(yamltext.SafeDumper):  # type: ignore[misc,valid-type]
    """Stable output: no anchors, multi-line text as literal blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)

HEADER = ("# Generated from services.py by `manacore render compose --stack {stack}`; do not "
          "edit.\n# Secrets are ${{NAME}} references: put their values in .env "
          "(see .env.example).\n")


def dump(model: dict[str, Any], stack: str) -> str:
    body = yamltext.dump(model, _Dumper, default_flow_style=False, allow_unicode=True,
                         width=4096)
    return HEADER.format(stack=stack) + body


def render(estate: ResolvedEstate, out_dir: Path) -> list[Path]:
    """Write `compose.yaml` and `.env.example` into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    compose, example = out_dir / "compose.yaml", out_dir / ".env.example"
    compose.write_text(dump(to_compose(estate), estate.settings.stack))
    example.write_text(env_example(estate))
    return [compose, example]

