"""The one Kubernetes mapping: a resolved service → its manifests, as plain dicts.

Both Kubernetes forms come from here. The k3s stack (`components.kubernetes`) builds the
objects with concrete values and creates them with Pulumi; the Helm export (`exports.helm`)
builds the same objects with Helm template expressions where the values file may change a
value, and writes them as templates. What differs between the two is a `Form`: how a value that
a chart user may override is written (concrete text, or `{{ .Values… }}`), and under which
condition an object exists (always, or inside `{{- if … }}`). Nothing else is decided twice.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from catalog.backup import ROLE as BACKUP
from catalog.backup import SERVERS, claim_jobs
from catalog.model import Health
from catalog.resolve import (
    ResolvedEstate,
    ResolvedFile,
    ResolvedService,
    ResolvedVolume,
    Template,
)
from catalog.settings import IngressSettings

PART_OF = "manacore"
WAIT_IMAGE = "busybox:1.38.0"  # init containers that wait for a hard dependency
# Every image is pinned to a tag that never moves (our releases, third-party versions), so a
# node pulls it once: a pod that restarts or moves to a node holding the image starts even when
# the registry is unreachable (Kubernetes' own default for a tag other than `latest`).
PULL_POLICY = "IfNotPresent"
CPU = {"requests": "50m", "limits": "1"}  # the catalogue only knows memory
WAIT_RESOURCES = {"requests": {"cpu": "10m", "memory": "16Mi"},
                  "limits": {"cpu": "100m", "memory": "16Mi"}}
PRIVATE = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16"]
UID = 10001  # a high UID nobody on the node has: every image that runs as any user gets it
# Seconds a stateless pod stays bound to a node that stopped answering (the node lifecycle
# controller taints it not-ready or unreachable after its node-monitor-grace-period, 50 s by
# default) before it is evicted and replaced on another node: Kubernetes' default is 300 s
# (the DefaultTolerationSeconds admission plugin). Per pod, so the chart does it on any
# cluster; StatefulSets keep the default (their claims cannot follow them, see README "K3s").
# 5 s: a node silent for the grace period is past any blip already, and on real nodes the
# replacements need ~20 s to start and pass their probes (measured: evicted after 15 s, the
# last replacement Ready 91 s after the node died, beyond the 90 s the estate promises).
FAILOVER_SECONDS = 5
NODE_LOSS_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
MAX_UNAVAILABLE = 1  # pods of a replicated service a voluntary disruption may take at once


@dataclass(frozen=True)
class Runtime:
    """How an image must run, where it cannot run as the default (any UID, read-only root)."""

    uid: int = UID
    read_only: bool = True
    writable: tuple[str, ...] = ("/tmp",)  # emptyDir mounts on a read-only root, besides the
    # paths the catalogue records that the image writes (`Image.writes`, next to its pin)
    low_port: bool = False  # binds a port below 1024 as non-root (safe sysctl)
    why: str = ""  # the reason, for the checkov skips and the chart README


# Third-party images with needs of their own (checked against the images' Dockerfiles).
RUNTIMES: dict[str, Runtime] = {
    "searxng": Runtime(uid=977,
                       why="the searxng image runs as its own user searxng (977), which owns "
                           "its configuration and cache directories"),
    "element-web": Runtime(uid=101,
                           why="nginx in the element-web image runs as its nginx user (101), "
                               "which owns its cache and config directories"),
    "n8n": Runtime(uid=1000,
                   why="n8n keeps its data under the home directory of the image's node user "
                       "(1000); another UID would write it outside the claim"),
    "umami": Runtime(uid=1001,
                     why="umami runs as its nextjs user (1001), whose home pnpm writes to"),
}

# checkov checks the chart does not meet, with the reason (annotations on each object).
SKIPS_ALL: dict[str, str] = {
    "CKV_K8S_43": "images are pinned by tag; digests are set at release time by the registry",
    "CKV_K8S_15": "images are pinned to tags that never move: pulled once per node "
                  "(IfNotPresent), a pod restarts or moves while the registry is unreachable",
    "CKV_K8S_35": "the services read their secrets from environment variables (12-factor "
                  "images); the values come from a Secret, never from the manifest",
}
SKIPS_RUNTIME: dict[str, Callable[[Runtime], bool]] = {
    "CKV_K8S_40": lambda r: r.uid < 10000,
    "CKV_K8S_22": lambda r: not r.read_only,
}


class Raw(str):
    """A Helm template expression that stands for a whole YAML value (a number, a list, an
    object): written unquoted. The concrete form never produces one."""


Cond = tuple[str, ...]  # ("enabled", id) ("secret", id) ("native-ip",) ("native-dns",)
# ("external", id) ("split",) ("netpol",) ("replicated", id) ("ingress",) ("protected",)
# ("protect", "basicAuth"|"forwardAuth") — each form decides what holds


@dataclass
class Obj:
    """One manifest and the conditions under which it exists."""

    manifest: dict[str, Any]
    when: tuple[Cond, ...] = ()
    service: str | None = None  # the service it belongs to (None: shared)
    stateful: bool = False  # holds data (a claim, its namespace): protected, kept on delete

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def name(self) -> str:
        return self.manifest["metadata"]["name"]


class Form(Protocol):
    """How values a chart user may change are written; see the module docstring."""

    instance: str
    managed_by: str

    def namespace(self, namespace: str) -> str: ...
    def text(self, text: str) -> str: ...  # text that may hold addresses of services
    def address(self, service: ResolvedService, port: int) -> tuple[str, Any]: ...
    def native_address(self) -> str: ...
    def image(self, s: ResolvedService) -> str: ...
    def pull_policy(self) -> str: ...
    def replicas(self, s: ResolvedService) -> Any: ...
    def max_unavailable(self, s: ResolvedService) -> Any: ...
    def failover_seconds(self) -> Any: ...
    def schedule(self) -> Any: ...  # the backup's cron expression
    def repository_egress(self) -> Any: ...  # the backup repository's address and port
    def resources(self, s: ResolvedService) -> Any: ...
    def claim(self, s: ResolvedService, v: ResolvedVolume) -> tuple[Any, Any]: ...
    def env_data(self, s: ResolvedService) -> Any: ...
    def secret_name(self, s: ResolvedService) -> str: ...
    def secret_payload(self, s: ResolvedService) -> dict[str, Any]: ...
    def file_payload(self, s: ResolvedService, files: list[ResolvedFile]) -> dict[str, Any]: ...
    def wait_image(self) -> str: ...
    def labels(self) -> dict[str, str]: ...
    # the Ingress (ingress_objects): the settings or values under `ingress`
    def ingress_class(self) -> Any: ...
    def ingress_annotations(self, s: ResolvedService, middleware: str | None) -> Any: ...
    def ingress_rules(self, s: ResolvedService, http: dict[str, Any]) -> Any: ...
    def ingress_tls(self, s: ResolvedService) -> Any: ...
    def controller_peer(self) -> dict[str, Any]: ...
    def middleware(self, kind: str) -> dict[str, Any]: ...


# --- small facts every form shares ------------------------------------------------------


def resources(s: ResolvedService) -> dict[str, dict[str, str]]:
    """Requests and limits: memory reserved as much as it may use (the budget the catalogue
    checks is what the scheduler reserves), a small CPU request and a CPU ceiling."""
    memory = {"memory": s.memory_text} if s.memory_text else {}
    return {"requests": {"cpu": CPU["requests"], **memory},
            "limits": {"cpu": CPU["limits"], **memory}}


def plain_env(s: ResolvedService) -> dict[str, str]:
    """The environment without secrets: the ConfigMap."""
    return {k: t.plain for k, t in s.environment.items() if t.plain is not None}


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def runtime(s: ResolvedService) -> Runtime:
    return RUNTIMES.get(s.id, Runtime())


# node-exporter alone (SPEC): the host's network and processes are what it measures
HOST_ACCESS_WHY = ("node-exporter reports the node, not its pod: it needs the host's network "
                   "and PID namespaces and reads /proc, /sys and / read-only (as kube-prometheus "
                   "runs it)")
SKIPS_HOST_ACCESS = ("CKV_K8S_17", "CKV_K8S_19")  # hostPID, hostNetwork


def skips(s: ResolvedService) -> dict[str, str]:
    """checkov skips of a workload: check id → reason."""
    r = runtime(s)
    found = dict(SKIPS_ALL)
    for check, applies in SKIPS_RUNTIME.items():
        if applies(r):
            found[check] = r.why
    if s.host_access:
        found |= dict.fromkeys(SKIPS_HOST_ACCESS, HOST_ACCESS_WHY)
    return found


def file_key(f: ResolvedFile) -> str:
    """The ConfigMap/Secret key of a generated file: its path, made a valid key."""
    return re.sub(r"[^-._a-zA-Z0-9]", "_", f.path.strip("/"))


def wait_port(t: ResolvedService) -> int:
    """The port a dependent waits on: the one the health check uses, else the first."""
    if t.health is not None and any(p.name == t.health.port for p in t.ports):
        return t.port(t.health.port).container
    return t.ports[0].container


def selector(s: ResolvedService, form: Form) -> dict[str, str]:
    return {"app.kubernetes.io/name": s.name, "app.kubernetes.io/instance": form.instance}


def labels(s: ResolvedService, form: Form) -> dict[str, str]:
    return {**selector(s, form), "app.kubernetes.io/component": s.role,
            "app.kubernetes.io/part-of": PART_OF,
            "app.kubernetes.io/managed-by": form.managed_by, **form.labels(), **s.labels}


def _meta(s: ResolvedService, form: Form, name: str | None = None,
          annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name or s.name, "namespace": form.namespace(s.namespace),
                            "labels": labels(s, form)}
    if annotations:
        meta["annotations"] = annotations
    return meta


def _skip_annotations(found: dict[str, str]) -> dict[str, str]:
    return {f"checkov.io/skip{i}": f"{check}={reason}"
            for i, (check, reason) in enumerate(sorted(found.items()), 1)}


# --- probes, env, containers ------------------------------------------------------------


# A pod that fails readiness only leaves its Service's endpoints, so readiness may probe often;
# the kubelet has no faster probing while a container starts (Docker's start_interval), and
# a dependency that came up late would otherwise cost its dependants a whole `interval`.
READINESS_PERIOD = 5
# A service that keeps data may replay its journal after an unclean stop (PostgreSQL's WAL,
# Garage's metadata, Synapse's migrations) and must never be killed halfway: its startup
# probe allows at least this long (CloudNativePG waits an hour by default, `startDelay`).
RECOVERY_SECONDS = 600


def probes(s: ResolvedService) -> dict[str, Any]:
    """Readiness from the health check; liveness and startup from the process alone.

    A health check here answers "does it work": the exporter's asks PostgreSQL, a backend's
    its database. Readiness takes that (traffic stays away while it fails). The kubelet
    *restarts* a container whose liveness or startup probe fails, so those only ask whether
    the process answers: a TCP connect to the check's port (its first port for a `cmd`
    check). A database slow to start or down for a while then does not restart everything
    that uses it — on two contended cores it restarted the exporter and backends whose
    dependency-aware startup probes ran out. A service without a port keeps its check for
    all three; one without a health check gets a TCP check on its first port.

    The startup probe gives the check's start period (Docker's start_period; RECOVERY_SECONDS
    at least for a stateful service) before liveness counts; the liveness probe keeps the
    check's interval, timeout and retries."""
    h = s.health
    names = [p.name for p in s.ports]
    if h is None:
        if not names:
            return {}
        h = Health(tcp=True, port=names[0], start_period=0)
    if h.http is not None:
        check: dict[str, Any] = {"httpGet": {"path": h.http, "port": h.port}}
    elif h.cmd is not None:
        check = {"exec": {"command": list(h.cmd)}}
    else:
        check = {"tcpSocket": {"port": h.port}}
    alive = {"tcpSocket": {"port": h.port if h.port in names else names[0]}} if names else check
    timing = {"timeoutSeconds": h.timeout, "failureThreshold": h.retries}
    out = {"livenessProbe": {**alive, "periodSeconds": h.interval, **timing},
           "readinessProbe": {**check, "periodSeconds": min(h.interval, READINESS_PERIOD),
                              **timing}}
    if h.start_period > 0:  # the kubelet's equivalent of Docker's start_period + start_interval
        start = max(h.start_period, RECOVERY_SECONDS) if s.stateful else h.start_period
        out["startupProbe"] = {**alive, "periodSeconds": h.start_interval,
                               "timeoutSeconds": h.timeout,
                               "failureThreshold": math.ceil(start / h.start_interval)
                               + h.retries}
    return out


