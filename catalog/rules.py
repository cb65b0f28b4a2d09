"""Rules over the whole estate. Each rule yields every violation it finds; `validate` runs
them all, so a broken catalogue is reported in one go and never as a traceback.

A line reads `service: rule: what is wrong and what to do`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from graphlib import CycleError, TopologicalSorter
from typing import NamedTuple

from catalog.model import (
    Broken,
    DbUrl,
    Estate,
    HostOf,
    PortOf,
    PublicUrl,
    RedisUrl,
    SecretOf,
    Service,
    UrlOf,
    database_secret,
)
from catalog.schema import STARTUP_CLASSES, allowed_ports, port_allowed
from catalog.settings import StackSettings
from catalog.units import parse_memory


class Violation(NamedTuple):
    service: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.service}: {self.rule}: {self.message}"


class EstateError(Exception):
    """The estate breaks rules; `violations` holds all of them."""

    def __init__(self, violations: list[Violation]):
        self.violations = violations
        super().__init__("\n".join(map(str, violations)))


Rule = Callable[[Estate, "StackSettings | None"], Iterator[Violation]]
RULES: dict[str, Rule] = {}

_LABEL = re.compile(r"^[a-z]([a-z0-9-]*[a-z0-9])?$")
_ENV_KEY = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_VOLUME = re.compile(r"^manacore-[a-z0-9]+(-[a-z0-9]+)*-data$")


def rule(name: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        RULES[name] = fn
        return fn

    return register


def container_name(svc: Service) -> str:
    """The one place the container naming convention is written."""
    return f"manacore-{svc.category}-{svc.id}"


def volume_name(svc: Service) -> str:
    """The default name of a service's volume."""
    return f"manacore-{svc.id}-data"


# Copies of a user-facing stateless service that may run several (Kubernetes): one node's
# loss, drain or upgrade leaves at least one serving while the other is replaced
HA_REPLICAS = 2


def stateful(svc: Service) -> bool:
    return any(v.stateful for v in svc.volumes)


def replicas_of(svc: Service) -> int:
    """The one place the replica convention is written: the declared `replicas`, else
    HA_REPLICAS for a user-facing stateless service whose copies are interchangeable, else
    one (a service that must run once, one on its own ReadWriteOnce claim, or one few miss)."""
    if svc.replicas is not None:
        return svc.replicas
    a = svc.availability
    if svc.workload == "service" and a is not None and a.copies == "many" and \
            a.importance == "user-facing" and not stateful(svc):
        return HA_REPLICAS
    return 1


def _containers(estate: Estate) -> list[Service]:
    return [s for s in estate.valid_services if not s.native]


@rule("schema")
def _schema(estate: Estate, _settings) -> Iterator[Violation]:
    for broken in (s for s in estate.services if isinstance(s, Broken)):
        for error in broken.errors:
            yield Violation(broken.id, "schema", f"{error}; fix the declaration in services.py")


@rule("naming")
def _naming(estate: Estate, _settings) -> Iterator[Violation]:
    seen: dict[str, int] = defaultdict(int)
    for s in estate.services:
        seen[s.id] += 1
    for sid, count in seen.items():
        if count > 1:
            yield Violation(sid, "naming", f"id declared {count} times; ids must be unique")
    for s in estate.valid_services:
        if not _LABEL.fullmatch(s.id):
            yield Violation(s.id, "naming", "id must be lowercase letters, digits and '-', "
                            "starting with a letter (it becomes a DNS name)")
        name = container_name(s)
        if len(name) > 63:
            yield Violation(s.id, "naming", f"container name {name} is longer than 63 characters;"
                            " shorten the id")
        names = [p.name for p in s.ports]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            yield Violation(s.id, "naming", f"port name {dup!r} used twice; name ports uniquely")
        for p in s.ports:
            if not _LABEL.fullmatch(p.name) or len(p.name) > 15:
                yield Violation(s.id, "naming", f"port name {p.name!r} must be a lowercase label "
                                "of at most 15 characters (Kubernetes port names)")


