"""The backup plan: what the backup job takes and how each piece is restored, derived from the
resolved estate (never retyped), and what that adds to the backup service itself.

Every stateful service is covered. A service marked with a `dump` in the catalogue is taken
through its server, because a copy of its files would not be consistent while it runs:
PostgreSQL (each database of the estate with pg_dump, the roles with pg_dumpall), Redis (its RDB
through the replication protocol), the object store (every bucket through its S3 API). Every
other stateful volume is mounted read-only into the backup container at
`/volumes/<service><mount path>` (a shared volume through each service's own subpath) and
copied as files. restic takes the whole run as one encrypted, deduplicated snapshot, so a run
is all or nothing.

The same plan drives the restore (ops/backup.py and the image's `manacore-backup restore`):
each item names the services that must be stopped while it is restored.

On Kubernetes a claim is bound to its node (local-path) and mounted only in its own
namespace, so no one pod can mount them all: the backup service is a CronJob that takes what
the servers give (`run --servers`), and each copied claim has a CronJob of its own
(`claim_jobs`) in the claim's namespace, on the claim's node (the scheduler follows the
volume's node affinity; ReadWriteOnce admits a second pod on the same node), reading it as
the claim's service. Each run is one snapshot tagged with its items; a restore takes each
item from the newest snapshot that holds it, so a backup taken on one target restores on the
other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from catalog.model import Dump, HostMount
from catalog.resolve import (
    Database,
    ResolvedService,
    ResolvedVolume,
    SecretRef,
    Template,
)
from catalog.rules import EstateError, Violation
from catalog.settings import StackSettings

ROLE = "backup"  # the catalogue's backup service has this role
PLAN_PATH = "/etc/manacore/backup.json"  # the plan inside the backup container
VOLUMES_ROOT = "/volumes"  # where the backup container sees the volumes it copies
REPOSITORY_MOUNT = "/repository"  # a local repository (`backup.path`) inside the container
PASSWORD_SECRET = "BACKUP_REPOSITORY_PASSWORD"
S3_SECRETS = ("BACKUP_S3_ACCESS_KEY", "BACKUP_S3_SECRET_KEY")  # the repository bucket's keys
JOB = "manacore_backup"  # the Pushgateway job of its metrics
SERVERS = ("run", "--servers")  # the backup job's arguments on Kubernetes (claims: claim_jobs)
# the only secrets a claim's job gets: the repository's password and keys
CLAIM_JOB_ENV = ("RESTIC_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")

Kind = Literal["database", "roles", "redis", "objects", "volume"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Item(_Frozen):
    """One piece of a backup, restored on its own."""

    id: str  # `database:auth`, `roles`, `redis`, `objects`, `volume:synapse:/data`
    kind: Kind
    service: str  # the service whose data it is (selects it: `manacore restore SERVICE`)
    path: str = ""  # volume, redis: the mount in the backup container
    database: str = ""  # database: its name (its role has the same name)
    stop: tuple[str, ...] = ()  # services stopped while it is restored


class Server(_Frozen):
    """A server the backup talks to, and the environment variables of its credentials."""

    service: str
    host: str
    port: int
    credentials: tuple[str, ...]
    user: str | None = None
    url: str = ""  # s3: the endpoint URL


class Plan(_Frozen):
    """What the backup container reads (PLAN_PATH, JSON)."""

    stack: str  # restic's --host: snapshots are grouped by the stack that took them
    repository: str  # restic's repository string (s3:… or the local mount)
    schedule: str | None  # the container's own schedule (Docker); Kubernetes: the CronJobs'
    keep: dict[str, int]
    pushgateway: str | None
    cache: str  # the backup's own volume: staging, the objects' mirror, restore state
    postgres: Server | None = None
    redis: Server | None = None
    objects: Server | None = None
    items: tuple[Item, ...]

    def services(self) -> set[str]:
        """The services whose data it takes (PostgreSQL's: the roles and every database)."""
        return {i.service for i in self.items} | ({self.postgres.service} if self.postgres
                                                  else set())

    def select(self, services: list[str]) -> tuple[Item, ...]:
        """The items of the given services (all when none is given); the PostgreSQL service
        selects the roles and every database."""
        if not services:
            return self.items
        pg = self.postgres.service if self.postgres else None
        return tuple(i for i in self.items if i.service in services
                     or (pg in services and i.kind in ("database", "roles")))


def backup_service(services: Sequence[ResolvedService]) -> ResolvedService | None:
    return next((s for s in services if s.role == ROLE), None)


def repository(settings: StackSettings) -> str:
    """restic's repository: the bucket on the S3 endpoint, or the local mount."""
    b = settings.backup
    if b.s3_endpoint is not None:
        return f"s3:{b.s3_endpoint.rstrip('/')}/{b.bucket}"
    return REPOSITORY_MOUNT


def _dumped(services: list[ResolvedService], kind: str) -> ResolvedService | None:
    return next((s for s in services if s.dump is not None and s.dump.kind == kind), None)


def _server(svc: ResolvedService, dump: Dump) -> Server:
    port = svc.port(dump.port).container
    return Server(service=svc.id, host=svc.host, port=port, credentials=dump.secrets,
                  user=dump.user, url=f"http://{svc.host}:{port}" if dump.kind == "s3" else "")


def mount_path(svc: ResolvedService, volume: ResolvedVolume) -> str:
    return f"{VOLUMES_ROOT}/{svc.id}{volume.path}"


def volume_item(svc: ResolvedService, volume: ResolvedVolume) -> str:
    return f"volume:{svc.id}:{volume.path}"


def copied_volumes(services: Sequence[ResolvedService]
                   ) -> list[tuple[ResolvedService, ResolvedVolume]]:
    """The stateful volumes the backup container mounts: all but those of a server whose data
    is restored through the server itself (PostgreSQL, the object store). Redis's is mounted
    for the restore, which puts the RDB in place while Redis is stopped."""
    return [(s, v) for s in services if s.role != ROLE and not s.native
            for v in s.volumes if v.stateful
            and not (s.dump is not None and s.dump.kind in ("postgres", "s3"))]


def plan(services: Sequence[ResolvedService], databases: tuple[Database, ...],
         settings: StackSettings) -> Plan:
    backup = backup_service(services)
    if backup is None:
        raise ValueError("the estate has no backup service on this stack")
    services = list(services)
    cache = next((v.path for v in backup.volumes if not v.stateful), None)
    if cache is None:
        raise EstateError([Violation(backup.id, "backup", "needs a volume of its own with "
                                     "stateful=False for its staging area and restore state")])
    items: list[Item] = []
    pg, redis, s3 = (_dumped(services, k) for k in ("postgres", "redis", "s3"))
    if pg is not None:
        items.append(Item(id="roles", kind="roles", service=pg.id))
        items += [Item(id=f"database:{db.name}", kind="database", service=db.owner,
                       database=db.name, stop=(db.owner,)) for db in databases]
    if redis is not None:
        v = next(v for v in redis.volumes if v.stateful)
        items.append(Item(id="redis", kind="redis", service=redis.id,
                          path=mount_path(redis, v), stop=(redis.id,)))
    if s3 is not None:
        users = tuple(s.id for s in services if s3.id in (*s.hard, *s.lazy) and s.role != ROLE)
        items.append(Item(id="objects", kind="objects", service=s3.id, stop=users))
    items += [Item(id=volume_item(s, v), kind="volume", service=s.id,
                   path=mount_path(s, v), stop=(s.id,))
              for s, v in copied_volumes(services) if s is not redis]
    push = next((s for s in services if s.id == "pushgateway"), None)
    b = settings.backup
    schedule = b.schedule if settings.target == "docker" else None
    return Plan(stack=settings.stack, repository=repository(settings), schedule=schedule,
                keep=b.keep.model_dump(), pushgateway=push.url() if push else None, cache=cache,
                postgres=_server(pg, pg.dump) if pg and pg.dump else None,
                redis=_server(redis, redis.dump) if redis and redis.dump else None,
                objects=_server(s3, s3.dump) if s3 and s3.dump else None,
                items=tuple(items))


def _secret(name: str) -> Template:
    return Template(parts=(SecretRef(secret=name),))


def _reader(svc: ResolvedService, volume: ResolvedVolume) -> ResolvedVolume:
    """A volume as the backup mounts it: read-only at its mount path; a reader, not an owner
    (no legacy data moves into it in Phase 0, nothing to chown)."""
    return volume.model_copy(update={"path": mount_path(svc, volume), "read_only": True,
                                     "owner": None, "sources": ()})


def files_copied(services: Sequence[ResolvedService]
                 ) -> list[tuple[ResolvedService, ResolvedVolume]]:
    """The volumes a backup copies as files (Redis's is taken through its server)."""
    return [(s, v) for s, v in copied_volumes(services) if s.dump is None]


class ClaimJob(_Frozen):
    """One claim's backup job on Kubernetes: `job` is the backup service as that job runs
    (named after the claim, in the claim's namespace, mounting the claim read-only and its
    own scratch volume, with only the repository's settings and secrets); `service` is the
    claim's service, as whose user it reads and restores the files; `args` select its item.
    `scheduled`: a CronJob copies the claim; Redis's claim (its data is taken through the
    server) is only written by a restore, which puts the RDB in place there."""

    service: str
    item: str
    job: ResolvedService
    args: tuple[str, ...]
    scheduled: bool = True


def claim_jobs(services: Sequence[ResolvedService]) -> list[ClaimJob]:
    """Every claim a backup job reads or a restore writes: each claim copied as files, and
    Redis's."""
    backup = backup_service(services)
    if backup is None:
        return []
    env = {k: t for k, t in backup.env.items() if not t.secrets or k in CLAIM_JOB_ENV}
    secrets = tuple(sorted({n for t in env.values() for n in t.secrets}))
    servers = {s.id for s in services if s.dump is not None}
    own = tuple(v for v in backup.volumes if not v.stateful)
    out = []
    for s, v in copied_volumes(services):
        job = backup.model_copy(update={
            "name": f"{backup.name}-{v.claim}", "namespace": s.namespace,
            "volumes": (*own, _reader(s, v)), "env": env, "secrets": secrets,
            "files": backup.files, "lazy": tuple(d for d in backup.lazy if d not in servers),
            "hard": (), "host_mounts": ()})
        item = "redis" if s.dump is not None else volume_item(s, v)
        out.append(ClaimJob(service=s.id, item=item, job=job, args=("run", "--item", item),
                            scheduled=s.dump is None))
    return out


def attach(services: list[ResolvedService], settings: StackSettings) -> list[ResolvedService]:
    """The backup service as it runs on this stack: the repository (its environment; a local
    path as a bind mount), the servers' and the repository's credentials, and the servers it
    talks to as lazy needs; on Docker a read-only mount of every volume it copies (on
    Kubernetes each claim has a job of its own: claim_jobs). Raises an EstateError when the
    stack names no repository, or a path on Kubernetes."""
    backup = backup_service(services)
    if backup is None:
        return services
    b = settings.backup
    if not b.configured:
        raise EstateError([Violation("settings", "backup", f"stack {settings.stack}: no backup "
                                     "repository: set manacore:backup with s3Endpoint and "
                                     "bucket (off the host), or a local path")])
    kubernetes = settings.target == "kubernetes"
    if kubernetes and b.s3_endpoint is None:
        raise EstateError([Violation("settings", "backup", f"stack {settings.stack}: backup.path "
                                     f"{b.path!r} would be a folder of one node; on Kubernetes "
                                     "the repository is an S3 bucket off the cluster: set "
                                     "s3Endpoint and bucket")])
    mounts = () if kubernetes else tuple(_reader(s, v) for s, v in copied_volumes(services))
    dumps = [s for s in services if s.dump is not None]
    env = {**backup.env, "RESTIC_REPOSITORY": Template(parts=(repository(settings),))}
    secrets = {*backup.secrets, PASSWORD_SECRET, *(n for s in dumps for n in s.dump.secrets)}
    host_mounts = backup.host_mounts
    if b.s3_endpoint is not None:
        env |= {"AWS_ACCESS_KEY_ID": _secret(S3_SECRETS[0]),
                "AWS_SECRET_ACCESS_KEY": _secret(S3_SECRETS[1])}
        secrets |= set(S3_SECRETS)
    else:
        host_mounts = (*host_mounts, HostMount(source=b.path, path=REPOSITORY_MOUNT,
                                               read_only=False, create=True))
    lazy = tuple(dict.fromkeys((*backup.lazy, *(s.id for s in dumps))))
    updated = backup.model_copy(update={
        "volumes": (*backup.volumes, *mounts), "env": dict(sorted(env.items())),
        "secrets": tuple(sorted(secrets)), "host_mounts": host_mounts, "lazy": lazy})
    return [updated if s is backup else s for s in services]


def pods(svc: ResolvedService, services: Sequence[ResolvedService], target: str) -> int:
    """Pods of a service that run at once: its replicas; for the backup on Kubernetes, its
    servers' job and every claim's job, which share one schedule."""
    if svc.role == ROLE and target == "kubernetes":
        return 1 + sum(c.scheduled for c in claim_jobs(services))
    return svc.replicas
