"""ManaCore's conventions as Pulumi CrossGuard policies, checked on the real resources.

The catalogue's rules check the declarations; these check what the program actually registers,
so an adapter that forgets the loopback binding, a memory limit or `protect` is stopped at
`pulumi preview`. Names, port ranges and legacy volumes come from the catalogue itself
(`catalog.load`, `catalog.schema`): one fact, one place.

This module only defines policies. `__main__.py` constructs the `PolicyPack`, which starts a
gRPC server and blocks, so tests import this module and call each policy's `validate`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, get_args

import pulumi_policy.policy as _sdk
from pulumi_policy import (
    EnforcementLevel,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Secret,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.deserialize import (
    SPECIAL_SECRET_SIG,
    SPECIAL_SIG_KEY,
    _deserialize_property,
)
from pulumi_policy.proxy import UnknownValueError

from catalog.load import load_estate
from catalog.model import Category, Service
from catalog.rules import HA_REPLICAS, container_name, stateful, volume_name
from catalog.schema import NAMESPACES, allowed_ports, port_allowed, range_of
from exports.compose import volume_init_name
from exports.kubernetes import NOT_FOUND

# --- resource types ---------------------------------------------------------------------

CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
PVC = "kubernetes:core/v1:PersistentVolumeClaim"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
STATEFUL_SET = "kubernetes:apps/v1:StatefulSet"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
# Where a Kubernetes resource keeps its pod spec.
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    DEPLOYMENT: ("spec", "template", "spec"),
    STATEFUL_SET: ("spec", "template", "spec"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template", "spec"),
    "kubernetes:batch/v1:Job": ("spec", "template", "spec"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "kubernetes:core/v1:Pod": ("spec",),
}
WORKLOADS = frozenset(t for t in POD_SPEC_PATHS if t.startswith("kubernetes:apps/"))
LOOPBACK = "127.0.0.1"  # the rule itself (SPEC), not read from an adapter it must check

# --- the catalogue's facts --------------------------------------------------------------

CATEGORIES = tuple(c for c in get_args(Category) if c != "native")
CONTAINER_NAME = re.compile(rf"^manacore-({'|'.join(CATEGORIES)})-[a-z][a-z0-9]*(-[a-z0-9]+)*$")
VOLUME_NAME = re.compile(r"^manacore-[a-z0-9]+(-[a-z0-9]+)*-data$")


class Catalogue(NamedTuple):
    containers: dict[str, Service]  # container name → service
    helpers: frozenset[str]  # one-shot containers the program adds (volume inits)
    services: dict[str, Service]  # service id (Kubernetes name) → service
    volumes: frozenset[str]  # conventional volume names
    scratch: frozenset[str]  # volumes the catalogue marks stateful=False (caches)
    legacy_volumes: dict[str, str]  # legacy volume → the service whose data it holds
    backends: dict[str, Service]  # workloads the program adds for a service (its 404 backend)


@functools.cache
def catalogue() -> Catalogue:
    """The estate as declared (target-independent: names are the same on every stack)."""
    services = [s for s in load_estate().valid_services if not s.native]
    mounts = [(v.name or volume_name(s), v.stateful) for s in services for v in s.volumes]
    volumes = frozenset(name for name, _ in mounts)
    legacy = {old: s.id for s in services for old in s.legacy.volumes}
    return Catalogue(
        containers={container_name(s): s for s in services},
        helpers=frozenset(volume_init_name(v) for v in volumes | legacy.keys()),
        services={s.id: s for s in services}, volumes=volumes,
        scratch=volumes - {name for name, stateful in mounts if stateful},
        legacy_volumes=legacy,
        backends={f"{s.id}{NOT_FOUND}": s for s in services
                  if s.public is not None and s.public.closed_paths})


# --- reading resource inputs --------------------------------------------------------------


class _Unknown:
    """A value the engine will only know after the update (during preview)."""

    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN = _Unknown()


def reveal(value: Any) -> Any:
    """The value inside any number of secret markers."""
    while isinstance(value, Secret):
        value = value.value
    return value


def _lookup(props: Any, path: tuple[str, ...]) -> tuple[Any, bool]:
    """(props[path…] with secrets revealed, whether any step of the way was secret); the
    value is None when absent and UNKNOWN when the engine does not know it yet."""
    secret, value = isinstance(props, Secret), reveal(props)
    for key in path:
        if not isinstance(value, Mapping):
            return None, secret
        try:  # the SDK's proxy raises on unknowns, even for `in`
            if key not in value:
                return None, secret
            step = value[key]
        except UnknownValueError:
            return UNKNOWN, secret
        secret, value = secret or isinstance(step, Secret), reveal(step)
    return value, secret


def get(props: Any, *path: str) -> Any:
    """An input's value, secrets revealed (for names, ports, images …)."""
    return _lookup(props, path)[0]