@rule("volume-naming")
def _volume_naming(estate: Estate, _settings) -> Iterator[Violation]:
    users: dict[str, list[str]] = defaultdict(list)
    for s in estate.valid_services:
        for v in s.volumes:
            users[v.name or volume_name(s)].append(s.id)
    for s in estate.valid_services:
        if s.native and s.volumes:
            yield Violation(s.id, "volume-naming", "a native service has no container volumes")
        paths = [v.path for v in s.volumes]
        for dup in sorted({p for p in paths if paths.count(p) > 1}):
            yield Violation(s.id, "volume-naming", f"two volumes mounted at {dup}")
        for v in s.volumes:
            if v.name is None:
                continue
            shared = len(set(users[v.name])) > 1
            own = v.name == volume_name(s) or (
                v.name.startswith(f"manacore-{s.id}-") and _VOLUME.fullmatch(v.name))
            if not _VOLUME.fullmatch(v.name) or not (own or shared):
                yield Violation(s.id, "volume-naming", f"volume {v.name} must be named "
                                f"{volume_name(s)} (or manacore-{s.id}-<what>-data, or "
                                "manacore-<group>-data when several services share it)")
            if shared and not v.subpath:
                yield Violation(s.id, "volume-naming", f"shared volume {v.name} needs a subpath "
                                "so each service keeps its own directory")
        try:
            for v in s.volumes:
                parse_memory(v.size)
        except ValueError as exc:
            yield Violation(s.id, "volume-naming", f"volume size: {exc}")


@rule("data-safety")
def _data_safety(estate: Estate, _settings) -> Iterator[Violation]:
    """A service's own volume is mounted by that service alone. A volume shared on purpose (the
    Matrix bots', a subdirectory each) is declared `shared` on every mount, and never one that
    holds a database's files (a service whose data the backup takes through its server, its
    `dump`: two writers corrupt it, and only the server can copy it consistently)."""
    mounts: dict[str, list[tuple[Service, bool]]] = defaultdict(list)
    for s in estate.valid_services:
        for v in s.volumes:
            mounts[v.name or volume_name(s)].append((s, v.shared))
    for name, users in mounts.items():
        ids = list(dict.fromkeys(s.id for s, _ in users))
        databases = [s.id for s, _ in users if s.dump is not None]
        for s, shared in users:
            others = ", ".join(i for i in ids if i != s.id)
            if s.dump is not None and (shared or others):
                yield Violation(s.id, "data-safety", f"volume {name} holds the files of "
                                f"{s.id}'s {s.dump.kind} server" + (f" and is also mounted "
                                f"by {others}" if others else " and is declared shared") +
                                "; a database's volume is mounted by its server alone")
            elif others and databases and s.id not in databases:
                yield Violation(s.id, "data-safety", f"mounts volume {name}, which holds the "
                                f"files of {', '.join(databases)}'s server; give {s.id} a "
                                "volume of its own")
            elif others and not shared:
                yield Violation(s.id, "data-safety", f"volume {name} is also mounted by "
                                f"{others}; a service's own volume is mounted by it alone: "
                                "give each its own volume, or declare the sharing on every "
                                "mount (Volume(shared=True, subpath=…))")


@rule("port-range")
def _port_range(estate: Estate, _settings) -> Iterator[Violation]:
    for s in estate.valid_services:
        for p in s.ports:
            for number in (p.container, p.published):
                if number is not None and not 1 <= number <= 65535:
                    yield Violation(s.id, "port-range", f"port {number} is not a TCP port")
            if p.published is not None and not port_allowed(s.role, p.published):
                yield Violation(s.id, "port-range", f"published port {p.published} ({p.name}) is "
                                f"outside the range of role {s.role}: use {allowed_ports(s.role)}")