def _escape(text: str) -> str:
    """Kubernetes expands `$(NAME)` in env values and args; `$$` is a literal `$`."""
    return text.replace("$", "$$")


def _whole_secret(t: Template) -> bool:
    return len(t.parts) == 1 and bool(t.secrets)


def env(s: ResolvedService, form: Form) -> list[dict[str, Any]]:
    """The container's environment beyond the ConfigMap (envFrom): whole-value secrets from
    the Secret; values that mix text and secrets written with dependent-variable expansion
    `$(NAME)`, each secret they embed defined first under its own name."""
    environment = s.environment

    def ref(name: str, secret: str) -> dict[str, Any]:
        return {"name": name, "valueFrom": {"secretKeyRef": {"name": form.secret_name(s),
                                                             "key": secret}}}

    mixed = {k: t for k, t in environment.items() if t.secrets and not _whole_secret(t)}
    embedded = dict.fromkeys(n for t in mixed.values() for n in t.secrets
                             if n not in environment)
    out = [ref(n, n) for n in embedded]
    out += [ref(k, t.secrets[0]) for k, t in environment.items() if _whole_secret(t)]
    out += [{"name": k, "value": t.render(lambda n: f"$({n})",
                                          lambda lit: form.text(_escape(lit)))}
            for k, t in mixed.items()]
    return out


