"""The chart's values: pydantic models (whose JSON schema is `values.schema.json`) and the
default values, both from the resolved estate."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from catalog.backup import ROLE as BACKUP
from catalog.resolve import URL_SAFE, ResolvedEstate, ResolvedService
from catalog.settings import BackupSettings, IngressSettings
from exports.kubernetes import (
    FAILOVER_SECONDS,
    MAX_UNAVAILABLE,
    PULL_POLICY,
    WAIT_IMAGE,
    interchangeable,
    namespaces,
    plain_env,
    resources,
)


class _Values(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Image(_Values):
    repository: str = Field(min_length=1)
    tag: str = Field(min_length=1)


class Quantities(_Values):
    cpu: str | None = None
    memory: str | None = None


class Resources(_Values):
    requests: Quantities = Quantities()
    limits: Quantities = Quantities()


class Claim(_Values):
    size: str = Field(pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti)?$")
    storageClass: str = Field("", description="empty: the chart's storageClass")


class External(_Values):
    """Where the service runs when it is not installed (enabled: false), e.g. a managed
    PostgreSQL: every address of the service in the other services' env follows."""

    host: str = ""
    ports: dict[str, int] = Field({}, description="port name → port, where it differs")


class DisruptionBudget(_Values):
    maxUnavailable: int = Field(MAX_UNAVAILABLE, ge=1, description="pods a drain or upgrade may "
                                "take at once (1 or more: 0 would block every drain of their "
                                "nodes); the budget exists while replicas is 2 or more")


class Workload(_Values):
    """A service that runs on every node (a DaemonSet): no replica count."""

    enabled: bool = True
    image: Image
    resources: Resources
    persistence: dict[str, Claim] = {}
    hostnames: list[str] = Field([], description="public hostnames (empty: <host>.<domain>); "
                                                 "the first one is used in the other "
                                                 "services' env")
    env: dict[str, str] = Field({}, description="plain environment, each value a template "
                                                "(tpl) that may use the manacore.host.* helpers")
    existingSecret: str = Field("", description="a Secret in the service's namespace with the "
                                                "keys listed in secretKeys")
    secretKeys: list[str] = Field([], description="informational: the keys this service "
                                                  "reads from its Secret")
    external: External = External()


class Single(Workload):
    """A service that runs as one pod: it must run once (a single database or server process,
    a bot, a scheduler), or one pod mounts its ReadWriteOnce claim. The chart README says
    why for each."""

    replicas: int = Field(1, ge=0, le=1, description="0 or 1: this service runs as one pod "
                          "(see the chart README, Availability)")


class Scalable(Workload):
    """A service whose copies are interchangeable: several replicas spread over nodes, with a
    disruption budget and surge-only rolling updates."""

    replicas: int = Field(ge=0, description="pods, spread over nodes; 2 or more keep it "
                          "serving through the loss, drain or upgrade of a node")
    podDisruptionBudget: DisruptionBudget = DisruptionBudget()


def workload_model(s: ResolvedService) -> type[_Values]:
    if s.native:
        return Native
    if s.workload == "daemon" or s.role == BACKUP:  # every node; the backup's CronJobs
        return Workload
    return Scalable if interchangeable(s) else Single


class Native(_Values):
    enabled: bool = True


class Namespaces(_Values):
    mode: Literal["split", "single"] = "split"
    create: bool = True
    names: dict[str, str]


class NetworkPolicy(_Values):
    enabled: bool = True


def key(service_id: str) -> str:
    """A service's key under `services` (camelCase, as Helm values usually are)."""
    first, *rest = service_id.split("-")
    return first + "".join(p.capitalize() for p in rest)


def namespace_key(namespace: str) -> str:
    return namespace.removeprefix("manacore-")


