"""Stack settings: one model, read from `pulumi.Config` in the program and from
`Pulumi.<stack>.yaml` by the CLI, so exports work without the Pulumi CLI.

Secret values are never settings: they live in the stack config as `secure:` values under the
secret's own name (`manacore:GEMINI_API_KEY`) and are only ever referenced.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel, to_snake

from catalog import yamltext
from catalog.model import Target
from catalog.units import parse_memory

PROJECT = "manacore"
LEGACY_STACK = "macmini"  # the host whose legacy volumes Phase 0 adopts
ROOT = Path(__file__).resolve().parent.parent


class SettingsError(Exception):
    """Stack settings that cannot be used; `problems` lists every one of them. `unreadable`:
    the stack file itself cannot be read (the CLI exits 2, not 1)."""

    def __init__(self, stack: str, problems: list[str], *, unreadable: bool = False):
        self.stack, self.problems, self.unreadable = stack, problems, unreadable
        super().__init__(f"stack {stack}: " + "; ".join(problems))


# What each free-text setting may hold (checked here, so a typo never surfaces later as
# dozens of misleading violations of the rules that use it).
_DNS_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
DOMAIN = re.compile(rf"^(?=.{{1,253}}$)({_DNS_LABEL}\.)+[a-z]([a-z0-9-]{{0,61}}[a-z0-9])?$")
HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_DNS_LABEL}(\.{_DNS_LABEL})*$")
REGISTRY = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?"
                      r"(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$")
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DOCKER_HOST = re.compile(r"^(unix|ssh|tcp|npipe)://\S+$")
NETWORK = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
CLOUDFLARE_ID = re.compile(r"^[0-9a-f]{32}$")
ACCESS_TEAM = re.compile(rf"^{_DNS_LABEL}$")  # <team>.cloudflareaccess.com
AUD_TAG = re.compile(r"^[0-9a-f]{64}$")  # an Access application's Application Audience (AUD) tag
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
SECRET_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


CRON = re.compile(r"^(@(hourly|daily|weekly|monthly)|(\S+\s+){4}\S+)$")  # 5 fields, or a macro
CRON_FIELD = re.compile(r"^[0-9*/,-]+$")
S3_ENDPOINT = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")  # S3 bucket naming rules


def _matches(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return check


class Keep(BaseModel):
    """Retention: how many of the newest snapshots to keep per hour, day, week, month and year
    (restic forget --keep-*); every other snapshot is forgotten and its data pruned."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hourly: int = Field(default=24, ge=0)
    daily: int = Field(default=7, ge=0)
    weekly: int = Field(default=5, ge=0)
    monthly: int = Field(default=12, ge=0)
    yearly: int = Field(default=2, ge=0)


class BackupSettings(BaseModel):
    """Where and when the backup job writes its restic repository (catalog/backup.py).

    The repository is off the host in an S3 bucket (`s3Endpoint` + `bucket`, the stack's
    snapshots under the prefix `<stack>`, keys from the secrets BACKUP_S3_ACCESS_KEY and
    BACKUP_S3_SECRET_KEY), or a local `path` on the Docker host (a second disk), never both.
    The repository password is the secret BACKUP_REPOSITORY_PASSWORD. `schedule` is a cron
    expression (default: every hour, so at most one hour of data is at risk)."""

    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel,
                              populate_by_name=True)

    s3_endpoint: str | None = None
    bucket: str | None = None
    path: str | None = None
    schedule: str = "0 * * * *"
    keep: Keep = Keep()

    _endpoint = field_validator("s3_endpoint")(_matches(
        S3_ENDPOINT, "an S3 endpoint like https://s3.example.com (scheme, host, port only)"))
    _bucket = field_validator("bucket")(_matches(
        BUCKET, "an S3 bucket name (3-63 lowercase letters, digits, '.', '-')"))

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or any(c.isspace() or c == ":" for c in value):
            raise ValueError(f"{value!r} is not an absolute host path without spaces or ':'")
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        if not CRON.fullmatch(value) or not (value.startswith("@") or all(
                CRON_FIELD.fullmatch(f) for f in value.split())):
            raise ValueError(f"{value!r} is not a cron expression like '0 * * * *' (minute "
                             "hour day month weekday) or @hourly/@daily")
        return value

    @model_validator(mode="after")
    def _one_repository(self) -> BackupSettings:
        s3 = self.s3_endpoint is not None or self.bucket is not None
        if s3 and (self.s3_endpoint is None or self.bucket is None):
            raise ValueError("an S3 repository needs both s3Endpoint and bucket")
        if s3 and self.path is not None:
            raise ValueError("the repository is either on S3 (s3Endpoint, bucket) or a local "
                             "path, not both")
        return self

    @property
    def configured(self) -> bool:
        return self.s3_endpoint is not None or self.path is not None