def security(r: Runtime) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pod and container security contexts: non-root, no capabilities, RuntimeDefault
    seccomp, no privilege escalation, read-only root where the image allows."""
    pod: dict[str, Any] = {"runAsNonRoot": True, "runAsUser": r.uid, "runAsGroup": r.uid,
                           "fsGroup": r.uid, "fsGroupChangePolicy": "OnRootMismatch",
                           "seccompProfile": {"type": "RuntimeDefault"}}
    if r.low_port:
        pod["sysctls"] = [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]
    container = {"runAsNonRoot": True, "runAsUser": r.uid, "runAsGroup": r.uid,
                 "allowPrivilegeEscalation": False, "privileged": False,
                 "readOnlyRootFilesystem": r.read_only, "capabilities": {"drop": ["ALL"]},
                 "seccompProfile": {"type": "RuntimeDefault"}}
    return pod, container


def _wait(t: ResolvedService, form: Form, container_sc: dict[str, Any]) -> dict[str, Any]:
    host, port = form.address(t, wait_port(t))
    return {
        "name": f"wait-{t.name}", "image": form.wait_image(), "imagePullPolicy": form.pull_policy(),
        "command": ["sh", "-c", f"until nc -z -w 2 {host} {port}; do echo waiting for "
                                f"{t.id}; sleep 2; done"],
        "resources": WAIT_RESOURCES,
        "securityContext": {**container_sc, "runAsUser": UID, "runAsGroup": UID,
                            "readOnlyRootFilesystem": True},
    }


SECRET_MARK = "@@secret:{}@@"  # where a file template takes a secret's value
# Replaces each mark by the environment variable it names; a mark without its variable stops
# the pod (never a file with an empty password). No gsub: values are taken literally.
RENDER_AWK = r"""{
  line = $0; out = ""
  while (match(line, /@@secret:[A-Z0-9_]+@@/)) {
    name = substr(line, RSTART + 9, RLENGTH - 11)
    if (!(name in ENVIRON)) { print "secret " name " is not set" > "/dev/stderr"; exit 1 }
    out = out substr(line, 1, RSTART - 1) ENVIRON[name]
    line = substr(line, RSTART + RLENGTH)
  }
  print out line
}"""


def file_template(f: ResolvedFile, literal: Callable[[str], str] = str) -> str:
    """A file as shipped in its ConfigMap: each secret a mark that the pod fills in."""
    if any(isinstance(p, str) and "@@secret:" in p for p in f.content.parts):
        raise ValueError(f"{f.path}: its text holds the secret mark @@secret:")
    return f.content.render(SECRET_MARK.format, literal)


def _render_files(s: ResolvedService, files: list[ResolvedFile], form: Form,
                  container_sc: dict[str, Any]) -> dict[str, Any]:
    """The init container that writes the files embedding secrets (Synapse's homeserver.yaml
    and signing key) into memory, from the templates in the ConfigMap and the secrets of the
    Secret the service reads: the chart's own, or the one a user brings (existingSecret)."""
    names = sorted({n for f in files for n in f.content.secrets})
    script = "set -eu\numask 077\n" + "".join(
        f"awk \"$RENDER\" /templates/{file_key(f)} > /rendered/{file_key(f)}\n" for f in files)
    return {
        "name": "render-files", "image": form.wait_image(), "imagePullPolicy": form.pull_policy(),
        "command": ["sh", "-c", script],
        "env": [{"name": "RENDER", "value": RENDER_AWK}] + [
            {"name": n, "valueFrom": {"secretKeyRef": {"name": form.secret_name(s), "key": n}}}
            for n in names],
        "volumeMounts": [{"name": "files", "mountPath": "/templates", "readOnly": True},
                         {"name": "secret-files", "mountPath": "/rendered"}],
        "resources": WAIT_RESOURCES,
        "securityContext": {**container_sc, "readOnlyRootFilesystem": True},
    }


def pod_template(s: ResolvedService, estate: ResolvedEstate, form: Form) -> dict[str, Any]:
    r = runtime(s)
    pod_sc, container_sc = security(r)
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    for i, v in enumerate(s.volumes):
        name = f"data-{i}" if i else "data"
        claim = {"claimName": v.claim, **({"readOnly": True} if v.read_only else {})}
        volumes.append({"name": name, "persistentVolumeClaim": claim}
                       if v.stateful else {"name": name, "emptyDir": {}})
        mounts.append({"name": name, "mountPath": v.path,
                       **({"readOnly": True} if v.read_only else {})})
    for i, path in enumerate(dict.fromkeys((*r.writable, *s.writable))):
        volumes.append({"name": f"scratch-{i}", "emptyDir": {}})
        mounts.append({"name": f"scratch-{i}", "mountPath": path})
    for i, m in enumerate(s.host_mounts):  # host access only (node-exporter): read-only
        volumes.append({"name": f"host-{i}", "hostPath": {"path": m.source}})
        mounts.append({"name": f"host-{i}", "mountPath": m.path, "readOnly": True,
                       "mountPropagation": "HostToContainer"})
    if s.files:
        items = [{"key": file_key(f), "path": file_key(f), "mode": f.mode} for f in s.files]
        volumes.append({"name": "files", "configMap": {"name": f"{s.name}-files",
                                                       "items": items}})
        mounts += [{"name": "files", "mountPath": f.path, "subPath": file_key(f),
                    "readOnly": True} for f in s.files if not f.content.secrets]
    secret_files = [f for f in s.files if f.content.secrets]
    if secret_files:  # assembled at start from the service's Secret, in memory only
        volumes.append({"name": "secret-files", "emptyDir": {"medium": "Memory",
                                                             "sizeLimit": "1Mi"}})
        mounts += [{"name": "secret-files", "mountPath": f.path, "subPath": file_key(f),
                    "readOnly": True} for f in secret_files]
    container: dict[str, Any] = {
        "name": s.name, "image": form.image(s), "imagePullPolicy": form.pull_policy(),
        "ports": [{"name": p.name, "containerPort": p.container, "protocol": "TCP"}
                  for p in s.ports],
        "envFrom": [{"configMapRef": {"name": f"{s.name}-env"}}],
        "env": env(s, form),
        "resources": form.resources(s),
        "securityContext": container_sc,
        **probes(s),
    }
    if s.command:  # a secret argument expands from the container's own variable, $(NAME)
        container["args"] = [a.render(lambda n: f"$({n})", _escape) for a in s.command]
    if mounts:
        container["volumeMounts"] = mounts
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False, "enableServiceLinks": False,
        "securityContext": pod_sc, "containers": [container],
    }
    if s.host_access:  # HOST_ACCESS_WHY; its address is the node's, one pod per node
        spec |= {"hostNetwork": True, "hostPID": True,
                 "dnsPolicy": "ClusterFirstWithHostNet"}
    inits = [_wait(estate[d], form, container_sc) for d in s.hard
             if any(t.id == d for t in estate.services)]
    if secret_files:
        inits.append(_render_files(s, secret_files, form, container_sc))
    if inits:
        spec["initContainers"] = inits
    if volumes:
        spec["volumes"] = volumes
    return {"metadata": {"labels": labels(s, form)}, "spec": spec}