def model(estate: ResolvedEstate) -> type[BaseModel]:
    """The values model: one field per service and per secret, so a typo is an error."""
    services = create_model(  # type: ignore[call-overload]
        "Services", __config__=ConfigDict(extra="forbid"),
        **{key(s.id): (workload_model(s), ...) for s in estate.services})
    in_urls = set(estate.url_secrets)
    secrets = create_model(  # type: ignore[call-overload]
        "Secrets", __config__=ConfigDict(extra="forbid"),
        **{x.name: (str, Field("", description=x.description,
                               # verbatim in a URL on Kubernetes too ($(NAME) expansion)
                               pattern=URL_SAFE.pattern if x.name in in_urls else None))
           for x in estate.secrets})
    return create_model(  # type: ignore[call-overload]
        "Values", __config__=ConfigDict(extra="forbid"),
        namespaces=(Namespaces, ...), networkPolicy=(NetworkPolicy, NetworkPolicy()),
        domain=(str, Field(..., min_length=1, description="public domain: every hostname is "
                           "<host>.<domain> unless services.X.hostnames says otherwise, and it "
                           "is Matrix's server name")),
        storageClass=(str, Field(..., min_length=1)), nativeHost=(str, Field(..., min_length=1)),
        imagePullPolicy=(Literal["Always", "IfNotPresent", "Never"], PULL_POLICY),
        failoverSeconds=(int, Field(FAILOVER_SECONDS, ge=0, description="seconds a stateless "
                                    "pod stays on a node that stopped answering (not-ready, "
                                    "unreachable) before it is replaced on another one; "
                                    "Kubernetes' default is 300")),
        waitImage=(Image, ...), existingSecret=(str, ""), secrets=(secrets, ...),
        ingress=(IngressSettings, IngressSettings()),
        backup=(BackupSettings, Field(BackupSettings(), description="the backup's restic "
                                      "repository (s3Endpoint, bucket; keys: the secrets "
                                      "BACKUP_S3_ACCESS_KEY, BACKUP_S3_SECRET_KEY) and its "
                                      "schedule (cron, UTC)")),
        services=(services, ...))


def schema(estate: ResolvedEstate) -> dict[str, Any]:
    out = model(estate).model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **out}


def _image(ref: str) -> dict[str, str]:
    repository, _, tag = ref.rpartition(":")
    return {"repository": repository, "tag": tag}


def service_values(s: ResolvedService, text: Any) -> dict[str, Any]:
    """`text` writes an env value as a template (the Helm form's `text`)."""
    if s.native:
        return {"enabled": True}
    assert s.image is not None
    out: dict[str, Any] = {"enabled": True, "image": _image(s.image)}
    if s.workload != "daemon" and s.role != BACKUP:
        out["replicas"] = s.replicas
    if interchangeable(s):
        out["podDisruptionBudget"] = {"maxUnavailable": MAX_UNAVAILABLE}
    out["resources"] = resources(s)
    claims = {v.claim: {"size": v.size, "storageClass": ""} for v in s.volumes if v.stateful}
    if claims:
        out["persistence"] = claims
    if s.public is not None:
        out["hostnames"] = []  # <host>.<domain>: follows `domain`
    out["env"] = {k: text(v) for k, v in plain_env(s).items()}
    if s.secrets:
        out["existingSecret"] = ""
        out["secretKeys"] = list(s.secrets)
    out["external"] = {"host": "", "ports": {}}
    return out


def default_values(estate: ResolvedEstate, text: Any) -> dict[str, Any]:
    settings = estate.settings
    values = {
        "namespaces": {"mode": "split", "create": True,
                       "names": {namespace_key(n): n for n in namespaces(estate)}},
        "networkPolicy": {"enabled": True},
        "domain": settings.domain,
        "storageClass": settings.storage_class,
        "nativeHost": settings.native_host,
        "imagePullPolicy": PULL_POLICY,
        "failoverSeconds": FAILOVER_SECONDS,
        "waitImage": _image(WAIT_IMAGE),
        "existingSecret": "",
        "secrets": {x.name: "" for x in estate.secrets},
        # the stack's setting (off on k3s: the tunnel routes), so the chart's defaults are
        # what the stack deploys
        "ingress": settings.ingress.model_dump(mode="json", by_alias=True),
        "backup": settings.backup.model_dump(mode="json", by_alias=True, exclude_none=True),
        "services": {key(s.id): service_values(s, text) for s in estate.services},
    }
    model(estate).model_validate(values)  # the defaults obey the schema
    return values