_CAMEL = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)
TRAEFIK_PODS = {"app.kubernetes.io/name": "traefik"}  # K3s' Traefik in kube-system
OBJECT_NAME = r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$"  # a Kubernetes object name, or empty
ANNOTATION_KEY = r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"


class IngressTLS(BaseModel):
    """TLS of every routed hostname: each Ingress lists its hosts under a Secret, `secretName`
    (one certificate for all, e.g. a wildcard of the domain, in every namespace that holds an
    Ingress) or `<service>-tls` per service; with `clusterIssuer`, cert-manager issues those
    Secrets itself (annotation cert-manager.io/cluster-issuer)."""

    model_config = _CAMEL

    enabled: bool = True
    secret_name: str = Field("", pattern=OBJECT_NAME, description="one TLS Secret for every "
                             "host (empty: <service>-tls per service)")
    cluster_issuer: str = Field("", pattern=OBJECT_NAME, description="a cert-manager "
                                "ClusterIssuer that issues the Secrets (empty: you create them)")


class IngressController(BaseModel):
    """Where the ingress controller's pods run: the NetworkPolicies admit them (and nothing
    else from outside the estate) to the routed services. K3s ships Traefik in kube-system."""

    model_config = _CAMEL

    namespace: str = Field("kube-system", pattern=OBJECT_NAME, min_length=1)
    # empty: TRAEFIK_PODS (a default map in values.yaml would be merged with the user's, not
    # replaced, by Helm)
    pod_labels: dict[str, str] = Field({}, description="labels of the controller's pods "
                                       "(empty: app.kubernetes.io/name=traefik, as K3s runs it)")

    @property
    def pods(self) -> dict[str, str]:
        return dict(self.pod_labels) or dict(TRAEFIK_PODS)


class BasicAuth(BaseModel):
    model_config = _CAMEL

    secret: str = Field("", pattern=OBJECT_NAME, description="a Secret in the namespace of "
                        "each guarded service: one key holding htpasswd lines (htpasswd -nbB), "
                        "or of type kubernetes.io/basic-auth")


class ForwardAuth(BaseModel):
    model_config = _CAMEL

    address: str = Field("", pattern=r"^(https?://[^\s/]+(/\S*)?)?$", description="the "
                         "authentication service Traefik asks for every request (your SSO's "
                         "forward-auth endpoint, e.g. oauth2-proxy's /oauth2/auth)")
    trust_forward_header: bool = False
    auth_response_headers: tuple[str, ...] = Field((), description="headers of the "
                                                   "authentication response passed on")