def raw(props: Any, *path: str) -> Any:
    """An input's value as a policy must judge it: a `Secret` if it, or anything holding it,
    was secret."""
    value, secret = _lookup(props, path)
    return Secret(value) if secret and value is not None and value is not UNKNOWN else value


def items(props: Any, *path: str) -> list[Any]:
    """The elements of a list input; each a `Secret` if it or the list was secret."""
    value, secret = _lookup(props, path)
    if not isinstance(value, Sequence) or isinstance(value, str):
        return []
    out: list[Any] = []
    for index in range(len(value)):
        try:
            element = value[index]
        except UnknownValueError:
            element = UNKNOWN
        out.append(Secret(element) if secret and not isinstance(element, (Secret, _Unknown))
                   else element)
    return out


def keep_secret_markers() -> None:
    """Make the policy SDK hand secrets to `validate` as `pulumi_policy.Secret`.

    The engine sends secrets to a policy pack marked as such, but pulumi-policy's `Analyze`
    unwraps them into plain values before calling a policy (pulumi/pulumi-policy#241), so a
    policy cannot tell a secret Output from a literal. This wraps the SDK's deserializer so
    that secrets arrive as `Secret(value)`; the policies read every input through `get`.
    """
    original = _sdk.deserialize_properties
    if getattr(original, "keeps_secret_markers", False):
        return

    def deserialize(props: dict[str, Any], proxy_secrets: bool = False) -> Any:
        if proxy_secrets:  # remediations use the SDK's own secret proxies
            return original(props, proxy_secrets)
        return {key: marked(value) for key, value in props.items()}

    deserialize.keeps_secret_markers = True  # type: ignore[attr-defined]
    _sdk.deserialize_properties = deserialize


def marked(value: Any) -> Any:
    """One wire value with secrets as `Secret` (assets and archives as the SDK reads them)."""
    if isinstance(value, list):
        return [marked(v) for v in value]
    if isinstance(value, dict):
        if value.get(SPECIAL_SIG_KEY) == SPECIAL_SECRET_SIG:
            return Secret(marked(value.get("value")))
        if SPECIAL_SIG_KEY in value:
            return _deserialize_property(value)
        return {k: marked(v) for k, v in value.items()}
    return value


# --- policies -------------------------------------------------------------------------------

Check = Callable[[ResourceValidationArgs], Iterator[str]]


def _policy(name: str, description: str, check: Check) -> ResourceValidationPolicy:
    """A mandatory policy whose check yields one message per violation."""

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in check(args):
            report_violation(f"{args.name}: {message}", None)

    return ResourceValidationPolicy(name=name, description=description, validate=validate,
                                    enforcement_level=EnforcementLevel.MANDATORY)


def _names(args: ResourceValidationArgs) -> Iterator[str]:
    known = catalogue()
    name = get(args.props, "name")
    if args.resource_type == CONTAINER and isinstance(name, str) and name not in known.helpers:
        if not CONTAINER_NAME.match(name):
            yield (f"container name {name!r} breaks the convention manacore-{{category}}-"
                   f"{{service}} (categories: {', '.join(CATEGORIES)})")
        elif name not in known.containers:
            yield f"container {name!r} is not a service of the catalogue (services.py)"
    elif args.resource_type == CONTAINER and name is None:
        yield "container has no explicit name; set name=manacore-{category}-{service}"
    if args.resource_type == VOLUME and isinstance(name, str) and \
            name not in known.legacy_volumes:
        if not VOLUME_NAME.match(name):
            yield (f"volume name {name!r} breaks the convention manacore-{{service}}-data and "
                   "is no legacy volume of the catalogue")
        elif name not in known.volumes:
            yield f"volume {name!r} belongs to no service of the catalogue (services.py)"
    elif args.resource_type == VOLUME and name is None:
        yield "volume has no explicit name; an auto-named volume loses its data on rename"
    if args.resource_type in WORKLOADS:
        workload, namespace = get(args.props, "metadata", "name"), \
            get(args.props, "metadata", "namespace")
        svc = (known.services.get(workload) or known.backends.get(workload)
               if isinstance(workload, str) else None)
        if svc is None and workload is not UNKNOWN:
            yield (f"workload name {workload!r} is not a service id of the catalogue; set "
                   "metadata.name to the service id")
        elif svc is not None and namespace is not UNKNOWN and \
                namespace != NAMESPACES[svc.category]:
            yield (f"{workload} belongs in namespace {NAMESPACES[svc.category]}, "
                   f"not {namespace!r}")