# --- objects ------------------------------------------------------------------------------


def interchangeable(s: ResolvedService) -> bool:
    """A Deployment whose copies may run side by side (`Availability.copies == "many"`): it
    rolls by surge, and with two replicas or more it has a disruption budget."""
    return s.workload == "service" and not s.stateful and not s.native and \
        s.availability is not None and s.availability.copies == "many"


def workload(s: ResolvedService, estate: ResolvedEstate, form: Form) -> dict[str, Any]:
    """DaemonSet for daemons, StatefulSet for services with data (one pod at a time on its
    ReadWriteOnce claims), Deployment for the rest.

    A Deployment is what self-heals (README "K3s: losing a node"): its replicas are spread
    over nodes, it leaves a node that stopped answering after FAILOVER_SECONDS, and it is
    updated without ever running fewer copies than it wants (surge one, none unavailable) —
    or, when it must run once, replaced without ever running two (Recreate)."""
    meta = _meta(s, form, annotations=_skip_annotations(skips(s)))
    spec: dict[str, Any] = {"selector": {"matchLabels": selector(s, form)},
                            "template": pod_template(s, estate, form),
                            "revisionHistoryLimit": 3}
    if s.workload == "daemon":
        return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta, "spec": spec}
    spec = {"replicas": form.replicas(s), **spec}
    if s.stateful:
        return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta,
                "spec": {**spec, "serviceName": s.name}}
    spec["strategy"] = ({"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
                        if interchangeable(s) else {"type": "Recreate"})
    pod = spec["template"]["spec"]
    # Replicas on different nodes, so one node's loss, drain or upgrade keeps a copy serving.
    # A spread constraint, not required anti-affinity: on one node (a single-node K3s) or two
    # (a rolling update's surge pod) anti-affinity leaves pods Pending, a spread of skew 1 does
    # not; DoNotSchedule makes it a rule, not a preference. Per ReplicaSet (pod-template-hash),
    # so an update's new pods spread among themselves; nodes the pod does not tolerate
    # (cordoned, NotReady, unreachable) are no domain (nodeTaintsPolicy Honor): otherwise an
    # empty cordoned node would force the skew and leave a replacement Pending on a two-node
    # cluster.
    pod["topologySpreadConstraints"] = [{
        "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "DoNotSchedule", "nodeTaintsPolicy": "Honor",
        "matchLabelKeys": ["pod-template-hash"],
        "labelSelector": {"matchLabels": selector(s, form)}}]
    pod["tolerations"] = [{"key": taint, "operator": "Exists", "effect": "NoExecute",
                           "tolerationSeconds": form.failover_seconds()}
                          for taint in NODE_LOSS_TAINTS]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}


def cron_job(s: ResolvedService, estate: ResolvedEstate, form: Form, args: tuple[str, ...],
             runs_as: ResolvedService) -> dict[str, Any]:
    """The backup as a CronJob: one run at each time of the schedule, never two at once, as
    the user of `runs_as` (a claim's job reads the files of the claim's service as their
    owner; restricted Pod Security admits no root and no capability)."""
    template = pod_template(s, estate, form)
    pod = template["spec"]
    uid = runtime(runs_as).uid
    pod["securityContext"] |= {"runAsUser": uid, "runAsGroup": uid, "fsGroup": uid}
    pod["containers"][0]["securityContext"] |= {"runAsUser": uid, "runAsGroup": uid}
    pod["containers"][0]["args"] = list(args)
    pod["restartPolicy"] = "Never"  # a failed run is retried by the Job (backoffLimit)
    meta = _meta(s, form, annotations=_skip_annotations(skips(runs_as)))
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta, "spec": {
        "schedule": form.schedule(), "timeZone": "Etc/UTC", "concurrencyPolicy": "Forbid",
        # a run missed by more than this (the controller was down) waits for the next time
        "startingDeadlineSeconds": 600,
        "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 3,
        "jobTemplate": {"metadata": {"labels": labels(s, form)},
                        "spec": {"backoffLimit": 2, "template": template}}}}


def config_objects(s: ResolvedService, form: Form, when: tuple[Cond, ...]) -> list[Obj]:
    """The service's environment, Secret and files."""
    out = [Obj({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": _meta(s, form, f"{s.name}-env"), "data": form.env_data(s)},
               when, s.id)]
    if s.secrets:
        out.append(Obj({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                        "metadata": _meta(s, form, f"{s.name}-secrets"),
                        **form.secret_payload(s)}, (*when, ("secret", s.id)), s.id))
    if s.files:  # files embedding secrets as templates: see _render_files
        out.append(Obj({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": _meta(s, form, f"{s.name}-files"),
                        **form.file_payload(s, list(s.files))}, when, s.id))
    return out


def claim_job_objects(estate: ResolvedEstate, form: Form) -> list[Obj]:
    """Each claim's backup CronJob (catalog.backup.claim_jobs; Redis's claim has none: only a
    restore writes there, `manacore restore`) with its environment, Secret, plan and
    NetworkPolicy, in the claim's namespace; there while the backup and the claim's service
    are both enabled."""
    out: list[Obj] = []
    for c in claim_jobs(estate.services):
        j, owner = c.job, estate[c.service]
        when = (("enabled", j.id), ("enabled", owner.id))
        out += config_objects(j, form, when)
        if c.scheduled:
            out.append(Obj(cron_job(j, estate, form, c.args, owner), when, j.id))
        out += [Obj(o.manifest, (*o.when, ("enabled", owner.id)), o.service)
                for o in network_policies(j, estate, form)]
    return out


def disruption_budget(s: ResolvedService, form: Form) -> dict[str, Any]:
    """At most `max_unavailable` of the replicas go at once in a voluntary disruption (a drain,
    a K3s upgrade); one that is not Ready may always be evicted (AlwaysAllow), so a broken pod
    never blocks a drain."""
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": _meta(s, form),
            "spec": {"maxUnavailable": form.max_unavailable(s),
                     "selector": {"matchLabels": selector(s, form)},
                     "unhealthyPodEvictionPolicy": "AlwaysAllow"}}