class IngressSettings(BaseModel):
    """A standard Ingress (networking.k8s.io/v1) per public hostname of the catalogue, beside
    or instead of the Cloudflare tunnel (exports.kubernetes.ingress_objects). Admin UIs (the
    hosts that need Cloudflare Access) are routed only behind `protect`: a Traefik Middleware
    (basicAuth from a Secret, or forwardAuth to your SSO); `omit` leaves them out."""

    model_config = ConfigDict(**_CAMEL, json_schema_extra={"allOf": [
        {"if": {"properties": {"protect": {"const": "basicAuth"}}, "required": ["protect"]},
         "then": {"properties": {"basicAuth": {"required": ["secret"], "properties": {
             "secret": {"minLength": 1}}}}, "required": ["basicAuth"]}},
        {"if": {"properties": {"protect": {"const": "forwardAuth"}}, "required": ["protect"]},
         "then": {"properties": {"forwardAuth": {"required": ["address"], "properties": {
             "address": {"minLength": 1}}}}, "required": ["forwardAuth"]}}]})

    enabled: bool = False
    class_name: str = Field("traefik", min_length=1, description="the IngressClass (K3s: "
                            "traefik)")
    annotations: dict[Annotated[str, StringConstraints(pattern=ANNOTATION_KEY)], str] = Field(
        {}, description="added to every Ingress",
        json_schema_extra={"propertyNames": {"pattern": ANNOTATION_KEY}})
    tls: IngressTLS = IngressTLS()
    protect: Literal["omit", "basicAuth", "forwardAuth"] = Field(
        "omit", description="the admin UIs: omit (not routed; NOTES warns), or behind a "
        "Traefik Middleware: basicAuth or forwardAuth")
    basic_auth: BasicAuth = BasicAuth()
    forward_auth: ForwardAuth = ForwardAuth()
    controller: IngressController = IngressController()

    @model_validator(mode="after")
    def _protection(self) -> IngressSettings:
        if self.protect == "basicAuth" and not self.basic_auth.secret:
            raise ValueError("protect basicAuth needs basicAuth.secret (a Secret with one key "
                             "holding htpasswd lines, in each guarded service's namespace)")
        if self.protect == "forwardAuth" and not self.forward_auth.address:
            raise ValueError("protect forwardAuth needs forwardAuth.address (your SSO's "
                             "forward-auth URL)")
        return self