@rule("port-unique")
def _port_unique(estate: Estate, _settings) -> Iterator[Violation]:
    owners: dict[int, list[str]] = defaultdict(list)
    for s in estate.valid_services:
        for p in s.ports:
            if p.published is not None:
                owners[p.published].append(s.id)
    for number, ids in sorted(owners.items()):
        if len(ids) > 1:
            for sid in sorted(set(ids)):
                others = ", ".join(sorted(set(ids) - {sid})) or sid
                yield Violation(sid, "port-unique", f"published port {number} is also used by "
                                f"{others}; pick a free port in the range")
        if number in estate.reserved_ports:
            for sid in sorted(set(ids)):
                yield Violation(sid, "port-unique", f"published port {number} is reserved "
                                f"({estate.reserved_ports[number]}); pick another")


@rule("hostname-unique")
def _hostnames(estate: Estate, settings: StackSettings | None) -> Iterator[Violation]:
    owners: dict[str, list[str]] = defaultdict(list)
    for s in estate.valid_services:
        if s.public is None:
            continue
        owners[s.public.host].append(s.id)
        if not _LABEL.fullmatch(s.public.host.replace(".", "-")):
            yield Violation(s.id, "hostname-unique", f"public host {s.public.host!r} must be a "
                            "lowercase DNS name below the stack's domain")
        elif settings is not None and (s.public.host == settings.domain or
                                       s.public.host.endswith(f".{settings.domain}")):
            below = s.public.host.removesuffix(settings.domain).rstrip(".") or "<name>"
            yield Violation(s.id, "hostname-unique", f"public host {s.public.host!r} already "
                            f"ends in the domain {settings.domain}, which is added to it; write "
                            f"host={below!r}")
        for path in s.public.open_paths:
            if not s.public.access:
                yield Violation(s.id, "hostname-unique", f"open path {path} needs access=True: "
                                "it opens a path of an Access-guarded host, nothing else")
            if not re.fullmatch(r"/[A-Za-z0-9._~/-]*", path) or path == "/":
                yield Violation(s.id, "hostname-unique", f"open path {path!r} must be a plain "
                                "path below the root, like /api/send")
        for path in s.public.closed_paths:
            if not re.fullmatch(r"/[A-Za-z0-9._~/-]*", path) or path == "/":
                yield Violation(s.id, "hostname-unique", f"closed path {path!r} must be a plain "
                                "path below the root, like /_synapse/admin")
            if path in s.public.open_paths:
                yield Violation(s.id, "hostname-unique", f"path {path} is both open and closed")
        if s.port(s.public.port) is None:
            yield Violation(s.id, "hostname-unique", f"public host {s.public.host} routes to port "
                            f"{s.public.port!r}, which the service does not have; add the port "
                            "or drop the route")
    for host, ids in sorted(owners.items()):
        if len(ids) > 1:
            for sid in ids:
                yield Violation(sid, "hostname-unique", f"public host {host} is also used by "
                                f"{', '.join(i for i in ids if i != sid) or sid}")


def _references(s: Service) -> Iterator[tuple[str, str, str | None]]:
    """(env key, referenced service, referenced port name or None) of every env reference."""
    for key, value in s.env.items():
        if isinstance(value, (UrlOf, PortOf)):
            yield key, value.service, value.port
        elif isinstance(value, (HostOf, PublicUrl)):
            yield key, value.service, None


@rule("dependency-exists")
def _dependency_exists(estate: Estate, _settings) -> Iterator[Violation]:
    known = {s.id for s in estate.services}
    for s in estate.valid_services:
        for need in s.needs:
            if need.service == s.id:
                yield Violation(s.id, "dependency-exists", "depends on itself")
            elif need.service not in known:
                yield Violation(s.id, "dependency-exists", f"depends on unknown service "
                                f"{need.service!r}; declare it or remove the dependency")
        needed = {n.service for n in s.needs}
        for key, target, port_name in _references(s):
            other = estate.get(target)
            if target == s.id:
                pass
            elif target not in known:
                yield Violation(s.id, "dependency-exists", f"env {key} refers to unknown service "
                                f"{target!r}")
            elif target not in needed:
                yield Violation(s.id, "dependency-exists", f"env {key} refers to {target}, which "
                                "is not among its needs; add hard() or lazy()")
            if other is not None and port_name is not None and other.port(port_name) is None:
                yield Violation(s.id, "dependency-exists", f"env {key} refers to port "
                                f"{port_name!r} of {target}, which has no such port")
            if other is not None and isinstance(s.env[key], PublicUrl) and other.public is None:
                yield Violation(s.id, "dependency-exists", f"env {key} wants the public URL of "
                                f"{target}, which has no public hostname")