def service_ports(s: ResolvedService) -> list[dict[str, Any]]:
    """Service port = container port, so `name.namespace.svc.cluster.local:port` works."""
    return [{"name": p.name, "port": p.container, "targetPort": p.name, "protocol": "TCP"}
            for p in s.ports]


def native_objects(s: ResolvedService, form: Form) -> list[Obj]:
    """A native host service: a selector-less Service with an EndpointSlice to the host's IP,
    or an ExternalName Service when the host is a DNS name."""
    ports = [{"name": p.name, "port": p.container, "targetPort": p.container, "protocol": "TCP"}
             for p in s.ports]
    selectorless = {"apiVersion": "v1", "kind": "Service", "metadata": _meta(s, form),
                    "spec": {"type": "ClusterIP", "ports": ports}}
    slice_meta = _meta(s, form)
    slice_meta["labels"] = {**slice_meta["labels"], "kubernetes.io/service-name": s.name,
                            "endpointslice.kubernetes.io/managed-by": PART_OF}
    endpoints = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                 "metadata": slice_meta, "addressType": "IPv4",
                 "endpoints": [{"addresses": [form.native_address()]}],
                 "ports": [{"name": p.name, "port": p.container, "protocol": "TCP"}
                           for p in s.ports]}
    external = {"apiVersion": "v1", "kind": "Service", "metadata": _meta(s, form),
                "spec": {"type": "ExternalName", "externalName": form.native_address(),
                         "ports": ports}}
    on = ("enabled", s.id)
    return [Obj(selectorless, (on, ("native-ip",)), s.id),
            Obj(endpoints, (on, ("native-ip",)), s.id),
            Obj(external, (on, ("native-dns",)), s.id)]


def _peer(t: ResolvedService, form: Form) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": form.namespace(t.namespace)}},
            "podSelector": {"matchLabels": selector(t, form)}}


def _tcp(ports: list[Any]) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": p} for p in ports]


def is_scraper(s: ResolvedService) -> bool:
    return s.id == "victoriametrics"


def metrics_ports(s: ResolvedService) -> list[int]:
    """Ports the metrics scraper reads: every port of an exporter, and ports named metrics."""
    return [p.container for p in s.ports if s.role == "exporter" or p.name == "metrics"]


