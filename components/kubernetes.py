"""The Kubernetes adapter (stack k3s): the objects of `exports.kubernetes`, created with Pulumi.

The manifests are the same ones the Helm chart is written from; here every value is concrete,
secret values are the SecretStore's secret Outputs, and each object becomes a typed
`pulumi_kubernetes` resource parented to its component, through one explicit provider for the
stack's kube context. Claims are protected and kept when deleted.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from pydantic.alias_generators import to_snake

from catalog.resolve import ResolvedEstate, ResolvedService
from components.secrets import SecretStore
from exports.kubernetes import (
    Concrete,
    Obj,
    platform_objects,
    service_objects,
    unrouted_hosts,
)

KINDS: dict[tuple[str, str], Any] = {
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("v1", "Secret"): k8s.core.v1.Secret,
    ("v1", "Service"): k8s.core.v1.Service,
    ("v1", "PersistentVolumeClaim"): k8s.core.v1.PersistentVolumeClaim,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
    ("apps/v1", "StatefulSet"): k8s.apps.v1.StatefulSet,
    ("apps/v1", "DaemonSet"): k8s.apps.v1.DaemonSet,
    ("batch/v1", "CronJob"): k8s.batch.v1.CronJob,
    ("discovery.k8s.io/v1", "EndpointSlice"): k8s.discovery.v1.EndpointSlice,
    ("networking.k8s.io/v1", "NetworkPolicy"): k8s.networking.v1.NetworkPolicy,
    ("networking.k8s.io/v1", "Ingress"): k8s.networking.v1.Ingress,
    ("policy/v1", "PodDisruptionBudget"): k8s.policy.v1.PodDisruptionBudget,
}


# The provider's Service await watches the Service's Endpoints and, after every change, waits
# 10 s for them to settle (pulumi-kubernetes provider/pkg/await/service.go, `time.Sleep(10 *
# time.Second)` in processEndpointEvent): each Service held one of the engine's `--parallel`
# slots that long, and the 48 Services were ~60 s of a 75 s `pulumi up` on two cores (measured
# with `--otel-traces`). Pulumi already waits for every workload to be Ready (the Deployment,
# StatefulSet and DaemonSet awaits), a Service's selector is its pods' labels by construction
# (exports.kubernetes; tests/test_k3s.py), and the real-engine suite checks that every Service
# has ready endpoints after `up`; so a Service is applied without the provider's wait.
# An Ingress is applied without the provider's wait too: it waits for the Ingress's status to
# show an address, which only an ingress controller that publishes one writes (K3s' Traefik
# does, another may not): `up` would hang for its timeout. Routing through the controller is
# what the real-node suite checks.
SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}
NO_AWAIT = ("Service", "Ingress")
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "CronJob")


class KubernetesAdapter:
    """Creates the estate's Kubernetes objects; see `components.base.Adapter`."""

    def __init__(self, estate: ResolvedEstate, secrets: SecretStore):
        self.estate = estate
        self.form = Concrete(estate, secrets.value)
        self.provider = k8s.Provider("kubernetes", context=estate.settings.kube_context)
        self.namespaces: dict[str, pulumi.Resource] = {}
        self.workloads: dict[str, pulumi.Resource] = {}  # service id → its workload

    def _create(self, obj: Obj, parent: pulumi.Resource,
                after: list[pulumi.Resource] | None = None) -> pulumi.Resource:
        m = obj.manifest
        cls = KINDS.get((m["apiVersion"], m["kind"]))
        args = {to_snake(k): v for k, v in m.items() if k not in ("apiVersion", "kind")}
        if cls is None:  # a custom resource (Traefik's Middleware): its CRD is the cluster's
            cls = k8s.apiextensions.CustomResource
            args = {"api_version": m["apiVersion"], "kind": m["kind"], **args}
        if m["kind"] in NO_AWAIT:
            meta = args["metadata"]
            args["metadata"] = {**meta, "annotations": {**meta.get("annotations", {}),
                                                        **SKIP_AWAIT}}
        namespace = m["metadata"].get("namespace")
        depends = [self.namespaces[namespace]] if namespace in self.namespaces else []
        opts = pulumi.ResourceOptions(
            parent=parent, provider=self.provider, depends_on=[*depends, *(after or [])] or None,
            protect=obj.stateful or None, retain_on_delete=obj.stateful or None)
        # unique Pulumi names: kind, namespace and object name (a Service and its workload
        # share a name)
        return cls(f"{namespace or 'cluster'}-{m['kind'].lower()}-{obj.name}", opts=opts, **args)

    def _live(self, objs: list[Obj]) -> list[Obj]:
        return [o for o in objs if all(self.form.holds(c) for c in o.when)]

    def prepare(self, parent: pulumi.Resource) -> None:
        left_out = unrouted_hosts(self.estate)
        if left_out:
            pulumi.log.warn(f"the Ingress leaves out the admin UIs {', '.join(left_out)} "
                            "(manacore:ingress protect is omit): set protect to basicAuth or "
                            "forwardAuth, or reach them through the tunnel behind Access")
        for obj in self._live(platform_objects(self.estate, self.form)):
            resource = self._create(obj, parent)
            if obj.kind == "Namespace":
                self.namespaces[obj.name] = resource

    def _hard(self, service: ResolvedService) -> list[pulumi.Resource]:
        """The workloads of a service's hard dependencies, which `up` brings to Ready before it
        starts this one (the provider awaits a workload's readiness): otherwise dependents
        waiting in their init containers can hold every one of the engine's parallel steps
        (4 per CPU) while what they wait for is queued behind them — measured on the test
        cluster's real nodes, 8 backends waiting 600 s for a PostgreSQL never created. The
        plan deploys a service after its hard dependencies (components.base.plan)."""
        present = {s.id: s for s in self.estate.services}
        hard = [d for d in service.hard if d in present and not present[d].native]
        missing = [d for d in hard if d not in self.workloads]
        if missing:
            raise RuntimeError(f"{service.id}: deployed before its hard dependencies "
                               f"{', '.join(missing)} (components.base.plan)")
        return [self.workloads[d] for d in hard]

    def deploy(self, service: ResolvedService, parent: pulumi.Resource) -> dict[str, Any]:
        objs = self._live(service_objects(service, self.estate, self.form))
        for obj in objs:
            if obj.kind in WORKLOADS and obj.name == service.name:  # not its 404 backend
                self.workloads[service.id] = self._create(obj, parent, self._hard(service))
            else:
                self._create(obj, parent)
        if service.native:
            return {"native": True, "address": self.estate.settings.native_host,
                    "service": f"{service.host}",
                    "ports": {p.name: p.container for p in service.ports}}
        kind = next(o.kind for o in objs if o.kind in WORKLOADS and o.name == service.name)
        out: dict[str, Any] = {
            "workload": f"{kind}/{service.name}", "namespace": service.namespace,
            "image": service.image,
            "internal": service.internal,
            "claims": [v.claim for v in service.volumes if v.stateful],
        }
        if service.public:
            out["public"] = service.public.url
        return out