@rule("dependency-target")
def _dependency_target(estate: Estate, _settings) -> Iterator[Violation]:
    for s in estate.valid_services:
        for need in s.needs:
            other = estate.get(need.service)
            if other is None or other.native:
                continue
            missing = sorted(set(s.targets) - set(other.targets))
            if missing:
                yield Violation(s.id, "dependency-target", f"depends on {other.id}, which does not"
                                f" run on {', '.join(missing)}; make the dependency lazy-optional "
                                "or limit this service's targets")


Graph = dict[str, list[str]]  # service id → what it needs, in declaration order


def dependency_graph(estate: Estate, *, hard_only: bool = False) -> Graph:
    """Edges point from a service to what it needs (every node is a key)."""
    graph: Graph = {}
    for s in estate.valid_services:
        edges = graph.setdefault(s.id, [])
        for need in s.needs:
            if (need.hard or not hard_only) and need.service not in edges:
                edges.append(need.service)
                graph.setdefault(need.service, [])
    return graph


def cycles(graph: Graph) -> list[tuple[list[str], list[str]]]:
    """Each group of services that depend on each other (a strongly connected component of two
    or more, sorted) with one cycle through it: the path walked from its first service in graph
    order back to where it closes."""
    try:
        TopologicalSorter(graph).prepare()
        return []  # the usual case: no cycle, no more work
    except CycleError:
        pass

    def reach(start: str) -> set[str]:
        seen: set[str] = set()
        todo = [start]
        while todo:
            for other in graph[todo.pop()]:
                if other not in seen:
                    seen.add(other)
                    todo.append(other)
        return seen

    reachable = {n: reach(n) for n in graph}
    groups = {frozenset(m for m in reachable[n] if n in reachable[m])
              for n in graph if n in reachable[n]}
    found = []
    for group in sorted((g for g in groups if len(g) > 1), key=sorted):
        path = [next(n for n in graph if n in group)]
        while True:  # every member has an edge into the group: walking on closes a cycle
            step = next(m for m in graph[path[-1]] if m in group)
            if step in path:
                found.append((sorted(group), [*path[path.index(step):], step]))
                break
            path.append(step)
    return found


@rule("no-cycle")
def _no_cycle(estate: Estate, _settings) -> Iterator[Violation]:
    for group, cycle in cycles(dependency_graph(estate)):
        for sid in group:
            yield Violation(sid, "no-cycle", f"dependency cycle {' -> '.join(cycle)}; make one "
                            "edge lazy and break the loop, or remove it")


@rule("hard-needs-health")
def _hard_needs_health(estate: Estate, _settings) -> Iterator[Violation]:
    for s in estate.valid_services:
        for need in s.needs:
            other = estate.get(need.service)
            if need.hard and other is not None and other.health is None:
                yield Violation(s.id, "hard-needs-health", f"hard dependency {other.id} has no "
                                "health check to wait for; give it one or make the need lazy")