def network_policies(s: ResolvedService, estate: ResolvedEstate, form: Form) -> list[Obj]:
    """What this service may receive and send beyond the namespace's default deny: ingress
    from each service that needs it (hard or lazy), from the tunnel connector on the public
    port, from the scraper on metrics ports; egress to what it needs, and to public addresses
    (never private ranges) only when the catalogue says it reaches the internet. The connector
    reaches every public service, the scraper every metrics port."""
    present = {t.id: t for t in estate.services}
    ingress: list[dict[str, Any]] = []
    clients = [*estate.services, *(c.job for c in claim_jobs(estate.services))]
    for d in clients:  # the claims' backup jobs push their figures too
        if not d.native and s.id in (*d.hard, *d.lazy):
            ingress.append({"from": [_peer(d, form)],
                            "ports": _tcp([p.container for p in s.ports])})
    connector = present.get("cloudflared")
    if s.public is not None and connector is not None and connector.id != s.id:
        ingress.append({"from": [_peer(connector, form)],
                        "ports": _tcp([s.port(s.public.port).container])})
    scraper = next((t for t in estate.services if is_scraper(t)), None)
    if scraper is not None and metrics_ports(s) and scraper.id != s.id:
        ingress.append({"from": [_peer(scraper, form)], "ports": _tcp(metrics_ports(s))})

    needs = [present[d] for d in (*s.hard, *s.lazy) if d in present]
    egress = [{"to": [_peer(t, form)], "ports": _tcp([p.container for p in t.ports])}
              for t in needs if not t.native]
    if s.id == "cloudflared":
        egress += [{"to": [_peer(t, form)], "ports": _tcp([t.port(t.public.port).container])}
                   for t in estate.services if t.public is not None and not t.native]
    if is_scraper(s):
        egress += [{"to": [_peer(t, form)], "ports": _tcp(metrics_ports(t))}
                   for t in estate.services if metrics_ports(t) and not t.native]
        # a pod on the host network has its node's address, which no pod selector matches
        egress += [{"to": [{"ipBlock": {"cidr": cidr}} for cidr in PRIVATE],
                    "ports": _tcp(metrics_ports(t))}
                   for t in estate.services if t.host_access and metrics_ports(t)]
    if s.internet is not None:  # any port and protocol: QUIC to the tunnel edge, federation …
        egress.append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": PRIVATE}}]})
    if s.role == BACKUP:  # the repository may be on a private address (a NAS, the tailnet)
        egress.append(form.repository_egress())
    pods = {"matchLabels": selector(s, form)}
    meta = _meta(s, form)
    out = [Obj({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta,
                "spec": {"podSelector": pods, "policyTypes": ["Ingress", "Egress"],
                         "ingress": ingress, "egress": egress}},
               (("enabled", s.id), ("netpol",)), s.id)]
    native = [t for t in needs if t.native]
    if native:
        ports = _tcp(sorted({p.container for t in native for p in t.ports}))
        for cond, cidr in ((("native-ip",), f"{form.native_address()}/32"),
                           (("native-dns",), "0.0.0.0/0")):
            out.append(Obj({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                            "metadata": _meta(s, form, f"{s.name}-native"),
                            "spec": {"podSelector": pods, "policyTypes": ["Egress"],
                                     "egress": [{"to": [{"ipBlock": {"cidr": cidr}}],
                                                 "ports": ports}]}},
                           (("enabled", s.id), ("netpol",), cond), s.id))
    for t in needs:
        if t.native:
            continue
        ports = [form.address(t, p.container)[1] for p in t.ports]
        out.append(Obj({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                        "metadata": _meta(s, form, f"{s.name}-external-{t.name}"),
                        "spec": {"podSelector": pods, "policyTypes": ["Egress"],
                                 "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                                             "ports": _tcp(ports)}]}},
                       (("enabled", s.id), ("netpol",), ("external", t.id)), s.id))
    return out


# --- the Ingress: the tunnel's routes for any ingress controller -------------------------

TRAEFIK_MIDDLEWARES = "traefik.ingress.kubernetes.io/router.middlewares"
# Traefik takes a Service's ClusterIP as its one server instead of its endpoints: see
# not_found_objects
TRAEFIK_NATIVE_LB = "traefik.ingress.kubernetes.io/service.nativelb"
CERT_MANAGER_ISSUER = "cert-manager.io/cluster-issuer"
MIDDLEWARE_API = "traefik.io/v1alpha1"
NOT_FOUND_PORT = 8080


def _backend(name: str, port: str) -> dict[str, Any]:
    return {"service": {"name": name, "port": {"name": port}}}


def path_rules(path: str, name: str, port: str) -> list[dict[str, Any]]:
    """A catalogue path and everything below it (the tunnel's `^/path(/|$)`) as Ingress paths
    to a Service's port that mean the same on every controller: `Exact /path` and
    `Prefix /path/`. A lone `Prefix /path` would do on a controller that matches path
    elements, as the Ingress API says, but Traefik matches prefixes by characters unless its
    `strictPrefixMatching` is set (pkg/provider/kubernetes/ingress/kubernetes.go, buildRule):
    n8n's open `/webhook` would open `/webhook-test` too."""
    bare = path.rstrip("/")
    return [{"path": bare, "pathType": "Exact", "backend": _backend(name, port)},
            {"path": f"{bare}/", "pathType": "Prefix", "backend": _backend(name, port)}]


NOT_FOUND = "-not-found"  # the 404 backend of a service's closed paths: <service> + this


def not_found_name(s: ResolvedService) -> str:
    return f"{s.name}{NOT_FOUND}"


def not_found_objects(s: ResolvedService, form: Form) -> list[Obj]:
    """The backend of a service's closed paths (Synapse's admin API): BusyBox's httpd on an
    empty directory, which answers 404 to every request, as cloudflared's `http_status:404`.

    An Ingress cannot answer by itself, and Traefik drops the router of a path whose backend
    Service is missing, or has no endpoints while `allowEmptyServices` is off (the provider's
    default; Traefik's Helm chart turns it on, then 503): the request would fall through to
    the host's `/` route and reach the service (pkg/provider/kubernetes/ingress/kubernetes.go,
    "Cannot create service", "Skipping service: no endpoints found"). So the Service has
    endpoints, two pods, and asks Traefik for its ClusterIP as the server (nativelb): the route
    exists whatever the pods do, and while none is Ready it fails closed (502), never open."""
    name = not_found_name(s)
    sel = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": form.instance}
    lab = {**sel, "app.kubernetes.io/component": "not-found", "app.kubernetes.io/part-of": PART_OF,
           "app.kubernetes.io/managed-by": form.managed_by, **form.labels()}
    ns = form.namespace(s.namespace)

    def meta(annotations: dict[str, str] | None = None) -> dict[str, Any]:
        return {"name": name, "namespace": ns, "labels": lab,
                **({"annotations": annotations} if annotations else {})}

    pod_sc, container_sc = security(Runtime())
    check = {"tcpSocket": {"port": "http"}, "periodSeconds": 10, "timeoutSeconds": 2,
             "failureThreshold": 3}
    container = {
        "name": "httpd", "image": form.wait_image(), "imagePullPolicy": form.pull_policy(),
        "command": ["httpd", "-f", "-v", "-p", str(NOT_FOUND_PORT), "-h", "/www"],
        "ports": [{"name": "http", "containerPort": NOT_FOUND_PORT, "protocol": "TCP"}],
        "resources": WAIT_RESOURCES, "securityContext": container_sc,
        "livenessProbe": check, "readinessProbe": check,
        "volumeMounts": [{"name": "www", "mountPath": "/www", "readOnly": True}],
    }
    pod = {"automountServiceAccountToken": False, "enableServiceLinks": False,
           "securityContext": pod_sc, "containers": [container],
           "volumes": [{"name": "www", "emptyDir": {"sizeLimit": "1Mi"}}],
           "topologySpreadConstraints": [{
               "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
               "whenUnsatisfiable": "DoNotSchedule", "nodeTaintsPolicy": "Honor",
               "matchLabelKeys": ["pod-template-hash"], "labelSelector": {"matchLabels": sel}}],
           "tolerations": [{"key": taint, "operator": "Exists", "effect": "NoExecute",
                            "tolerationSeconds": form.failover_seconds()}
                           for taint in NODE_LOSS_TAINTS]}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": meta(_skip_annotations(SKIPS_ALL)),
                  "spec": {"replicas": 2, "selector": {"matchLabels": sel},
                           "strategy": {"type": "RollingUpdate", "rollingUpdate": {
                               "maxUnavailable": 0, "maxSurge": 1}},
                           "revisionHistoryLimit": 3,
                           "template": {"metadata": {"labels": lab}, "spec": pod}}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": meta({TRAEFIK_NATIVE_LB: "true"}),
               "spec": {"type": "ClusterIP", "selector": sel, "ports": [{
                   "name": "http", "port": NOT_FOUND_PORT, "targetPort": "http",
                   "protocol": "TCP"}]}}
    budget = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta(),
              "spec": {"maxUnavailable": MAX_UNAVAILABLE, "selector": {"matchLabels": sel},
                       "unhealthyPodEvictionPolicy": "AlwaysAllow"}}
    policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta(),
              "spec": {"podSelector": {"matchLabels": sel}, "policyTypes": ["Ingress", "Egress"],
                       "ingress": [{"from": [form.controller_peer()],
                                    "ports": _tcp([NOT_FOUND_PORT])}],
                       "egress": []}}
    on = (("enabled", s.id), ("ingress",))
    return [Obj(service, on, s.id), Obj(deployment, on, s.id), Obj(budget, on, s.id),
            Obj(policy, (*on, ("netpol",)), s.id)]


