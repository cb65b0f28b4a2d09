"""Resolution: the validated catalogue plus one stack's settings → one neutral, concrete spec per
service. Every serializer (docker, compose, kubernetes, helm, tunnel, docs) reads only this.

Secrets stay references: an env value is a `Template` of literal text and `SecretRef`s, and
each serializer writes a reference in its own syntax (`${X}` in Compose, `$(X)` on Kubernetes,
a secret Output in Pulumi).
"""

from __future__ import annotations

from collections.abc import Callable
from graphlib import TopologicalSorter
from typing import Literal

from pydantic import BaseModel, ConfigDict

from catalog.model import (
    Category,
    DbUrl,
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


class Template(_Frozen):
    """An env value: literal text and secret references, in order."""

    parts: tuple[str | SecretRef, ...]

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(p.secret for p in self.parts if isinstance(p, SecretRef))

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


class ResolvedFile(_Frozen):
    """A configuration file the service needs, generated from the catalogue. A file whose
    content references secrets is a secret itself on every target."""

    path: str  # absolute path inside the container
    content: Template
    mode: int = 0o644


class ResolvedPublic(_Frozen):
    hostname: str  # fully qualified
    port: str
    access: bool  # behind a Cloudflare Access application
    open_paths: tuple[str, ...] = ()  # paths of an Access-guarded host that bypass the login
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
    command: tuple[str, ...] | None
    ports: tuple[ResolvedPort, ...]
    env: dict[str, Template]
    secrets: tuple[str, ...]  # every secret this service's environment needs, by name
    database: str | None
    volumes: tuple[ResolvedVolume, ...]
    hard: tuple[str, ...]
    lazy: tuple[str, ...]
    health: Health | None
    memory: int | None  # bytes
    memory_text: str | None
    public: ResolvedPublic | None
    tier: int  # startup tier from the dependency graph (native services: 0, always there)
    workload: Literal["service", "daemon"]
    replicas: int  # Kubernetes only
    files: tuple[ResolvedFile, ...] = ()  # generated configuration files
    host_mounts: tuple[HostMount, ...] = ()  # host bind mounts; Docker target only
    labels: dict[str, str]
    legacy: Legacy

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

    @property
    def target(self) -> Target:
        return self.settings.target

    def __getitem__(self, service_id: str) -> ResolvedService:
        return next(s for s in self.services if s.id == service_id)

    @property
    def containers(self) -> tuple[ResolvedService, ...]:
        return tuple(s for s in self.services if not s.native)


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
        return Template(parts=(f"{value.scheme}://{_address(target, settings)}:"
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
    """The service's mounts; legacy volumes belong to its first stateful volume (docker only).
    The own legacy volume's root goes to `<subpath>/<legacy_dir>`, a merged forebear's to
    `<subpath>/merged/<legacy volume>`."""
    owner = next((i for i, v in enumerate(svc.volumes) if v.stateful), None)
    out = []
    for i, v in enumerate(svc.volumes):
        final = v.name or volume_name(svc)
        shared = v.subpath is not None
        claim = f"{svc.id}-data" if shared else final.removeprefix("manacore-")
        legacy = tuple(n for n in svc.legacy.volumes if n != final) \
            if i == owner and settings.target == "docker" else ()
        sources = tuple(LegacySource(volume=n, into=_dir(v.subpath, v.legacy_dir) if j == 0
                                     else _dir(v.subpath, MERGED_DIR, n))
                        for j, n in enumerate(legacy))
        migrated = not sources or final in settings.migrated_volumes
        name, path, subpath = (final, v.path, v.subpath) if migrated else \
            (sources[0].volume, _dir(v.path, v.legacy_dir) if v.legacy_dir else v.path, None)
        if not path.startswith("/"):
            path = "/" + path
        out.append(ResolvedVolume(name=name, final=final, claim=claim, path=path,
                                  subpath=subpath, stateful=v.stateful, size=v.size,
                                  shared=shared, legacy=legacy, sources=sources,
                                  migrated=migrated))
    return tuple(out)


def _check_migrated(services: list[ResolvedService], settings: StackSettings) -> None:
    """A migrated volume the estate does not know is a typo that would hide a real one."""
    movable = sorted({v.final for s in services for v in s.volumes if v.sources})
    unknown = sorted(set(settings.migrated_volumes) - set(movable))
    if unknown:
        raise EstateError([Violation("settings", "migrated-volumes", f"stack {settings.stack}: "
                                     f"{name} is not a volume with legacy data here; known: "
                                     f"{', '.join(movable) or 'none'}") for name in unknown])


def _resolve_service(svc: Service, tier: int, estate: Estate,
                     settings: StackSettings) -> ResolvedService:
    env = {k: _env_value(v, svc, estate, settings) for k, v in svc.env.items()}
    lazy = tuple(n.service for n in svc.needs if not n.hard)
    if lazy:
        env = {**{k: Template(parts=(v,)) for k, v in LAZY_RETRY_ENV.items()}, **env}
    secrets = dict.fromkeys(svc.secrets)
    for template in env.values():
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
            hostname=_hostname(svc.public, settings), port=svc.public.port,
            access=svc.public.access, open_paths=svc.public.open_paths,
            service_url=f"http://{_address(svc, settings)}:{p.container}")
    return ResolvedService(
        id=svc.id, category=svc.category, role=svc.role, description=svc.description,
        native=svc.native, container_name=container_name(svc), name=svc.id,
        namespace=NAMESPACES[svc.category], host=_address(svc, settings), image=image,
        command=_command(svc, settings),
        ports=tuple(ResolvedPort(name=p.name, container=p.container, published=p.published)
                    for p in svc.ports),
        env=dict(sorted(env.items())), secrets=tuple(sorted(secrets)), database=svc.database,
        volumes=_volumes(svc, settings), hard=tuple(n.service for n in svc.needs if n.hard),
        lazy=lazy,
        health=svc.health, memory=parse_memory(svc.memory) if svc.memory else None,
        memory_text=svc.memory, public=public, tier=tier, workload=svc.workload,
        replicas=svc.replicas,
        labels={"manacore.service": svc.id, "manacore.category": svc.category,
                "manacore.role": svc.role, "manacore.tier": str(tier)},
        legacy=svc.legacy,
        host_mounts=svc.host_mounts if settings.target == "docker" else (),
    )


def _command(svc: Service, settings: StackSettings) -> tuple[str, ...] | None:
    """The catalogue's command, plus the arguments of the host mounts this target has (node-
    exporter reads the host's /proc through one on Docker, its own on Kubernetes)."""
    args = tuple(m.arg for m in svc.host_mounts if m.arg) if settings.target == "docker" else ()
    if svc.command is None and not args:
        return None
    return (*(svc.command or ()), *args)


def runs_on(svc: Service, target: Target) -> bool:
    return svc.native or target in svc.targets


def resolve(estate: Estate, settings: StackSettings) -> ResolvedEstate:
    """The estate as it runs on `settings.target`; raises EstateError listing every violation."""
    check(estate, settings)
    services = [s for s in estate.valid_services if runs_on(s, settings.target)]
    tier = tiers(estate, services)
    resolved = sorted((_resolve_service(s, tier[s.id], estate, settings) for s in services),
                      key=lambda r: (r.tier, r.id))
    _check_migrated(resolved, settings)
    databases = tuple(Database(name=s.database, owner=s.id,
                               password_secret=database_secret(s.database))
                      for s in resolved if s.database)
    declared = {x.name: x for x in estate.secrets}
    for db in databases:
        declared.setdefault(db.password_secret, Secret(
            name=db.password_secret, description=f"password of PostgreSQL role {db.name}"))
    used = {name for s in resolved for name in s.secrets}
    if any(s.id == "postgres" for s in resolved):
        used |= {db.password_secret for db in databases}
        # PostgreSQL creates one role per consumer at first start: its init reads them all
        resolved = [s.model_copy(update={"secrets": tuple(sorted(
            {*s.secrets, *(db.password_secret for db in databases)}))}) if s.id == "postgres"
            else s for s in resolved]
    # second pass: configuration files generated from the resolved estate (catalog/configs.py)
    from catalog.configs import generated_files  # imports this module: not at the top

    files = generated_files(ResolvedEstate(settings=settings, services=tuple(resolved),
                                           secrets=(), databases=databases,
                                           reserved_ports=estate.reserved_ports))
    resolved = [s.model_copy(update={"files": files[s.id]}) if s.id in files else s
                for s in resolved]
    used |= {n for group in files.values() for f in group for n in f.content.secrets}
    return ResolvedEstate(settings=settings, services=tuple(resolved),
                          secrets=tuple(declared[n] for n in sorted(used)), databases=databases,
                          reserved_ports=estate.reserved_ports)