@rule("health")
def _health(estate: Estate, _settings) -> Iterator[Violation]:
    for s in estate.valid_services:
        h = s.health
        if h is None:
            continue
        network = sum([h.http is not None, h.tcp])
        if network > 1 or network + (h.cmd is not None) == 0:
            yield Violation(s.id, "health", "a health check is one of http, tcp or cmd (cmd "
                            "may accompany one of them: Docker runs cmd, the kubelet probes)")
        if (h.http is not None or h.tcp) and s.port(h.port) is None:
            yield Violation(s.id, "health", f"health check probes port {h.port!r}, which the "
                            "service does not have")
        if h.http is not None and not h.http.startswith("/"):
            yield Violation(s.id, "health", f"health path {h.http!r} must start with '/'")
        if min(h.interval, h.timeout, h.retries) < 1 or h.start_period < 0:
            yield Violation(s.id, "health", "interval, timeout and retries must be positive")
        if not 1 <= h.start_interval <= h.interval:
            yield Violation(s.id, "health", f"start_interval {h.start_interval} must lie between "
                            f"1 and the interval ({h.interval}): it probes faster while starting")


@rule("memory-limit")
def _memory(estate: Estate, _settings) -> Iterator[Violation]:
    for s in _containers(estate):
        if s.memory is None:
            yield Violation(s.id, "memory-limit", "every container needs a memory limit; set "
                            "memory='256Mi' or what the service really uses")
            continue
        try:
            if parse_memory(s.memory) <= 0:
                yield Violation(s.id, "memory-limit", "memory limit must be positive")
        except ValueError as exc:
            yield Violation(s.id, "memory-limit", str(exc))


@rule("image-pinned")
def _image_pinned(estate: Estate, settings: StackSettings | None) -> Iterator[Violation]:
    for s in estate.valid_services:
        if s.native:
            if s.image is not None:
                yield Violation(s.id, "image-pinned", "a native service runs on the host and has "
                                "no image")
            continue
        if s.image is None:
            yield Violation(s.id, "image-pinned", "a container needs an image")
        elif not s.image.own and (not s.image.tag or s.image.tag == "latest"):
            yield Violation(s.id, "image-pinned", f"image {s.image.repository} must have a "
                            f"pinned tag, not {s.image.tag or 'none'!r}")
    if settings is not None and settings.tag in ("", "latest"):
        yield Violation("settings", "image-pinned", f"stack {settings.stack}: tag "
                        f"{settings.tag!r} for our own images must be a pinned release")


@rule("host-access")
def _host_access(estate: Estate, _settings) -> Iterator[Violation]:
    """Host network, PID and file systems on Kubernetes: a per-node exporter's need alone."""
    for s in estate.valid_services:
        if s.host_access and (s.workload != "daemon" or s.role != "exporter"):
            yield Violation(s.id, "host-access", "only a per-node exporter (workload daemon, "
                            "role exporter: node-exporter) may see the host; drop host_access")


DOCKER_SOCKET = "/var/run/docker.sock"
# the socket and the directories holding it (/var/run is a symlink to /run on the host)
SOCKET_PATHS = frozenset({DOCKER_SOCKET, "/run/docker.sock", "/var/run", "/run"})


@rule("docker-socket")
def _docker_socket(estate: Estate, _settings) -> Iterator[Violation]:
    """The Docker socket is root on the host: a mount of it (or of its directory) is read-only
    and says why, in `root_equivalent`, the service needs it; nothing else may carry that."""
    for s in estate.valid_services:
        for m in s.host_mounts:
            exposes = m.source.rstrip("/") in SOCKET_PATHS
            if exposes and not m.root_equivalent:
                yield Violation(s.id, "docker-socket", f"mounts {m.source}, the Docker socket "
                                "(root on the host): drop the mount, or say why it needs it in "
                                "root_equivalent")
            if exposes and not m.read_only:
                yield Violation(s.id, "docker-socket", f"mounts {m.source} writable; mount the "
                                "Docker socket read_only=True")
            if m.root_equivalent and not exposes:
                yield Violation(s.id, "docker-socket", f"{m.source} is not the Docker socket "
                                f"({DOCKER_SOCKET}) or its directory; drop root_equivalent")


@rule("legacy-unique")
def _legacy_unique(estate: Estate, _settings) -> Iterator[Violation]:
    for kind in ("containers", "ports", "volumes"):
        owners: dict[object, list[str]] = defaultdict(list)
        for s in estate.valid_services:
            for item in getattr(s.legacy, kind):
                owners[item].append(s.id)
        for item, ids in owners.items():
            if len(ids) > 1:
                for sid in ids:
                    yield Violation(sid, "legacy-unique", f"legacy {kind[:-1]} {item} is also "
                                    f"claimed by {', '.join(i for i in ids if i != sid) or sid};"
                                    " each legacy fact maps to one new service")