def ingress_objects(s: ResolvedService, form: Form) -> list[Obj]:
    """The Ingress of a public service, from the facts the tunnel routes by (ResolvedPublic):
    its hostnames to its public port, its closed paths to a backend that answers 404
    (not_found_objects), and each controller pod admitted by a NetworkPolicy to the public
    port. A host that needs Cloudflare Access (an admin UI) is routed only when `protect`
    says how the controller guards it: a Traefik Middleware (basic auth from a Secret, or
    forward auth to the customer's SSO) on every path but its open ones, which get an Ingress
    of their own without it; under `omit` it is not routed at all (the chart's NOTES say so)."""
    public = s.public
    if public is None:
        return []
    on: tuple[Cond, ...] = (("enabled", s.id), ("ingress",))
    if public.access:
        on = (*on, ("protected",))
    closed = [r for p in public.closed_paths for r in path_rules(p, not_found_name(s), "http")]
    auth = f"{s.name}-auth" if public.access else None  # its Middleware

    def ingress(name: str, paths: list[dict[str, Any]], middleware: str | None
                ) -> dict[str, Any]:
        meta = _meta(s, form, name)
        meta["annotations"] = form.ingress_annotations(s, middleware)
        return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta,
                "spec": {"ingressClassName": form.ingress_class(),
                         "tls": form.ingress_tls(s),
                         "rules": form.ingress_rules(s, {"paths": paths})}}

    root = {"path": "/", "pathType": "Prefix", "backend": _backend(s.name, public.port)}
    out = [Obj(ingress(s.name, [*closed, root], auth), on, s.id)]
    if auth and public.open_paths:
        opened = [r for p in public.open_paths for r in path_rules(p, s.name, public.port)]
        out.append(Obj(ingress(f"{s.name}-open", opened, None), on, s.id))
    if auth:
        for kind in ("basicAuth", "forwardAuth"):
            out.append(Obj({"apiVersion": MIDDLEWARE_API, "kind": "Middleware",
                            "metadata": _meta(s, form, auth),
                            "spec": {kind: form.middleware(kind)}},
                           (*on, ("protect", kind)), s.id))
    if closed:
        out += not_found_objects(s, form)
    if not s.native:
        out.append(Obj({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                        "metadata": _meta(s, form, f"{s.name}-ingress-controller"),
                        "spec": {"podSelector": {"matchLabels": selector(s, form)},
                                 "policyTypes": ["Ingress"],
                                 "ingress": [{"from": [form.controller_peer()],
                                              "ports": _tcp([s.port(public.port).container])}]}},
                       (*on, ("netpol",)), s.id))
    return out


def unrouted_hosts(estate: ResolvedEstate) -> list[str]:
    """The admin UIs an enabled Ingress leaves out (`protect: omit`): said, never silent."""
    ingress = estate.settings.ingress
    if not ingress.enabled or ingress.protect != "omit":
        return []
    return [f"{s.public.hostname} ({s.id})" for s in estate.services
            if s.public is not None and s.public.access]


def service_objects(s: ResolvedService, estate: ResolvedEstate, form: Form) -> list[Obj]:
    """Every object of one service, in apply order."""
    on = ("enabled", s.id)
    if s.native:
        return native_objects(s, form) + ingress_objects(s, form)
    out = config_objects(s, form, (on,))
    for v in s.volumes:
        if v.stateful:
            size, storage_class = form.claim(s, v)
            out.append(Obj({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                            "metadata": _meta(s, form, v.claim, {
                                "helm.sh/resource-policy": "keep"}),
                            "spec": {"accessModes": ["ReadWriteOnce"],
                                     "storageClassName": storage_class,
                                     "resources": {"requests": {"storage": size}}}},
                           (on,), s.id, stateful=True))
    if s.ports:
        spec: dict[str, Any] = {"type": "ClusterIP", "selector": selector(s, form),
                                "ports": service_ports(s)}
        if s.workload == "daemon":  # headless: its DNS name lists every pod, one per node
            spec["clusterIP"] = "None"
        out.append(Obj({"apiVersion": "v1", "kind": "Service", "metadata": _meta(s, form),
                        "spec": spec}, (on,), s.id))
    if s.role == BACKUP:  # the servers' job; the claims' jobs follow the policies
        out.append(Obj(cron_job(s, estate, form, SERVERS, s), (on,), s.id))
        return out + network_policies(s, estate, form) + claim_job_objects(estate, form)
    out.append(Obj(workload(s, estate, form), (on,), s.id))
    if interchangeable(s):  # with two replicas or more: a budget for one pod makes no sense
        out.append(Obj(disruption_budget(s, form), (on, ("replicated", s.id)), s.id))
    return out + network_policies(s, estate, form) + ingress_objects(s, form)


def namespaces(estate: ResolvedEstate) -> list[str]:
    """The namespaces of the estate, the first holding the shared policies in one-namespace
    mode."""
    return sorted({s.namespace for s in estate.services})


