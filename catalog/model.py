"""The catalogue's vocabulary: what one service declaration may say.

The models are deliberately permissive about *values* (ranges, names, formats): those are
checked by `catalog.rules` across the whole estate, so that every violation is reported at
once instead of the first one raising. Only the *shape* is checked here; a declaration whose
shape is wrong becomes a `Broken` entry (see `service()`), which the rules report too.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Category = Literal["infra", "core", "app", "matrix", "mon", "tools", "native"]
Role = Literal[
    "datastore",  # PostgreSQL, Redis: well-known ports, loopback only
    "infra",  # object storage, metrics store, tunnel connector
    "core",  # auth, search
    "gateway",
    "ai",  # native AI services on the 30xx range
    "backend",
    "frontend",
    "matrix",
    "automation",
    "dashboard",
    "exporter",
    "llm",  # native LLM runtime on 11000+
    "updater",  # watchtower
    "backup",  # the scheduled backup job: publishes nothing, runs after what it backs up
]
Target = Literal["docker", "kubernetes"]
TARGETS: tuple[Target, ...] = ("docker", "kubernetes")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def describe(error: Any) -> str:
    """One pydantic error as `field: message (got value)`, without pydantic's own markup."""
    where = ".".join(str(p) for p in error["loc"]) or "declaration"
    got = f" (got {error['input']!r})" if error["type"] not in ("missing",) and \
        not isinstance(error["input"], dict) else ""
    return f"{where}: {error['msg']}{got}"


class Invalid:
    """What a helper object (`Port`, `Volume`, `Public`, `Health` …) becomes when its arguments
    are wrong: kept, not raised, so `service()` reports it against the service and field that
    use it, and every other declaration is still checked."""

    def __init__(self, kind: str, errors: tuple[str, ...]):
        self.kind, self.errors = kind, errors

    def __repr__(self) -> str:
        return f"<invalid {self.kind}: {'; '.join(self.errors)}>"


_INTERNAL = frozenset({"pydantic", "copy", "copyreg"})


def _internal(frame: Any) -> bool:
    """Whether `cls.__new__(cls)` was called by a copier rather than by a declaration."""
    return str(frame.f_globals.get("__name__", "")).split(".")[0] in _INTERNAL


class _Part(_Model):
    """A piece of a declaration. Invalid arguments give an `Invalid` instead of raising at
    import (which would hide every other problem of services.py behind one pydantic trace)."""

    def __new__(cls, *args: Any, **data: Any) -> Any:
        instance = super().__new__(cls)
        if args or (not data and _internal(sys._getframe(1))):
            return instance  # a copy (pydantic, copy, pickle): filled in by its caller
        try:
            cls.__pydantic_validator__.validate_python(data, self_instance=instance)
        except ValidationError as exc:
            return Invalid(cls.__name__, tuple(describe(e) for e in exc.errors()))
        return instance  # validated again by BaseModel.__init__: a custom __init__ would make
        # pydantic build nested models through __new__, turning errors into Invalid ones

    def __getnewargs__(self) -> tuple[Any, ...]:
        return (None,)  # unpickling calls __new__ from C: an argument marks it as a copy


