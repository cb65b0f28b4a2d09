"""Resolution: the validated catalogue plus one stack's settings → one neutral, concrete spec per
service. Every serializer (docker, compose, kubernetes, helm, tunnel, docs) reads only this.

Secrets stay references: an env value is a `Template` of literal text and `SecretRef`s, and
each serializer writes a reference in its own syntax (`${X}` in Compose, `$(X)` on Kubernetes,
a secret Output in Pulumi).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from graphlib import TopologicalSorter
from typing import Literal

from pydantic import BaseModel, ConfigDict

from catalog.model import (
    Availability,
    Category,
    DbUrl,
    Dump,
    EnvValue,
    Estate,
    Health,
    HostMount,
    HostOf,
    Legacy,
    PortOf,
    Public,
    PublicUrl,
    RedisUrl,
    Role,
    Secret,
    SecretOf,
    Service,
    Target,
    UrlOf,
    database_secret,
)
from catalog.rules import (
    EstateError,
    Violation,
    check,
    container_name,
    dependency_graph,
    replicas_of,
    stage_failure,
    volume_name,
)
from catalog.schema import LAZY_RETRY_ENV, NAMESPACES, STARTUP_CLASSES
from catalog.settings import StackSettings
from catalog.units import parse_memory

CLUSTER_DOMAIN = "svc.cluster.local"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Frozen):
    secret: str


# A secret written into a URL is spelt as it is on every target: Compose's ${X} and
# Kubernetes' $(X) interpolate values verbatim and cannot percent-encode them. So such a secret
# holds RFC 3986 unreserved characters only (what never needs encoding); generated ones are
# letters and digits, and a value set by hand is checked wherever the program sees it.
URL_SAFE = re.compile(r"^[A-Za-z0-9._~-]*$")  # fullmatch: `$` alone allows a "\n"
URL_SAFE_TEXT = "letters, digits and - . _ ~ only"
_USERINFO = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/@\"']*$")  # text ends inside userinfo


class Template(_Frozen):
    """An env value: literal text and secret references, in order."""

    parts: tuple[str | SecretRef, ...]

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(p.secret for p in self.parts if isinstance(p, SecretRef))

    @property
    def secrets_in_urls(self) -> tuple[str, ...]:
        """Secrets written into a URL (`postgresql://db:<secret>@…`): their values must be
        URL-safe (see URL_SAFE)."""
        return tuple(p.secret for before, p in zip(("", *self.parts), self.parts, strict=False)
                     if isinstance(p, SecretRef) and isinstance(before, str)
                     and _USERINFO.search(before))

    @property
    def plain(self) -> str | None:
        """The value when it holds no secret, else None."""
        return None if self.secrets else "".join(self.parts)  # type: ignore[arg-type]

    def render(self, secret: Callable[[str], str], literal: Callable[[str], str] = str) -> str:
        """Text with each secret written by `secret(name)` and each literal by `literal(text)`."""
        return "".join(secret(p.secret) if isinstance(p, SecretRef) else literal(p)
                       for p in self.parts)


class ResolvedPort(_Frozen):
    name: str
    container: int  # what other services connect to on the internal network
    published: int | None  # host port (bound to loopback on the Mac Mini)


MERGED_DIR = "merged"  # where a merged service keeps its forebears' data: <subpath>/merged/<v>


class LegacySource(_Frozen):
    """A legacy Docker volume whose data moves into a new one."""

    volume: str
    into: str  # directory inside the final volume that receives its root ("" = the root)


class ResolvedVolume(_Frozen):
    """A mount as it is now. Until its data has moved (`final` listed in the stack's
    `migratedVolumes`), a docker-target volume with legacy data mounts the service's own legacy
    volume (`name`, at its root: no subpath) so a rename never puts a service on an empty
    volume; then `name == final`. Kubernetes starts fresh: no legacy, always migrated."""

    name: str  # Docker volume to mount on this stack now (a legacy one until migrated)
    final: str  # the conventional name, manacore-{service}-data
    claim: str  # Kubernetes PersistentVolumeClaim name (one per pod, never shared)
    path: str  # where `name` is mounted now
    subpath: str | None  # directory inside a shared Docker volume (None while adopted)
    stateful: bool
    size: str
    shared: bool
    legacy: tuple[str, ...] = ()  # legacy Docker volumes whose data belongs here, own first
    sources: tuple[LegacySource, ...] = ()  # the same, with where each one's data goes
    migrated: bool = True  # False: the data still lives in the legacy volume `name`
    # `uid:gid` to hand a managed volume to before its service starts (the image's `runs_as`);
    # never set on a legacy volume, which is read as it is
    owner: str | None = None
    read_only: bool = False  # the backup service's mounts of the volumes it copies


class ResolvedFile(_Frozen):
    """A configuration file the service needs, generated from the catalogue. A file whose
    content references secrets is a secret itself on every target."""

    path: str  # absolute path inside the container
    content: Template
    mode: int = 0o644


class ResolvedPublic(_Frozen):
    host: str  # the first label, as the catalogue declares it: hostname = <host>.<domain>
    hostname: str  # fully qualified
    port: str
    access: bool  # behind a Cloudflare Access application
    open_paths: tuple[str, ...] = ()  # paths of an Access-guarded host that bypass the login
    closed_paths: tuple[str, ...] = ()  # paths the tunnel answers with 404 (never routed)
    service_url: str  # where the tunnel sends requests on this target

    @property
    def url(self) -> str:
        """What browsers open."""
        return f"https://{self.hostname}"


class Database(_Frozen):
    name: str
    owner: str  # service id; the PostgreSQL role has the database's name
    password_secret: str


class ResolvedService(_Frozen):
    id: str
    category: Category
    role: Role
    description: str
    native: bool
    container_name: str  # Docker container
    name: str  # Kubernetes object name
    namespace: str
    host: str  # address as other services on this target see it
    image: str | None
    command: tuple[Template, ...] | None  # arguments; secrets stay references
    ports: tuple[ResolvedPort, ...]
    env: dict[str, Template]
    secrets: tuple[str, ...]  # every secret this service needs (environment, files), by name
    database: str | None
    pg_monitor: str | None  # its PostgreSQL monitoring role
    volumes: tuple[ResolvedVolume, ...]
    hard: tuple[str, ...]
    lazy: tuple[str, ...]
    health: Health | None
    memory: int | None  # bytes
    memory_text: str | None
    public: ResolvedPublic | None
    internet: str | None  # why it reaches public addresses (None: it never does)
    tier: int  # startup tier from the dependency graph (native services: 0, always there)
    workload: Literal["service", "daemon"]
    replicas: int  # pods on Kubernetes (catalog.rules.replicas_of); 1 on Docker
    availability: Availability | None = None  # None: a native service
    runs_as: str | None = None  # uid:gid the image's entrypoint steps down to (Image.runs_as)
    caps: tuple[str, ...] = ()  # capabilities added back after dropping all (Image.caps)
    default_caps: str = ""  # why it keeps Docker's default capabilities (Image.default_caps)
    files: tuple[ResolvedFile, ...] = ()  # generated configuration files
    host_mounts: tuple[HostMount, ...] = ()  # host bind mounts (Kubernetes: host_access only)
    host_access: bool = False  # Kubernetes: host network and PID namespaces (node-exporter)
    writable: tuple[str, ...] = ()  # paths the image writes outside its volumes
    labels: dict[str, str]
    legacy: Legacy
    dump: Dump | None = None  # the backup takes its data through the server (catalog/backup.py)

    def port(self, name: str = "http") -> ResolvedPort:
        for p in self.ports:
            if p.name == name:
                return p
        raise KeyError(f"{self.id} has no port {name!r}")

    def url(self, port: str = "http", scheme: str = "http", path: str = "") -> str:
        return f"{scheme}://{self.host}:{self.port(port).container}{path}"

    @property
    def internal(self) -> dict[str, str]:
        """`host:port` per port name, as other services on this target reach it."""
        return {p.name: f"{self.host}:{p.container}" for p in self.ports}

    @property
    def environment(self) -> dict[str, Template]:
        """The container's whole environment, by name: `env` plus, under its own name, every
        secret in `secrets` that no env value embeds (whole-value secrets such as
        POSTGRES_PASSWORD, and the consumer passwords PostgreSQL's init reads)."""
        embedded = {n for t in self.env.values() for n in t.secrets}
        whole = {n: Template(parts=(SecretRef(secret=n),)) for n in self.secrets
                 if n not in embedded}
        return dict(sorted({**whole, **self.env}.items()))

    @property
    def stateful(self) -> bool:
        return any(v.stateful for v in self.volumes)


class ResolvedEstate(_Frozen):
    settings: StackSettings
    services: tuple[ResolvedService, ...]  # in startup order: tier, then id
    secrets: tuple[Secret, ...]  # every secret some service on this stack needs
    databases: tuple[Database, ...]
    reserved_ports: dict[int, str]  # published ports nobody may take
    monitors: tuple[Database, ...] = ()  # pg_monitor roles (name = role; no database)

    @property
    def target(self) -> Target:
        return self.settings.target

    def __getitem__(self, service_id: str) -> ResolvedService:
        return next(s for s in self.services if s.id == service_id)

    @property
    def containers(self) -> tuple[ResolvedService, ...]:
        return tuple(s for s in self.services if not s.native)

    @property
    def url_secrets(self) -> tuple[str, ...]:
        """Secrets some service writes into a URL (database and Redis passwords)."""
        return tuple(sorted({n for s in self.services
                             for t in (*s.env.values(), *(f.content for f in s.files))
                             for n in t.secrets_in_urls}))


def _hostname(public: Public, settings: StackSettings) -> str:
    """The one place a public hostname is spelt: `<host>.<domain>`."""
    return f"{public.host}.{settings.domain}"


def _address(svc: Service, settings: StackSettings) -> str:
    if settings.target == "kubernetes":
        return f"{svc.id}.{NAMESPACES[svc.category]}.{CLUSTER_DOMAIN}"
    return settings.native_host if svc.native else container_name(svc)


def tiers(estate: Estate, services: list[Service]) -> dict[str, int]:
    """Startup tier per service, from the graph of hard dependencies.

    A service starts one tier after the latest of its hard dependencies (lazy ones don't wait:
    that is their point), and no earlier than its startup class (infra 1, core 2, gateway 3,
    backends 4, frontends 5), so a frontend with only lazy needs still starts last. Native
    services are tier 0: they are always there.
    """
    by_id = {s.id: s for s in services}
    graph = {sid: [d for d in needs if d in by_id]
             for sid, needs in dependency_graph(estate, hard_only=True).items() if sid in by_id}
    tier: dict[str, int] = {}
    for sid in TopologicalSorter(graph).static_order():  # dependencies first
        svc = by_id[sid]
        if svc.native:
            tier[sid] = 0
            continue
        floor = STARTUP_CLASSES.get(svc.role, (1, ""))[0]
        tier[sid] = max(floor, 1 + max((tier[d] for d in graph[sid]), default=0))
    return tier


def _env_value(value: EnvValue, svc: Service, estate: Estate, settings: StackSettings) -> Template:
    def other(sid: str) -> Service:
        found = estate.get(sid)
        assert found is not None  # guaranteed by the rules
        return found

    def port_number(s: Service, name: str) -> int:
        p = s.port(name)
        assert p is not None
        return p.container

    if isinstance(value, str):
        return Template(parts=(value,))
    if isinstance(value, UrlOf):
        target = other(value.service)
        scheme = f"{value.scheme}://" if value.scheme else ""
        return Template(parts=(f"{scheme}{_address(target, settings)}:"
                               f"{port_number(target, value.port)}{value.path}",))
    if isinstance(value, HostOf):
        return Template(parts=(_address(other(value.service), settings),))
    if isinstance(value, PortOf):
        return Template(parts=(str(port_number(other(value.service), value.port)),))
    if isinstance(value, PublicUrl):
        public = other(value.service).public
        assert public is not None
        return Template(parts=(f"https://{_hostname(public, settings)}{value.path}",))
    if isinstance(value, DbUrl):
        pg, db = other("postgres"), svc.database or ""
        return Template(parts=(f"postgresql://{db}:", SecretRef(secret=database_secret(db)),
                               f"@{_address(pg, settings)}:{port_number(pg, 'postgres')}/{db}"))
    if isinstance(value, RedisUrl):
        redis = other("redis")
        return Template(parts=("redis://:", SecretRef(secret="REDIS_PASSWORD"),
                               f"@{_address(redis, settings)}:{port_number(redis, 'redis')}"
                               f"/{value.db}"))
    if isinstance(value, SecretOf):
        return Template(parts=(SecretRef(secret=value.name),))
    raise TypeError(f"unknown env value {value!r}")


def _dir(*parts: str | None) -> str:
    return "/".join(p.strip("/") for p in parts if p)


def _volumes(svc: Service, settings: StackSettings) -> tuple[ResolvedVolume, ...]:
    """The service's mounts; legacy volumes belong to its first stateful volume (docker only,
    and only on a stack that adopts them: `adoptLegacy`; a fresh host has none).
    The own legacy volume's root goes to `<subpath>/<legacy_dir>`, a merged forebear's to
    `<subpath>/merged/<legacy volume>`. Legacy volumes in another server's format
    (`Legacy.objects`) are never mounted: their objects are copied over S3 (exports/migration)."""
    owner = next((i for i, v in enumerate(svc.volumes) if v.stateful), None)
    if svc.legacy.objects is not None:
        owner = None
    out = []
    for i, v in enumerate(svc.volumes):
        final = v.name or volume_name(svc)
        shared = v.subpath is not None
        claim = f"{svc.id}-data" if shared else final.removeprefix("manacore-")
        legacy = tuple(n for n in svc.legacy.volumes if n != final) \
            if i == owner and settings.target == "docker" and settings.adopt_legacy else ()
        sources = tuple(LegacySource(volume=n, into=_dir(v.subpath, v.legacy_dir) if j == 0
                                     else _dir(v.subpath, MERGED_DIR, n))
                        for j, n in enumerate(legacy))
        migrated = not sources or final in settings.migrated_volumes
        name, path, subpath = (final, v.path, v.subpath) if migrated else \
            (sources[0].volume, _dir(v.path, v.legacy_dir) if v.legacy_dir else v.path, None)
        if not path.startswith("/"):
            path = "/" + path
        runs_as = svc.image.runs_as if svc.image and v.stateful and migrated else None
        out.append(ResolvedVolume(name=name, final=final, claim=claim, path=path,
                                  subpath=subpath, stateful=v.stateful, size=v.size,
                                  shared=shared, legacy=legacy, sources=sources,
                                  migrated=migrated, owner=runs_as))
    return tuple(out)


def _check_migrated(services: list[ResolvedService], settings: StackSettings) -> None:
    """A migrated volume the estate does not know is a typo that would hide a real one."""
    movable = sorted({v.final for s in services for v in s.volumes if v.sources})
    unknown = sorted(set(settings.migrated_volumes) - set(movable))
    if unknown:
        raise EstateError([Violation("settings", "migrated-volumes", f"stack {settings.stack}: "
                                     f"{name!r} is not a volume with legacy data here; known: "
                                     f"{', '.join(movable) or 'none'}") for name in unknown])


def _resolve_service(svc: Service, tier: int, estate: Estate,
                     settings: StackSettings) -> ResolvedService:
    env = {k: _env_value(v, svc, estate, settings) for k, v in svc.env.items()}
    lazy = tuple(n.service for n in svc.needs if not n.hard)
    # only our own images read the retry settings; a third-party image ignores them
    if lazy and svc.image is not None and svc.image.own:
        env = {**{k: Template(parts=(v,)) for k, v in LAZY_RETRY_ENV.items()}, **env}
    command = _command(svc, settings)
    secrets = dict.fromkeys(svc.secrets)
    for template in (*env.values(), *(command or ())):
        secrets.update(dict.fromkeys(template.secrets))
    image = None
    if svc.image is not None:
        image = (f"{settings.registry}/{svc.image.repository}:{settings.tag}" if svc.image.own
                 else f"{svc.image.repository}:{svc.image.tag}")
    public = None
    if svc.public is not None:
        p = svc.port(svc.public.port)
        assert p is not None
        public = ResolvedPublic(
            host=svc.public.host, hostname=_hostname(svc.public, settings), port=svc.public.port,
            access=svc.public.access, open_paths=svc.public.open_paths,
            closed_paths=svc.public.closed_paths,
            service_url=f"http://{_address(svc, settings)}:{p.container}")
    return ResolvedService(
        id=svc.id, category=svc.category, role=svc.role, description=svc.description,
        native=svc.native, container_name=container_name(svc), name=svc.id,
        namespace=NAMESPACES[svc.category], host=_address(svc, settings), image=image,
        command=command,
        ports=tuple(ResolvedPort(name=p.name, container=p.container, published=p.published)
                    for p in svc.ports),
        env=dict(sorted(env.items())), secrets=tuple(sorted(secrets)), database=svc.database,
        pg_monitor=svc.pg_monitor,
        runs_as=svc.image.runs_as if svc.image else None,
        caps=svc.image.caps if svc.image else (),
        default_caps=svc.image.default_caps if svc.image else "",
        volumes=_volumes(svc, settings), hard=tuple(n.service for n in svc.needs if n.hard),
        lazy=lazy,
        health=svc.health, memory=parse_memory(svc.memory) if svc.memory else None,
        memory_text=svc.memory, public=public, internet=svc.internet, tier=tier,
        workload=svc.workload,
        # Docker runs one container per service; the budget counts what runs
        replicas=replicas_of(svc) if settings.target == "kubernetes" else 1,
        availability=svc.availability,
        labels={"manacore.service": svc.id, "manacore.category": svc.category,
                "manacore.role": svc.role, "manacore.tier": str(tier)},
        legacy=svc.legacy,
        dump=svc.dump,
        host_mounts=_host_mounts(svc, settings),
        host_access=svc.host_access and settings.target == "kubernetes",
        writable=svc.image.writes if svc.image is not None else (),
    )


def _host_mounts(svc: Service, settings: StackSettings) -> tuple[HostMount, ...]:
    """Docker mounts every host path; Kubernetes only those of a service with host access."""
    return svc.host_mounts if settings.target == "docker" or svc.host_access else ()


def _command(svc: Service, settings: StackSettings) -> tuple[Template, ...] | None:
    """The catalogue's command, plus the arguments of the host mounts this target has (node-
    exporter reads the host's /proc through one)."""
    args = tuple(m.arg for m in _host_mounts(svc, settings) if m.arg)
    if svc.command is None and not args:
        return None
    return tuple(Template(parts=(SecretRef(secret=a.name),)) if isinstance(a, SecretOf)
                 else Template(parts=(a,)) for a in (*(svc.command or ()), *args))


def runs_on(svc: Service, target: Target) -> bool:
    return svc.native or target in svc.targets


def resolve(estate: Estate, settings: StackSettings) -> ResolvedEstate:
    """The estate as it runs on `settings.target`; raises EstateError listing every violation."""
    check(estate, settings)
    services = [s for s in estate.valid_services if runs_on(s, settings.target)]
    tier = tiers(estate, services)
    resolved, failed = [], []
    for svc in services:
        try:
            resolved.append(_resolve_service(svc, tier[svc.id], estate, settings))
        except Exception as exc:  # an estate the rules let through must not end in a traceback
            failed.append(stage_failure(svc.id, "resolve", exc))
    if failed:
        raise EstateError(failed)
    resolved.sort(key=lambda r: (r.tier, r.id))
    _check_migrated(resolved, settings)
    from catalog.backup import attach  # imports this module: not at the top

    resolved = attach(resolved, settings)  # the backup service's mounts, repository, secrets
    databases = tuple(Database(name=s.database, owner=s.id,
                               password_secret=database_secret(s.database))
                      for s in resolved if s.database)
    monitors = tuple(Database(name=s.pg_monitor, owner=s.id,
                              password_secret=database_secret(s.pg_monitor))
                     for s in resolved if s.pg_monitor)
    declared = {x.name: x for x in estate.secrets}
    for db in (*databases, *monitors):
        declared.setdefault(db.password_secret, Secret(
            name=db.password_secret, description=f"password of PostgreSQL role {db.name}"))
    used = {name for s in resolved for name in s.secrets}
    if any(s.id == "postgres" for s in resolved):
        roles = {db.password_secret for db in (*databases, *monitors)}
        used |= roles
        # PostgreSQL creates one role per consumer at first start: its init reads them all
        resolved = [s.model_copy(update={"secrets": tuple(sorted({*s.secrets, *roles}))})
                    if s.id == "postgres" else s for s in resolved]
    # second pass: configuration files generated from the resolved estate (catalog/configs.py)
    from catalog.configs import generated_files  # imports this module: not at the top

    files = generated_files(ResolvedEstate(settings=settings, services=tuple(resolved),
                                           secrets=(), databases=databases,
                                           reserved_ports=estate.reserved_ports,
                                           monitors=monitors))
    # a file's secrets are secrets of its service: every target feeds them from where the
    # service's other secrets come from (on Kubernetes, the Secret the service reads)
    resolved = [s.model_copy(update={"files": files[s.id], "secrets": tuple(sorted(
        {*s.secrets, *(n for f in files[s.id] for n in f.content.secrets)}))})
        if s.id in files else s for s in resolved]
    used |= {n for group in files.values() for f in group for n in f.content.secrets}
    return ResolvedEstate(settings=settings, services=tuple(resolved),
                          secrets=tuple(declared[n] for n in sorted(used)), databases=databases,
                          reserved_ports=estate.reserved_ports, monitors=monitors)