def _ports(args: ResourceValidationArgs) -> Iterator[str]:
    if args.resource_type != CONTAINER:
        return
    svc = catalogue().containers.get(get(args.props, "name"))
    for entry in items(args.props, "ports"):
        internal, external = get(entry, "internal"), get(entry, "external")
        ip = get(entry, "ip")
        if UNKNOWN in (internal, external, ip):
            continue
        if external is None:
            yield (f"port {internal} is published on a random host port; publish a port "
                   "of the schema or drop the entry (services reach it on the network)")
            continue
        number = int(external)
        if svc is not None and not port_allowed(svc.role, number):
            yield (f"published port {number} is outside the range of role {svc.role}: "
                   f"use {allowed_ports(svc.role)}")
        elif svc is None and range_of(number) is None:
            yield f"published port {number} lies in no range of the port schema"
        if ip != LOOPBACK:
            yield (f"port {number} is bound to {ip or '0.0.0.0 (the default)'}; bind it to "
                   f"{LOOPBACK} (the tunnel is the only way in)")


def _containers(args: ResourceValidationArgs) -> Iterator[tuple[str, Any]]:
    """(label, container) of every container and init container in a pod spec."""
    path = POD_SPEC_PATHS.get(args.resource_type)
    if path is None:
        return
    spec = get(args.props, *path)
    for kind in ("initContainers", "containers"):
        for index, container in enumerate(items(spec, kind)):
            label = get(container, "name")
            yield f"{kind}[{index}] {label if isinstance(label, str) else ''}".strip(), \
                container


def _memory(args: ResourceValidationArgs) -> Iterator[str]:
    if args.resource_type == CONTAINER:
        memory = get(args.props, "memory")
        if memory is not UNKNOWN and not (isinstance(memory, (int, float)) and memory > 0):
            yield "no memory limit; set memory (MB) from the catalogue's memory"
    for label, container in _containers(args):
        limit = get(container, "resources", "limits", "memory")
        if limit is None or limit == "":
            yield f"{label}: no resources.limits.memory"


def _image_problem(image: Any) -> str | None:
    """Why an image reference is not pinned, or None."""
    if not isinstance(image, str) or image.startswith("sha256:") or "@sha256:" in image:
        return None  # unknown yet, an image id or a digest
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    if tag in ("", "latest"):
        return f"image {image!r} is not pinned (tag {tag or 'missing'!r}); use a release tag"
    return None


def _images(args: ResourceValidationArgs) -> Iterator[str]:
    if args.resource_type in (CONTAINER, REMOTE_IMAGE):
        problem = _image_problem(get(args.props, "image" if args.resource_type == CONTAINER
                                     else "name"))
        if problem:
            yield problem
    for label, container in _containers(args):
        problem = _image_problem(get(container, "image"))
        if problem:
            yield f"{label}: {problem}"


def _protected(args: ResourceValidationArgs) -> Iterator[str]:
    scratch = args.resource_type == VOLUME and get(args.props, "name") in catalogue().scratch
    if args.resource_type in (VOLUME, PVC) and not args.opts.protect and not scratch:
        kind = "volume" if args.resource_type == VOLUME else "claim"
        yield (f"stateful {kind} is not protected; create it with "
               "ResourceOptions(protect=True, retain_on_delete=True)")
    if args.resource_type == STATEFUL_SET:
        for when in ("whenDeleted", "whenScaled"):
            if get(args.props, "spec", "persistentVolumeClaimRetentionPolicy", when) == "Delete":
                yield (f"persistentVolumeClaimRetentionPolicy.{when} is Delete; stateful claims "
                       "must be retained")


SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|KEY)$")
# A reference the runtime resolves: $(X) on Kubernetes (from a secretKeyRef variable), ${X},
# and @@secret:X@@ in a file template the pod fills in (exports.kubernetes.SECRET_MARK).
REFERENCE = re.compile(r"\$\([A-Za-z_][A-Za-z0-9_]*\)|\$\{[A-Za-z_][A-Za-z0-9_]*\}"
                       r"|@@secret:[A-Z0-9_]+@@")
URL_PASSWORD = re.compile(r"://[^/\s:@]*:[^/\s@]+@")  # scheme://user:password@host


def plain_secret(name: str, value: Any) -> str | None:
    """Why an env value exposes a secret, or None. Secret Outputs arrive as `Secret` (see
    `keep_secret_markers`) and pass; so do unknown and empty values and references."""
    if isinstance(value, (Secret, _Unknown)) or not isinstance(value, str) or value == "":
        return None
    bare = REFERENCE.sub("", value)
    if SECRET_NAME.search(name.upper()) and bare == value:
        return f"{name} holds a literal value; pass it as a secret Output or a Secret reference"
    if URL_PASSWORD.search(bare):
        return f"{name} has a password written into its URL; build it from a secret Output"
    return None


def _env(args: ResourceValidationArgs) -> Iterator[str]:
    if args.resource_type == CONTAINER:
        for entry in items(args.props, "envs"):
            if isinstance(entry, Secret) or not isinstance(entry, str):
                continue
            name, _, value = entry.partition("=")
            problem = plain_secret(name, value)
            if problem:
                yield problem
    for label, container in _containers(args):
        for var in items(container, "env"):
            name = get(var, "name")
            if not isinstance(name, str):
                continue
            problem = plain_secret(name, raw(var, "value"))
            if problem:
                yield f"{label}: {problem}"
    if args.resource_type == CONFIG_MAP:
        data = get(args.props, "data")
        for key in data if isinstance(data, Mapping) else ():
            problem = plain_secret(key, raw(args.props, "data", key))
            if problem:
                yield f"ConfigMap {problem}; secrets belong in a Secret"


# The rule itself (issue 26), not read from the adapter it must check: a stateless pod leaves a
# node that stopped answering within about a minute (the node lifecycle controller's grace
# period, 50 s by default, plus at most this), not after Kubernetes' default 300 s.
MAX_FAILOVER_SECONDS = 60
NODE_LOSS_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
HOSTNAME = "kubernetes.io/hostname"


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else None


def _spread_over_nodes(pod: Any) -> bool:
    """A topology spread over hostnames, or anti-affinity between its own pods by hostname."""
    if any(get(c, "topologyKey") == HOSTNAME for c in items(pod, "topologySpreadConstraints")):
        return True
    anti = get(pod, "affinity", "podAntiAffinity")
    terms = [*items(anti, "requiredDuringSchedulingIgnoredDuringExecution"),
             *(get(w, "podAffinityTerm") for w in
               items(anti, "preferredDuringSchedulingIgnoredDuringExecution"))]
    return any(get(term, "topologyKey") == HOSTNAME for term in terms)


def _fast_failover(pod: Any) -> list[str]:
    """The node-loss taints the pod does not leave within MAX_FAILOVER_SECONDS."""
    slow = []
    for taint in NODE_LOSS_TAINTS:
        seconds = [_int(get(t, "tolerationSeconds")) for t in items(pod, "tolerations")
                   if get(t, "key") == taint and get(t, "effect") in ("NoExecute", None)]
        if not seconds or any(s is None or s > MAX_FAILOVER_SECONDS for s in seconds):
            slow.append(taint)
    return slow


def _budget_lets_one_go(budget: Any, replicas: int) -> bool:
    """The budget allows a drain to evict at least one pod and keeps at least one."""
    spec = get(budget, "spec")
    most, least = _int(get(spec, "maxUnavailable")), _int(get(spec, "minAvailable"))
    if most is not None:
        return 1 <= most < replicas
    return least is not None and 1 <= least < replicas


def _selects(budget: Any, labels: Any) -> bool:
    wanted = get(budget, "spec", "selector", "matchLabels")
    return isinstance(wanted, Mapping) and isinstance(labels, Mapping) and bool(wanted) and \
        all(labels.get(k) == v for k, v in wanted.items())