@rule("startup-order")
def _startup_order(estate: Estate, _settings) -> Iterator[Violation]:
    for s in estate.valid_services:
        mine = STARTUP_CLASSES.get(s.role)
        for need in s.needs:
            other = estate.get(need.service)
            theirs = STARTUP_CLASSES.get(other.role) if other else None
            if mine and theirs and theirs[0] > mine[0]:
                yield Violation(s.id, "startup-order", f"{mine[1]} start before {theirs[1]}, but "
                                f"it depends on {other.id}; invert or drop the dependency")


@rule("secrets")
def _secrets(estate: Estate, _settings) -> Iterator[Violation]:
    declared = {x.name for x in estate.secrets} | {
        database_secret(role) for s in estate.valid_services
        for role in (s.database, s.pg_monitor) if role}
    for x in estate.secrets:
        if not _ENV_KEY.fullmatch(x.name):
            yield Violation("secrets", "secrets", f"declared secret {x.name!r} must be "
                            "UPPER_SNAKE_CASE (it is an environment variable and a config key)")
    for s in estate.valid_services:
        named = list(s.secrets) + [v.name for v in (*s.env.values(), *(s.command or ()))
                                   if isinstance(v, SecretOf)]
        for name in named:
            if name not in declared:
                yield Violation(s.id, "secrets", f"secret {name} is not declared in SECRETS")
        for key in list(s.env) + list(s.secrets):
            if not _ENV_KEY.fullmatch(key):
                yield Violation(s.id, "secrets", f"env name {key!r} must be UPPER_SNAKE_CASE")
        clash = set(s.env) & set(s.secrets)
        for key in sorted(clash):
            yield Violation(s.id, "secrets", f"{key} is both a plain env value and a secret")


@rule("internet")
def _internet(estate: Estate, _settings) -> Iterator[Violation]:
    for s in estate.valid_services:
        if s.internet is None:
            continue
        if s.native:
            yield Violation(s.id, "internet", "a native service runs on the host, outside any "
                            "network policy; drop internet")
        elif len(s.internet.split()) < 2:
            yield Violation(s.id, "internet", f"internet={s.internet!r}: say what it reaches "
                            "and why (e.g. 'Google's Gemini API')")


@rule("availability")
def _availability(estate: Estate, _settings) -> Iterator[Violation]:
    """Every container says whether it may run as several copies and who misses it; the
    replica count agrees with that, and importance agrees with the graph: a public service
    without Access is user-facing, and so is whatever a user-facing service waits for."""
    for s in _containers(estate):
        a = s.availability
        if a is None:
            yield Violation(s.id, "availability", "declare availability=many(importance, why) "
                            "or once(importance, why): whether several copies may run and who "
                            "misses it (user-facing, operator, background)")
            continue
        if len(a.why.split()) < 3:
            yield Violation(s.id, "availability", f"why={a.why!r}: say where upstream confirms "
                            "it (a document or source file) or which assumption it rests on")
        replicas = replicas_of(s)
        if replicas > 1 and (a.copies == "one" or stateful(s) or s.workload == "daemon"):
            reason = ("it must run once" if a.copies == "one" else "its pods run one per node"
                      if s.workload == "daemon" else "it keeps data on a ReadWriteOnce claim, "
                      "which one pod mounts")
            yield Violation(s.id, "availability", f"replicas={replicas}, but {reason}; drop "
                            "replicas")
        if s.replicas is not None and s.replicas < HA_REPLICAS and a.copies == "many" and \
                a.importance == "user-facing" and not stateful(s) and s.workload == "service":
            yield Violation(s.id, "availability", f"replicas={s.replicas}: a user-facing "
                            f"service that may run several copies runs at least {HA_REPLICAS}, "
                            "so losing a node does not take it down")
        if s.public is not None and not s.public.access and a.importance != "user-facing":
            yield Violation(s.id, "availability", f"importance {a.importance!r}, but "
                            f"{s.public.host} is public without Access: it is user-facing")
        if a.importance == "user-facing":
            for need in s.needs:
                other = estate.get(need.service)
                if need.hard and other is not None and not other.native and \
                        other.availability is not None and \
                        other.availability.importance != "user-facing":
                    yield Violation(other.id, "availability", f"importance "
                                    f"{other.availability.importance!r}, but user-facing {s.id} "
                                    "waits for it (a hard dependency): it is user-facing too")