class StackSettings(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )

    stack: str
    target: Target
    domain: str
    registry: str  # where our own images live, e.g. ghcr.io/manacore
    tag: str  # the release of our own images
    memory_budget: str  # memory the host (or cluster) gives the estate
    docker_host: str | None = None  # docker target: unix:// socket or ssh://user@host
    kube_context: str | None = None  # kubernetes target
    storage_class: str = "local-path"
    native_host: str = "host.docker.internal"  # where the native macOS services listen
    network: str = "manacore"  # the shared Docker network
    # the tunnel connector's Docker network: it and the services it routes to, nothing else
    edge_network: str = "manacore-edge"
    cloudflare_account_id: str | None = None
    cloudflare_zone_id: str | None = None
    access_emails: tuple[str, ...] = ()  # who passes Cloudflare Access to the admin UIs
    # a locally-managed config.yml (`manacore render tunnel`): cloudflared itself enforces
    # Access on a guarded host given the Zero Trust team name and, per service id, the AUD tag
    # of the Access application created for its hostname
    access_team_name: str | None = None
    access_aud_tags: dict[str, str] = {}
    migrated_volumes: tuple[str, ...] = ()  # new volume names whose data has been moved
    # Phase 0: mount the Mac Mini's legacy volumes (read, never created) until migrated. A new
    # Docker host (a customer, a test) starts fresh: every volume created and managed.
    adopt_legacy: bool | None = None  # default: true on stack macmini, false elsewhere
    backup: BackupSettings = BackupSettings()  # the restic repository, schedule, retention
    ingress: IngressSettings = IngressSettings()  # kubernetes target: Ingress beside the tunnel

    @model_validator(mode="after")
    def _adopt_default(self) -> StackSettings:
        if self.adopt_legacy is None:
            object.__setattr__(self, "adopt_legacy", self.stack == LEGACY_STACK)
        return self

    @field_validator("memory_budget")
    @classmethod
    def _memory(cls, value: str) -> str:
        if parse_memory(value) <= 0:
            raise ValueError(f"{value!r} leaves no memory for the estate")
        return value

    _domain = field_validator("domain")(_matches(
        DOMAIN, "a lowercase DNS domain like mana.how (no scheme, port, path or spaces)"))
    _registry = field_validator("registry")(_matches(
        REGISTRY, "an image registry path like ghcr.io/manacore (lowercase, no spaces)"))
    _tag = field_validator("tag")(_matches(
        TAG, "an image tag like 2026.11.0 (letters, digits, '_', '.', '-')"))
    _docker_host = field_validator("docker_host")(_matches(
        DOCKER_HOST, "a Docker host like unix:///var/run/docker.sock or ssh://user@macmini"))
    _storage_class = field_validator("storage_class")(_matches(
        HOSTNAME, "a Kubernetes storage class name like local-path"))
    _network = field_validator("network", "edge_network")(_matches(NETWORK,
                                                                   "a Docker network name"))

    @model_validator(mode="after")
    def _ingress_target(self) -> StackSettings:
        if self.ingress.enabled and self.target != "kubernetes":
            raise ValueError("ingress.enabled: an Ingress is a Kubernetes object; on a docker "
                             "target the tunnel connector is the way in")
        return self

    @model_validator(mode="after")
    def _two_networks(self) -> StackSettings:
        if self.edge_network == self.network:
            raise ValueError(f"edgeNetwork and network are both {self.network!r}: the tunnel "
                             "connector's network must be a network of its own")
        return self
    _cloudflare = field_validator("cloudflare_account_id", "cloudflare_zone_id")(_matches(
        CLOUDFLARE_ID, "a Cloudflare id (32 hexadecimal digits)"))

    @field_validator("native_host")
    @classmethod
    def _native_host(cls, value: str) -> str:
        """A host name or an IP address: no scheme, no port (each target adds its own)."""
        try:
            ipaddress.ip_address(value)
        except ValueError:
            if not HOSTNAME.fullmatch(value.lower()):
                raise ValueError(f"{value!r} is not a host name or IP address like host."
                                 "docker.internal or 100.64.0.10 (no scheme, no port)") from None
        return value

    _access_team = field_validator("access_team_name")(_matches(
        ACCESS_TEAM, "a Cloudflare Zero Trust team name like manacore (the <team> of "
        "<team>.cloudflareaccess.com)"))

    @field_validator("access_aud_tags")
    @classmethod
    def _aud_tags(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [f"{k}: {v!r}" for k, v in value.items() if not AUD_TAG.fullmatch(str(v))]
        if bad:
            raise ValueError("not Access application AUD tags (64 hexadecimal digits, from "
                             f"the application's Overview): {', '.join(bad)}")
        return value

    @field_validator("access_emails")
    @classmethod
    def _emails(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [e for e in value if not EMAIL.fullmatch(e)]
        if bad:
            raise ValueError(f"not e-mail addresses: {', '.join(map(repr, bad))}")
        return value

    @property
    def memory_budget_bytes(self) -> int:
        return parse_memory(self.memory_budget)


def _is_secure(value: Any) -> bool:
    return isinstance(value, dict) and "secure" in value


def _is_secret_key(name: str, value: Any) -> bool:
    return name.isupper() or _is_secure(value)


def _secret_problems(values: dict[str, Any]) -> list[str]:
    """A secret is an encrypted value under its UPPER_SNAKE_CASE name, nothing else."""
    problems = []
    for key, value in values.items():
        if not _is_secret_key(key, value):
            continue
        if not _is_secure(value):
            problems.append(f"{key}: a secret must not be written in plain text into the stack "
                            f"file; delete it there and run: pulumi config set --secret {key} "
                            "<value>")
        elif not SECRET_NAME.fullmatch(key):
            problems.append(f"{key}: secret names are UPPER_SNAKE_CASE; set it as "
                            f"{re.sub(r'[^A-Z0-9]+', '_', to_snake(key).upper())} instead")
    return problems


def _message(error: Any) -> str:
    where = ".".join(str(p) for p in error["loc"])
    if error["type"] == "extra_forbidden":
        model = {("backup",): BackupSettings, ("backup", "keep"): Keep,
                 ("ingress",): IngressSettings, ("ingress", "tls"): IngressTLS,
                 ("ingress", "controller"): IngressController,
                 ("ingress", "basicAuth"): BasicAuth,
                 ("ingress", "forwardAuth"): ForwardAuth}.get(
            tuple(error["loc"][:-1]), StackSettings)
        known = ", ".join(f.alias or n for n, f in model.model_fields.items()
                          if n != "stack")
        return f"{where}: unknown setting; known: {known}"
    return f"{where}: {error['msg'].removeprefix('Value error, ')}"


def settings_from_values(stack: str, values: dict[str, Any]) -> StackSettings:
    """Validate raw `manacore:*` values (keys without the namespace)."""
    fields = {k: v for k, v in values.items() if not _is_secret_key(k, v)}
    problems = _secret_problems(values)
    try:
        settings = StackSettings.model_validate({"stack": stack, **fields})
    except ValidationError as exc:
        raise SettingsError(stack, [*map(_message, exc.errors()), *problems]) from None
    if problems:
        raise SettingsError(stack, problems)
    return settings


def stack_dir() -> Path:
    """Where the `Pulumi.<stack>.yaml` files are: the project, or $MANACORE_STACK_DIR."""
    return Path(os.environ.get("MANACORE_STACK_DIR") or ROOT)


def known_stacks() -> list[str]:
    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in stack_dir().glob("Pulumi.*.yaml"))


def stack_file(stack: str) -> Path:
    return stack_dir() / f"Pulumi.{stack}.yaml"


def _unreadable(stack: str, problem: str) -> SettingsError:
    return SettingsError(stack, [problem], unreadable=True)


def read_config(stack: str) -> dict[str, Any]:
    """The `config:` mapping of `Pulumi.<stack>.yaml`; SettingsError(unreadable) says why a
    file cannot be used, never a traceback."""
    path = stack_file(stack)
    if not path.exists():
        known = ", ".join(known_stacks()) or f"none in {stack_dir()}"
        raise _unreadable(stack, f"no {path}; known stacks: {known}")
    if not path.is_file():
        raise _unreadable(stack, f"{path} is not a file")
    try:
        document = yamltext.load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _unreadable(stack, f"{path} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise _unreadable(stack, f"{path} is not UTF-8 text") from None
    except yamltext.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise _unreadable(stack, f"{path} is not valid YAML{where}: {problem}") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise _unreadable(stack, f"{path} must be a mapping with a config: key, not "
                          f"{_kind(document)}")
    config = document.get("config") or {}
    if not isinstance(config, dict):
        raise _unreadable(stack, f"{path}: config: must be a mapping of settings "
                          f"(manacore:domain: …), not {_kind(config)}")
    return config


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", bytes: "binary data"}.get(
        type(value), f"a {type(value).__name__}")


def load_settings(stack: str) -> StackSettings:
    """Settings from `Pulumi.<stack>.yaml`, as the Pulumi CLI would hand them to the program."""
    prefix = f"{PROJECT}:"
    values: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in read_config(stack).items():
        key = str(key)
        if key.startswith(prefix):
            values[key[len(prefix):]] = value
        elif ":" not in key:
            problems.append(f"{key}: a config key needs its namespace, e.g. {prefix}{key}")
    try:
        settings = settings_from_values(stack, values)
    except SettingsError as exc:
        raise SettingsError(stack, [*exc.problems, *problems]) from None
    if problems:
        raise SettingsError(stack, problems)
    return settings


def secret_keys(stack: str) -> list[str]:
    """The secrets `Pulumi.<stack>.yaml` sets (names without the namespace)."""
    prefix = f"{PROJECT}:"
    names = {str(k).removeprefix(prefix): v for k, v in read_config(stack).items()
             if str(k).startswith(prefix)}
    return [k for k, v in names.items() if _is_secure(v) and SECRET_NAME.fullmatch(k)]


def settings_from_config(stack: str, get: Callable[[str], str | None]) -> StackSettings:
    """Settings from a `pulumi.Config`-like getter (`get(key)` → raw string or None)."""
    values: dict[str, Any] = {}
    for name, field in StackSettings.model_fields.items():
        if name == "stack":
            continue
        raw = get(field.alias or name)
        if raw is None:
            continue
        structured = ("migrated_volumes", "access_emails", "access_aud_tags", "backup",
                      "ingress")
        values[field.alias or name] = yamltext.load(raw) if name in structured else raw
    return settings_from_values(stack, values)