def platform_objects(estate: ResolvedEstate, form: Form) -> list[Obj]:
    """The namespaces (restricted Pod Security), and in each a default deny for ingress and
    egress and DNS egress to kube-dns. Everything else a pod may reach is its service's own
    policy: the dependency graph, and the internet where the catalogue declares it."""
    out: list[Obj] = []
    # the namespace of a host-access daemon (node-exporter) admits it; every other pod there
    # is still reported against "restricted" (warn, audit)
    host = {s.namespace for s in estate.services if s.host_access}
    # deleting a namespace deletes its claims: one that holds a stateful claim is kept (helm
    # uninstall) and protected and retained (pulumi destroy) like the claims themselves
    holding = {s.namespace for s in estate.services if any(v.stateful for v in s.volumes)}
    for i, ns in enumerate(namespaces(estate)):
        once = () if i == 0 else (("split",),)
        meta_labels = {"app.kubernetes.io/part-of": PART_OF,
                       "app.kubernetes.io/managed-by": form.managed_by, **form.labels()}
        enforce = "privileged" if ns in host else "restricted"
        keep = {"annotations": {"helm.sh/resource-policy": "keep"}} if ns in holding else {}
        out.append(Obj({"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": form.namespace(ns), **keep, "labels": {
                **meta_labels, "pod-security.kubernetes.io/enforce": enforce,
                "pod-security.kubernetes.io/warn": "restricted",
                **({"pod-security.kubernetes.io/audit": "restricted"} if ns in host else {})}}},
            (("split",), ("create-namespaces",)), stateful=ns in holding))

        def policy(name: str, spec: dict[str, Any], ns: str = ns,
                   labels: dict[str, str] = meta_labels) -> dict[str, Any]:
            return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "metadata": {"name": name, "namespace": form.namespace(ns),
                                 "labels": labels},
                    "spec": {"podSelector": {}, **spec}}

        cond = (*once, ("netpol",))
        out += [
            Obj(policy("default-deny", {"policyTypes": ["Ingress", "Egress"]}), cond),
            Obj(policy("allow-dns", {"policyTypes": ["Egress"], "egress": [{
                "to": [{"namespaceSelector": {"matchLabels": {
                    "kubernetes.io/metadata.name": "kube-system"}},
                        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]}),
                cond),
        ]
    return out


def estate_objects(estate: ResolvedEstate, form: Form) -> list[Obj]:
    return [*platform_objects(estate, form),
            *(o for s in estate.services for o in service_objects(s, estate, form))]


# --- the concrete form: values as resolved ----------------------------------------------


@dataclass
class Concrete:
    """Values as the resolved estate has them; `secret(name)` gives a secret's value (a
    Pulumi secret Output on the k3s stack)."""

    estate: ResolvedEstate
    secret: Callable[[str], Any]
    instance: str = ""
    managed_by: str = "pulumi"
    extra_labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.instance = self.instance or f"manacore-{self.estate.settings.stack}"

    def holds(self, cond: Cond) -> bool:
        ingress = self.estate.settings.ingress
        if cond[0] == "ingress":
            return ingress.enabled
        if cond[0] == "protected":
            return ingress.protect != "omit"
        if cond[0] == "protect":
            return ingress.protect == cond[1]
        if cond[0] == "replicated":
            return self.estate[cond[1]].replicas > 1
        if cond[0] == "native-ip":
            return is_ip(self.estate.settings.native_host)
        if cond[0] == "native-dns":
            return not is_ip(self.estate.settings.native_host)
        return cond[0] != "external"  # no external services on a stack

    def namespace(self, namespace: str) -> str:
        return namespace

    def text(self, text: str) -> str:
        return text

    def address(self, service: ResolvedService, port: int) -> tuple[str, Any]:
        return service.host, port

    def native_address(self) -> str:
        return self.estate.settings.native_host

    def image(self, s: ResolvedService) -> str:
        assert s.image is not None
        return s.image

    def pull_policy(self) -> str:
        return PULL_POLICY

    def replicas(self, s: ResolvedService) -> Any:
        return s.replicas

    def max_unavailable(self, s: ResolvedService) -> Any:
        return MAX_UNAVAILABLE

    def failover_seconds(self) -> Any:
        return FAILOVER_SECONDS

    def schedule(self) -> Any:
        return self.estate.settings.backup.schedule

    def repository_egress(self) -> Any:
        endpoint = self.estate.settings.backup.s3_endpoint
        assert endpoint is not None  # catalog.backup.attach: an S3 repository on Kubernetes
        return repository_egress(endpoint)

    def resources(self, s: ResolvedService) -> Any:
        return resources(s)

    def claim(self, s: ResolvedService, v: ResolvedVolume) -> tuple[Any, Any]:
        return v.size, self.estate.settings.storage_class

    def env_data(self, s: ResolvedService) -> Any:
        return plain_env(s)

    def secret_name(self, s: ResolvedService) -> str:
        return f"{s.name}-secrets"

    def secret_payload(self, s: ResolvedService) -> dict[str, Any]:
        return {"stringData": {n: self.secret(n) for n in s.secrets}}

    def file_payload(self, s: ResolvedService, files: list[ResolvedFile]) -> dict[str, Any]:
        return {"data": {file_key(f): file_template(f) for f in files}}

    def wait_image(self) -> str:
        return WAIT_IMAGE

    def labels(self) -> dict[str, str]:
        return self.extra_labels

    def ingress_class(self) -> str:
        return self.estate.settings.ingress.class_name

    def ingress_annotations(self, s: ResolvedService, middleware: str | None) -> Any:
        own = {TRAEFIK_MIDDLEWARES: middleware_ref(s.namespace, middleware)} if middleware else {}
        return ingress_annotations(self.estate.settings.ingress, own)

    def ingress_rules(self, s: ResolvedService, http: dict[str, Any]) -> Any:
        assert s.public is not None
        return [{"host": s.public.hostname, "http": http}]

    def ingress_tls(self, s: ResolvedService) -> Any:
        tls = self.estate.settings.ingress.tls
        assert s.public is not None
        return [{"hosts": [s.public.hostname], "secretName": tls.secret_name or f"{s.name}-tls"}
                ] if tls.enabled else []

    def controller_peer(self) -> dict[str, Any]:
        c = self.estate.settings.ingress.controller
        return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name":
                                                      c.namespace}},
                "podSelector": {"matchLabels": c.pods}}

    def middleware(self, kind: str) -> dict[str, Any]:
        ingress = self.estate.settings.ingress
        if kind == "basicAuth":
            return {"secret": ingress.basic_auth.secret}
        f = ingress.forward_auth
        return {"address": f.address, "trustForwardHeader": f.trust_forward_header,
                "authResponseHeaders": list(f.auth_response_headers)}


def repository_egress(endpoint: str) -> dict[str, Any]:
    """Egress to the backup repository's S3 endpoint: its address when it is one, any
    address when it is a name (it may resolve to a private one), its port only."""
    url = urlsplit(endpoint)
    assert url.hostname is not None
    port = url.port or (443 if url.scheme == "https" else 80)
    cidr = f"{url.hostname}/32" if is_ip(url.hostname) else "0.0.0.0/0"
    return {"to": [{"ipBlock": {"cidr": cidr}}], "ports": _tcp([port])}


def middleware_ref(namespace: str, name: str) -> str:
    """How an Ingress names a Traefik Middleware (router.middlewares): `<ns>-<name>@<provider>`."""
    return f"{namespace}-{name}@kubernetescrd"


def ingress_annotations(ingress: IngressSettings, own: dict[str, str]) -> dict[str, str]:
    """Every Ingress's annotations: the user's, cert-manager's issuer when it issues the TLS
    Secrets, and the Ingress's own (its auth Middleware), which win."""
    issuer = ({CERT_MANAGER_ISSUER: ingress.tls.cluster_issuer}
              if ingress.tls.enabled and ingress.tls.cluster_issuer else {})
    return {**ingress.annotations, **issuer, **own}


def concrete_objects(estate: ResolvedEstate, secret: Callable[[str], Any],
                     form: Concrete | None = None) -> list[Obj]:
    """The objects that exist on a stack: every object whose conditions hold."""
    form = form or Concrete(estate, secret)
    return [o for o in estate_objects(estate, form) if all(form.holds(c) for c in o.when)]
