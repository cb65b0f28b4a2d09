"""The catalogue's vocabulary: what one service declaration may say.

The models are deliberately permissive about *values* (ranges, names, formats): those are
checked by `catalog.rules` across the whole estate, so that every violation is reported at
once instead of the first one raising. Only the *shape* is checked here; a declaration whose
shape is wrong becomes a `Broken` entry (see `service()`), which the rules report too.
"""

from __future__ import annotations

from typing import Annotated, Literal

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
]
Target = Literal["docker", "kubernetes"]
TARGETS: tuple[Target, ...] = ("docker", "kubernetes")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Image(_Model):
    """A container image. `own` images take registry and tag from the stack settings."""

    repository: str
    tag: str | None = None
    own: bool = False


def own(name: str) -> Image:
    """One of ManaCore's own images: `<registry>/<name>:<tag>` from the stack settings."""
    return Image(repository=name, own=True)


def image(ref: str) -> Image:
    """A third-party image written as `repository:tag` (the tag must be pinned)."""
    repository, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return Image(repository=ref)
    return Image(repository=repository, tag=tag)


class Port(_Model):
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


class UrlOf(_Model):
    """`scheme://<address of service>:<port>path` as seen from inside the target."""

    ref: Literal["url"] = "url"
    service: str
    port: str = "http"
    scheme: str = "http"
    path: str = ""


class HostOf(_Model):
    ref: Literal["host"] = "host"
    service: str


class PortOf(_Model):
    ref: Literal["port"] = "port"
    service: str
    port: str = "http"


class PublicUrl(_Model):
    """`https://<public hostname>` of a service, for browsers (frontends)."""

    ref: Literal["public"] = "public"
    service: str
    path: str = ""


class DbUrl(_Model):
    """The PostgreSQL URL of the declaring service's own database, password as a secret."""

    ref: Literal["db"] = "db"


class RedisUrl(_Model):
    ref: Literal["redis"] = "redis"
    db: int = 0


class SecretOf(_Model):
    """The value of a declared secret, inline."""

    ref: Literal["secret"] = "secret"
    name: str


Ref = Annotated[
    UrlOf | HostOf | PortOf | PublicUrl | DbUrl | RedisUrl | SecretOf, Field(discriminator="ref")
]
EnvValue = str | Ref


def url_of(service: str, port: str = "http", *, scheme: str = "http", path: str = "") -> UrlOf:
    return UrlOf(service=service, port=port, scheme=scheme, path=path)


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


class Need(_Model):
    """A dependency. Hard: wait until the target is healthy. Lazy: connect later, with retries."""

    service: str
    hard: bool


def hard(service: str) -> Need:
    return Need(service=service, hard=True)


def lazy(service: str) -> Need:
    return Need(service=service, hard=False)


class Health(_Model):
    """One health check; each target maps it to its own mechanism. Times in seconds.

    `http` or `tcp` is probed over the network, `cmd` runs inside the container. An image
    without curl or wget (distroless cloudflared, minio) gives `cmd` for Docker, which can only
    check from inside, and may add `http` for the kubelet, which then probes it directly."""

    http: str | None = None  # path probed over HTTP on `port`
    cmd: tuple[str, ...] | None = None  # command run inside the container
    tcp: bool = False  # TCP connect on `port`
    port: str = "http"
    interval: int = 30
    timeout: int = 5
    retries: int = 3
    start_period: int = 0


def http(path: str, *, port: str = "http", start_period: int = 0) -> Health:
    return Health(http=path, port=port, start_period=start_period)


def cmd(*argv: str, start_period: int = 0) -> Health:
    return Health(cmd=tuple(argv), start_period=start_period)


def cmd_or_http(argv: tuple[str, ...], path: str, *, port: str = "http",
                start_period: int = 0) -> Health:
    """`cmd` inside the container (Docker), `http` from outside where the target can (kubelet)."""
    return Health(cmd=argv, http=path, port=port, start_period=start_period)


def tcp(port: str = "http", *, start_period: int = 0) -> Health:
    return Health(tcp=True, port=port, start_period=start_period)


class Volume(_Model):
    """A mount. Stateful volumes hold data that must survive every change.

    `name` is the Docker volume (`manacore-{service}-data` unless shared by several services,
    as the Matrix bots' volume is); `subpath` is the directory inside a shared volume.
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


class HostMount(_Model):
    """A host path bind-mounted into the container. Docker target only: the Kubernetes target
    never assumes a node's file system (SPEC: no hostPath)."""

    source: str
    path: str
    read_only: bool = True
    arg: str | None = None  # command argument naming the mount, added only where it exists


class Public(_Model):
    """A public hostname `<host>.<domain>` routed through the Cloudflare tunnel.

    `access=True` puts it behind a Cloudflare Access application (admin UIs)."""

    host: str
    port: str = "http"
    access: bool = False
    # paths under an Access-guarded host that stay open to everyone (Umami's tracker, n8n's
    # webhooks): each gets a more specific Access application that bypasses the login
    open_paths: tuple[str, ...] = ()


class Legacy(_Model):
    """What the service was called before the cleanup, for the migration. `ports` pair with
    the service's ports in order; a merged service (mana-bot) lists all of its forebears',
    containers, ports and volumes in the same order, its own first. Legacy volumes belong to
    the service's first stateful volume. `unverified` names the containers and volumes that
    are inferred, not read from the seed's inventory: check them on the host first."""

    containers: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
    volumes: tuple[str, ...] = ()
    unverified: tuple[str, ...] = ()


class Service(_Model):
    id: str
    category: Category
    role: Role
    description: str = ""
    image: Image | None = None
    command: tuple[str, ...] | None = None
    ports: tuple[Port, ...] = ()
    env: dict[str, EnvValue] = {}
    secrets: tuple[str, ...] = ()  # env vars whose whole value is a declared secret
    database: str | None = None  # owns one PostgreSQL database and role of this name
    volumes: tuple[Volume, ...] = ()
    host_mounts: tuple[HostMount, ...] = ()
    needs: tuple[Need, ...] = ()
    health: Health | None = None
    memory: str | None = None  # limit, Kubernetes quantity ("256Mi")
    public: Public | None = None
    targets: tuple[Target, ...] = TARGETS
    workload: Literal["service", "daemon"] = "service"  # daemon: one per node on Kubernetes
    replicas: int = 1  # Kubernetes only; Docker runs one container per service
    legacy: Legacy = Legacy()

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
    (`ed25519 <key id> <base64 of 32 random bytes>`, Synapse's signing key file)."""

    name: str
    description: str = ""
    generate: bool = True
    kind: Literal["password", "ed25519"] = "password"


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


def service(**fields) -> Service | Broken:
    """Declare a service; a declaration of the wrong shape is kept as `Broken`, not raised."""
    try:
        return Service(**fields)
    except ValidationError as exc:
        errors = tuple(
            f"{'.'.join(str(p) for p in err['loc']) or 'declaration'}: {err['msg']}"
            for err in exc.errors()
        )
        return Broken(id=str(fields.get("id", "<no id>")), errors=errors)