def invalid_parts(value: Any, where: str) -> Iterator[str]:
    """Every error of an `Invalid` helper inside a declaration's value, located by field."""
    if isinstance(value, Invalid):
        yield from (f"{where}: {value.kind}: {e}" for e in value.errors)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from invalid_parts(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from invalid_parts(item, f"{where}.{i}")


class Image(_Part):
    """A container image. `own` images take registry and tag from the stack settings.

    A third-party image also carries what was confirmed about it upstream, next to its pin, so
    the facts can be checked instead of remembered (tests/test_images.py): the tag `scheme` its
    project publishes (catalog/images.py), the `family` of its base (which shell and probe tools
    it has), the `tools` it adds, the `writes` it makes at run time outside its volumes (a
    read-only root needs them writable), where its contract (entrypoint, user, paths, tools) was
    `confirmed`, and where its `arm64` variant was (the Mac Mini is an M4). `runs_as` is the
    `uid:gid` its entrypoint steps down to when started as root: a fresh Docker volume (owned
    by root) must be handed to that user before the server starts.

    Least privilege: every container runs with `no-new-privileges` and all capabilities
    dropped; `caps` are the only ones added back, those its entrypoint needs (chown of its data,
    gosu/su-exec stepping down: SETUID/SETGID), as confirmed upstream. `default_caps` says why
    an image keeps Docker's default set instead (cAdvisor reads the host), or is empty.

    Currency: `checked` is the day (ISO date) the pin was last checked against its upstream
    (release exists, maintained, advisories), `newest` the newest release upstream published by
    then and where that was read (`<tag> (<source>)`); `manacore images` reports both.
    `package` names the same release as an OSV-covered package (`npm:n8n`, `pypi:…`, `go:…`,
    `crate:…`) when upstream publishes one: Renovate's vulnerability alerts only know package
    ecosystems, never images (renovate.json)."""

    repository: str
    tag: str | None = None
    own: bool = False
    scheme: str | None = None
    family: str | None = None
    tools: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    confirmed: str = ""
    arm64: str = ""
    runs_as: str | None = Field(default=None, pattern=r"^[0-9]+:[0-9]+$")
    caps: tuple[Annotated[str, Field(pattern=r"^[A-Z_]+$")], ...] = ()
    default_caps: str = ""
    checked: str = Field(default="", pattern=r"^(\d{4}-\d{2}-\d{2})?$")
    newest: str = ""
    package: str | None = Field(default=None, pattern=r"^(npm|pypi|go|crate):\S+$")


def own(name: str, *, caps: tuple[str, ...] = ()) -> Image:
    """One of ManaCore's own images: `<registry>/<name>:<tag>` from the stack settings; `caps`
    as for a third-party image (our Dockerfile says why it needs them)."""
    return Image(repository=name, own=True, caps=caps)


def image(ref: str, *, package: str | None = None, scheme: str | None = None,
          family: str | None = None, tools: tuple[str, ...] = (), writes: tuple[str, ...] = (),
          confirmed: str = "", arm64: str = "", runs_as: str | None = None,
          caps: tuple[str, ...] = (), default_caps: str = "", checked: str = "",
          newest: str = "") -> Image:
    """A third-party image written as `repository:tag` (the tag must be pinned), with the facts
    confirmed upstream (see `Image`). `package`, when given, comes right after the reference:
    renovate.json finds the two together."""
    facts = {"scheme": scheme, "family": family, "tools": tools, "writes": writes,
             "confirmed": confirmed, "arm64": arm64, "runs_as": runs_as, "caps": caps,
             "default_caps": default_caps, "checked": checked, "newest": newest,
             "package": package}
    repository, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return Image(repository=ref, **facts)
    return Image(repository=repository, tag=tag, **facts)


class Port(_Part):
    """A port the service listens on. `published` is the host port (None: internal only)."""

    container: int
    published: int | None = None
    name: str = "http"


def port(number: int, name: str = "http", *, container: int | None = None) -> Port:
    """A published port; `container` differs when a third-party image listens elsewhere."""
    return Port(container=container or number, published=number, name=name)


def internal(number: int, name: str = "http") -> Port:
    """A port reachable on the internal network only."""
    return Port(container=number, published=None, name=name)


# --- symbolic environment values: resolved per target by catalog.resolve -----------------


class UrlOf(_Part):
    """`scheme://<address of service>:<port>path` as seen from inside the target."""

    ref: Literal["url"] = "url"
    service: str
    port: str = "http"
    scheme: str = "http"
    path: str = ""


class HostOf(_Part):
    ref: Literal["host"] = "host"
    service: str


class PortOf(_Part):
    ref: Literal["port"] = "port"
    service: str
    port: str = "http"


class PublicUrl(_Part):
    """`https://<public hostname>` of a service, for browsers (frontends)."""

    ref: Literal["public"] = "public"
    service: str
    path: str = ""


class DbUrl(_Part):
    """The PostgreSQL URL of the declaring service's own database, password as a secret."""

    ref: Literal["db"] = "db"


class RedisUrl(_Part):
    ref: Literal["redis"] = "redis"
    db: int = 0


class SecretOf(_Part):
    """The value of a declared secret, inline."""

    ref: Literal["secret"] = "secret"
    name: str


Ref = Annotated[
    UrlOf | HostOf | PortOf | PublicUrl | DbUrl | RedisUrl | SecretOf, Field(discriminator="ref")
]
EnvValue = str | Ref


def url_of(service: str, port: str = "http", *, scheme: str = "http", path: str = "") -> UrlOf:
    return UrlOf(service=service, port=port, scheme=scheme, path=path)


def address_of(service: str, port: str = "http", *, path: str = "") -> UrlOf:
    """`<address>:<port>path` without a scheme, for images that put the scheme in front."""
    return UrlOf(service=service, port=port, scheme="", path=path)


def host_of(service: str) -> HostOf:
    return HostOf(service=service)


def port_of(service: str, port: str = "http") -> PortOf:
    return PortOf(service=service, port=port)


def public_url(service: str, path: str = "") -> PublicUrl:
    return PublicUrl(service=service, path=path)


def db_url() -> DbUrl:
    return DbUrl()


def redis_url(db: int = 0) -> RedisUrl:
    return RedisUrl(db=db)


def secret(name: str) -> SecretOf:
    return SecretOf(name=name)


# --- the rest of a declaration -----------------------------------------------------------


class Need(_Part):
    """A dependency. Hard: wait until the target is healthy. Lazy: connect later, with retries."""

    service: str
    hard: bool


def hard(service: str) -> Need:
    return Need(service=service, hard=True)


def lazy(service: str) -> Need:
    return Need(service=service, hard=False)


class Health(_Part):
    """One health check; each target maps it to its own mechanism. Times in seconds.

    `http` or `tcp` is probed over the network, `cmd` runs inside the container. An image
    without curl or wget (distroless cloudflared, Garage from scratch) gives `cmd` for Docker,
    which can only check from inside, and may add `http` for the kubelet, which then probes it
    directly."""

    http: str | None = None  # path probed over HTTP on `port`
    cmd: tuple[str, ...] | None = None  # command run inside the container
    tcp: bool = False  # TCP connect on `port`
    port: str = "http"
    interval: int = 30  # steady state: one probe per interval
    timeout: int = 5
    retries: int = 3
    # The time a service may take to start: probed every `start_interval` meanwhile, the first
    # success makes it healthy at once and failures do not count. Without it a container's
    # first probe waits a whole `interval` (Docker Engine >= 25; `start_interval` needs 25),
    # which made every dependency tier cost ~30 s.
    start_period: int = 30
    start_interval: int = 2


def http(path: str, *, port: str = "http", start_period: int = 30) -> Health:
    return Health(http=path, port=port, start_period=start_period)


def cmd(*argv: str, start_period: int = 30) -> Health:
    return Health(cmd=tuple(argv), start_period=start_period)


def cmd_or_http(argv: tuple[str, ...], path: str, *, port: str = "http",
                start_period: int = 30) -> Health:
    """`cmd` inside the container (Docker), `http` from outside where the target can (kubelet)."""
    return Health(cmd=argv, http=path, port=port, start_period=start_period)


def tcp(port: str = "http", *, start_period: int = 30) -> Health:
    return Health(tcp=True, port=port, start_period=start_period)


class Volume(_Part):
    """A mount. Stateful volumes hold data that must survive every change.

    `name` is the Docker volume (`manacore-{service}-data` unless shared by several services,
    as the Matrix bots' volume is); `subpath` is the directory inside a shared volume.
    `shared` declares that several services mount this volume on purpose (each its own
    `subpath`): a service's own volume is mounted by that service alone (rule data-safety).
    `legacy_dir` is where the root of the service's legacy volume belongs inside this one, when
    the new layout keeps the data one level down (PostgreSQL's `PGDATA=…/pgdata`, while the
    legacy volume held the cluster at its root).
    """

    path: str
    name: str | None = None
    subpath: str | None = None
    stateful: bool = True
    size: str = "1Gi"
    legacy_dir: str | None = None
    shared: bool = False


class Dump(_Part):
    """How the backup takes a service's data through the server itself, because a copy of its
    volume's files would not be consistent while it runs (catalog/backup.py): `postgres` (every
    database and the roles, pg_dump/pg_dumpall), `redis` (its RDB, through the replication
    protocol) or `s3` (every bucket through the S3 API: the object store). `port` is the port
    it connects to; `secrets` the credentials, in the order that kind needs them (postgres,
    redis: the password; s3: access key, secret key)."""

    kind: Literal["postgres", "redis", "s3"]
    port: str
    secrets: tuple[str, ...]
    user: str | None = None  # postgres: the superuser the dump logs in as


def dump(kind: Literal["postgres", "redis", "s3"], *secrets: str, port: str,
         user: str | None = None) -> Dump:
    return Dump(kind=kind, port=port, secrets=secrets, user=user)


class HostMount(_Part):
    """A host path bind-mounted into the container. Docker target only: the Kubernetes target
    never assumes a node's file system (SPEC: no hostPath), except for a daemon with
    `host_access` (node-exporter), which reads its node's own file systems there too."""

    source: str
    path: str
    read_only: bool = True
    arg: str | None = None  # command argument naming the mount, added only where it exists
    # why this service may reach the Docker socket through this mount (the socket itself or
    # its directory): whoever talks to it controls the host's Docker, so it is root-equivalent,
    # read-only or not (a read-only bind mount does not stop connect() on a socket)
    root_equivalent: str = ""
    # made when missing (a local backup repository): Docker's bind mounts refuse a missing
    # source; the backup never initialises a repository by itself, so a missing disk is an
    # error of every run, not a silent new repository
    create: bool = False


class Public(_Part):
    """A public hostname `<host>.<domain>` routed through the Cloudflare tunnel.

    `access=True` puts it behind a Cloudflare Access application (admin UIs)."""

    host: str
    port: str = "http"
    access: bool = False
    # paths under an Access-guarded host that stay open to everyone (Umami's tracker, n8n's
    # webhooks): each gets a more specific Access application that bypasses the login
    open_paths: tuple[str, ...] = ()
    # paths never reachable from outside (the tunnel answers 404 before the host's own rule,
    # with or without Access): Synapse's admin API
    closed_paths: tuple[str, ...] = ()


Importance = Literal["user-facing", "operator", "background"]
Copies = Literal["many", "one"]


class Availability(_Part):
    """How a service lives through the loss of a copy (self-healing on Kubernetes).

    `copies`: whether several copies may run at once ("many": they are interchangeable, e.g. a
    stateless HTTP server; "one": it must run once, e.g. a scheduler, a bot polling its
    account, a single database process). `importance`: who misses it while it is down —
    "user-facing" (a user's request passes through it or waits on it), "operator" (admin UIs
    and tools behind Cloudflare Access), "background" (nobody waits on it: metrics, reports).
    `why`: the evidence, next to the fact — for a third-party image where upstream says so
    (a document or source file), for our own images the assumption they are built on.

    On Kubernetes a user-facing stateless service with many copies runs several replicas, with
    a disruption budget, surge-only rolling updates and a spread over nodes; one that must run
    once is replaced, never doubled (`catalog.rules.replicas_of`, `exports.kubernetes`). Docker
    runs one container per service whatever this says."""

    copies: Copies
    importance: Importance
    why: str


def many(importance: Importance, why: str) -> Availability:
    """Several copies may run at once (see `Availability`)."""
    return Availability(copies="many", importance=importance, why=why)


def once(importance: Importance, why: str) -> Availability:
    """It must run as one copy (see `Availability`); `why` says why."""
    return Availability(copies="one", importance=importance, why=why)


class Legacy(_Part):
    """What the service was called before the cleanup, for the migration. `ports` pair with
    the service's ports in order; a merged service (mana-bot) lists all of its forebears',
    containers, ports and volumes in the same order, its own first. Legacy volumes belong to
    the service's first stateful volume. `unverified` names the containers and volumes that
    are inferred, not read from the seed's inventory: check them on the host first."""

    containers: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
    volumes: tuple[str, ...] = ()
    unverified: tuple[str, ...] = ()
    # set when the legacy volumes hold another server's on-disk format (MinIO's): they are
    # never mounted by the new service; Phase 0 copies their objects over S3 instead
    objects: LegacyObjects | None = None


class LegacyObjects(_Part):
    """How the legacy object store served its volume, for the object copy of Phase 0: the
    legacy `image` (present on the old host, which runs it), its `command`, the S3 `port` it
    listens on and the environment variables holding its access and secret key."""

    image: str
    command: tuple[str, ...] = ()
    port: int
    path: str  # where its volume is mounted
    access_key: str  # env var of the legacy container: the S3 access key
    secret_key: str  # env var of the legacy container: the S3 secret key
    into_keys: tuple[str, str]  # the secrets of the new store's key the copy writes with
    source: str = ""  # where this contract was read


Legacy.model_rebuild()


class Service(_Model):
    id: str
    category: Category
    role: Role
    description: str = ""
    image: Image | None = None
    # arguments; a `secret(…)` is written as a reference in each target's syntax (Redis takes
    # its password as an argument, and its entrypoint must see `redis-server` first)
    command: tuple[str | SecretOf, ...] | None = None
    ports: tuple[Port, ...] = ()
    env: dict[str, EnvValue] = {}
    secrets: tuple[str, ...] = ()  # env vars whose whole value is a declared secret
    database: str | None = None  # owns one PostgreSQL database and role of this name
    # logs in to PostgreSQL as this role, which may read statistics (pg_monitor) and connect to
    # the maintenance database only: a metrics exporter, never as the superuser
    pg_monitor: str | None = None
    volumes: tuple[Volume, ...] = ()
    host_mounts: tuple[HostMount, ...] = ()
    needs: tuple[Need, ...] = ()
    health: Health | None = None
    memory: str | None = None  # limit, Kubernetes quantity ("256Mi")
    public: Public | None = None
    # why the service reaches public addresses (an API, federation, a tunnel's edge); None:
    # it never does, and on Kubernetes its pods may reach only DNS and what it depends on
    internet: str | None = None
    targets: tuple[Target, ...] = TARGETS
    workload: Literal["service", "daemon"] = "service"  # daemon: one per node on Kubernetes
    # the host's view on Kubernetes too: host network and PID namespaces and its host mounts,
    # read-only (SPEC allows it for node-exporter's DaemonSet alone; rule host-access)
    host_access: bool = False
    # how it survives the loss of a copy (Kubernetes); every container declares it
    availability: Availability | None = None
    # Kubernetes pods; None: derived from `availability` (catalog.rules.replicas_of). Docker
    # runs one container per service
    replicas: int | None = Field(default=None, ge=1)
    legacy: Legacy = Legacy()
    # the backup takes this service's data through the server (its volumes are not copied)
    dump: Dump | None = None

    @property
    def native(self) -> bool:
        return self.category == "native"

    def port(self, name: str) -> Port | None:
        return next((p for p in self.ports if p.name == name), None)


def database_secret(database: str) -> str:
    """The secret holding the password of a service's PostgreSQL role."""
    return f"{database.upper()}_DB_PASSWORD"


class Broken(_Model):
    """A declaration whose shape is wrong; the rules report its errors with the others."""

    id: str
    errors: tuple[str, ...]


class Secret(_Model):
    """A secret value known by name. Generated ones come from `pulumi_random` if unset, in
    their `kind`: a password (32 letters and digits), or a Matrix signing key line
    (`ed25519 <key id> <base64 of 32 random bytes>`, Synapse's signing key file), or 32 random
    bytes as 64 hex digits (`hex32`: Garage's RPC secret). `follows_data`: the data was made
    with this value (encrypted, signed, hashed with it), so where the data moves (`manacore
    move`) the value must be the same."""

    name: str
    description: str = ""
    generate: bool = True
    kind: Literal["password", "ed25519", "hex32"] = "password"
    follows_data: bool = False


ED25519_KEY_ID = "a_mana"  # the key id of a generated signing key


class Estate(_Model):
    services: tuple[Service | Broken, ...]
    secrets: tuple[Secret, ...] = ()
    reserved_ports: dict[int, str] = {}

    def _indexed(self) -> tuple[tuple[Service, ...], dict[str, Service]]:
        """The valid services, and by id: the rules and resolution look services up all the
        time. Kept in the instance's __dict__ beside the fields (not a field: equality and dumps
        ignore it), checked against the `services` tuple it was made from (a model_copy that
        replaces that tuple gets a new index)."""
        cached = self.__dict__.get("services_index")
        if cached is None or cached[0] is not self.services:
            valid = tuple(s for s in self.services if isinstance(s, Service))
            cached = self.__dict__["services_index"] = (
                self.services, valid, {s.id: s for s in reversed(valid)})
        return cached[1], cached[2]

    @property
    def valid_services(self) -> tuple[Service, ...]:
        return self._indexed()[0]

    def get(self, service_id: str) -> Service | None:
        return self._indexed()[1].get(service_id)


def _within(loc: tuple[Any, ...], where: str) -> bool:
    text = ".".join(map(str, loc))
    return text == where or text.startswith(f"{where}.")


def service(**fields: Any) -> Service | Broken:
    """Declare a service; a declaration of the wrong shape (its own or that of a helper object
    inside it) is kept as `Broken`, not raised."""
    parts = [e for key, value in fields.items() for e in invalid_parts(value, key)]
    try:
        if not parts:
            return Service(**fields)
        Service(**fields)
    except ValidationError as exc:
        # an invalid helper already explains the error pydantic reports at its place
        located = {e.split(": ", 1)[0] for e in parts}
        parts += [describe(e) for e in exc.errors()
                  if not any(_within(e["loc"], p) for p in located)]
    return Broken(id=str(fields.get("id", "<no id>")), errors=tuple(parts))