def _self_healing(resources: list[PolicyResource]) -> Iterator[tuple[str, str]]:
    """(urn, message) for every catalogue workload on Kubernetes that would not survive the
    loss or drain of a node as its availability says (services.py, `availability`)."""
    known = catalogue().services
    budgets = [r for r in resources if r.resource_type == PDB]
    for r in resources:
        if r.resource_type not in (DEPLOYMENT, STATEFUL_SET):
            continue
        svc = known.get(get(r.props, "metadata", "name"))
        if svc is None or svc.availability is None:
            continue  # manacore-names reports a workload the catalogue does not know
        a, spec = svc.availability, get(r.props, "spec")
        replicas, pod = _int(get(spec, "replicas")), get(spec, "template", "spec")
        if replicas is None:
            continue  # unknown during a preview, or not set (one pod)
        name = f"{r.name}: {svc.id}"
        if a.copies == "one" or stateful(svc):
            why = "must run once" if a.copies == "one" else "keeps data on a ReadWriteOnce claim"
            if replicas > 1:
                yield r.urn, f"{name} {why} but has {replicas} replicas"
            if r.resource_type == DEPLOYMENT and get(spec, "strategy", "type") != "Recreate":
                yield r.urn, (f"{name} must run once: use strategy Recreate (a rolling update "
                              "would run two copies)")
        else:
            if a.importance == "user-facing" and replicas < HA_REPLICAS:
                yield r.urn, (f"{name} is user-facing and may run several copies: it needs "
                              f"{HA_REPLICAS} replicas or more, not {replicas}")
            if get(spec, "strategy", "type") == "Recreate" or \
                    get(spec, "strategy", "rollingUpdate", "maxUnavailable") not in (0, "0%"):
                yield r.urn, (f"{name}: a rolling update must never drop below its replicas "
                              "(rollingUpdate.maxUnavailable 0, maxSurge 1)")
            if replicas > 1 and not _spread_over_nodes(pod):
                yield r.urn, (f"{name}: its replicas must be spread over nodes (a topology "
                              f"spread or anti-affinity on {HOSTNAME})")
            labels = get(spec, "template", "metadata", "labels")
            namespace = get(r.props, "metadata", "namespace")
            if replicas > 1 and not any(
                    _selects(b.props, labels) and get(b.props, "metadata", "namespace") == namespace
                    and _budget_lets_one_go(b.props, replicas) for b in budgets):
                yield r.urn, (f"{name}: no PodDisruptionBudget selects its pods that lets a "
                              f"drain take one of its {replicas} replicas and keeps the rest")
        if r.resource_type == DEPLOYMENT:
            for taint in _fast_failover(pod):
                yield r.urn, (f"{name}: tolerate {taint} (NoExecute) for at most "
                              f"{MAX_FAILOVER_SECONDS} s, so it leaves a lost node within "
                              "about a minute (Kubernetes' default is 300 s)")


def _stack_policy(name: str, description: str,
                  check: Callable[[list[PolicyResource]], Iterator[tuple[str, str]]]
                  ) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        for urn, message in check(args.resources):
            report_violation(message, urn)

    return StackValidationPolicy(name=name, description=description, validate=validate,
                                 enforcement_level=EnforcementLevel.MANDATORY)


POLICIES: list[ResourceValidationPolicy | StackValidationPolicy] = [
    _policy("manacore-names",
            "Containers are named manacore-{category}-{service}, volumes manacore-{service}-data "
            "(legacy volumes of the catalogue are adopted until migrated), Kubernetes workloads "
            "by service id in their category's namespace.", _names),
    _policy("published-ports",
            "Published container ports lie in their role's range and bind to 127.0.0.1.",
            _ports),
    _policy("memory-limits",
            "Every container has a memory limit (docker memory, Kubernetes "
            "resources.limits.memory).", _memory),
    _policy("pinned-images",
            "No image runs from `latest` or without a tag.", _images),
    _policy("stateful-storage-protected",
            "Docker volumes and PersistentVolumeClaims are protected; StatefulSets keep their "
            "claims.", _protected),
    _policy("no-plain-secrets",
            "Environment values that look like secrets (…PASSWORD, …SECRET, …TOKEN, …KEY, "
            "passwords in URLs) come from secret Outputs or Secret references, never literals.",
            _env),
    _stack_policy("self-healing",
                  "On Kubernetes, what services.py says of each service's availability holds: "
                  "a user-facing service whose copies are interchangeable runs 2 replicas or "
                  "more, spread over nodes, with a PodDisruptionBudget and surge-only rolling "
                  "updates; one that must run once runs one pod, replaced, never doubled; "
                  "stateless pods leave a lost node within a minute.", _self_healing),
]