@rule("database")
def _database(estate: Estate, _settings) -> Iterator[Violation]:
    owners: dict[str, list[str]] = defaultdict(list)
    for s in estate.valid_services:
        wants_db = any(isinstance(v, DbUrl) for v in s.env.values())
        wants_redis = any(isinstance(v, RedisUrl) for v in s.env.values())
        needed = {n.service for n in s.needs}
        if s.database:
            owners[s.database].append(s.id)
            if not re.fullmatch(r"[a-z][a-z0-9_]*", s.database):
                yield Violation(s.id, "database", f"database name {s.database!r} must be a "
                                "lowercase SQL identifier")
            if "postgres" not in needed:
                yield Violation(s.id, "database", "owns a database but does not depend on "
                                "postgres; add hard('postgres')")
        if s.pg_monitor:
            owners[s.pg_monitor].append(s.id)
            if not re.match(r"^[a-z][a-z0-9_]*$", s.pg_monitor) or s.pg_monitor == "postgres":
                yield Violation(s.id, "database", f"monitoring role {s.pg_monitor!r} must be a "
                                "lowercase SQL identifier other than postgres")
            if "postgres" not in needed or s.database:
                yield Violation(s.id, "database", "a monitoring role needs postgres among its "
                                "needs and no database of its own")
        if wants_db and not s.database:
            yield Violation(s.id, "database", "uses db_url() but declares no database")
        if wants_redis and "redis" not in needed:
            yield Violation(s.id, "database", "uses redis_url() but does not depend on redis")
    for name, ids in owners.items():
        if len(ids) > 1:
            for sid in ids:
                yield Violation(sid, "database", f"role {name} is also claimed by "
                                f"{', '.join(i for i in ids if i != sid)}; one service each")


def unknown_secrets(estate: Estate, stack: str, names: list[str]) -> list[Violation]:
    """Secrets a stack file sets that the estate does not know: a typo leaves the real one
    unset, or silently generated."""
    known = {x.name for x in estate.secrets} | {
        database_secret(s.database) for s in estate.valid_services if s.database}
    return [Violation("settings", "secrets", f"stack {stack}: {name} is set but is no secret "
                      "of the estate; check its spelling (known: see README, Secrets)")
            for name in names if name not in known]


def stage_failure(service: str, stage: str, exc: Exception) -> Violation:
    """A stage after the rules (resolution, a generated file, an export) failed on an estate the
    rules let through: reported like a violation, never as a traceback."""
    detail = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    return Violation(service, stage, f"{type(exc).__name__}: {detail} (the declaration passes "
                     "the rules but breaks this step; fix it in services.py)")


def validate(estate: Estate, settings: StackSettings | None = None) -> list[Violation]:
    """Every violation of every rule, in a stable order."""
    found: list[Violation] = []
    for name, check in RULES.items():
        try:
            found.extend(check(estate, settings))
        except Exception as exc:  # a rule must never turn a bad catalogue into a traceback
            found.append(Violation("estate", name, f"could not be checked: {exc!r}"))
    return sorted(dict.fromkeys(found), key=lambda v: (v.service, v.rule, v.message))


def check(estate: Estate, settings: StackSettings | None = None) -> None:
    violations = validate(estate, settings)
    if violations:
        raise EstateError(violations)
