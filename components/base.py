"""The components of the estate and the adapter contract they call.

A component knows which services it holds, not which target it is on: it asks the adapter it
was given to deploy each service, parented to itself. The adapter (`components.docker` or
`components.kubernetes`) turns one `ResolvedService` into that target's resources, each with
`parent=` the component and an explicit `provider=`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import pulumi

from catalog.resolve import ResolvedEstate, ResolvedService


class Adapter(Protocol):
    """What a target offers the components."""

    def prepare(self, parent: pulumi.Resource) -> None:
        """Create what all services share (Docker network; Kubernetes namespaces)."""

    def deploy(self, service: ResolvedService, parent: pulumi.Resource) -> dict[str, Any]:
        """Create one service's resources under `parent`; return what a user wants to see
        (container or workload name, internal URL …) as plain values or Outputs."""


class Platform(pulumi.ComponentResource):
    """What every service shares on the target: the network or the namespaces."""

    def __init__(self, name: str, adapter: Adapter, opts: pulumi.ResourceOptions | None = None):
        super().__init__("manacore:stack:Platform", name, None, opts)
        adapter.prepare(self)
        self.register_outputs({})


class ServiceGroup(pulumi.ComponentResource):
    """A named group of services deployed through an adapter."""

    TYPE = "manacore:stack:ServiceGroup"

    def __init__(self, name: str, services: Sequence[ResolvedService], adapter: Adapter,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__(self.TYPE, name, None, opts)
        self.services = {s.id: adapter.deploy(s, self) for s in services}
        self.register_outputs({"services": self.services})


class InfraTier(ServiceGroup):
    """PostgreSQL, Redis, the object store (Garage), the tunnel connector."""

    TYPE = "manacore:stack:InfraTier"


class AppService(ServiceGroup):
    """One app: its backend, its web frontend if any, its database (core services too)."""

    TYPE = "manacore:stack:AppService"


class MatrixStack(ServiceGroup):
    """Synapse, Element, matrix-web and the three bots."""

    TYPE = "manacore:stack:MatrixStack"


class MonitoringStack(ServiceGroup):
    """VictoriaMetrics, Grafana, Umami, Pushgateway and the exporters."""

    TYPE = "manacore:stack:MonitoringStack"


class ToolsStack(ServiceGroup):
    """n8n, the Telegram bots, Watchtower."""

    TYPE = "manacore:stack:ToolsStack"


class BackupJob(ServiceGroup):
    """The scheduled backup (catalog/backup.py): created last, as it mounts the volumes of
    every other component (which own them)."""

    TYPE = "manacore:stack:BackupJob"


class NativeServices(ServiceGroup):
    """The macOS host's services as the target reaches them (nothing to create on Docker)."""

    TYPE = "manacore:stack:NativeServices"


def app_of(service: ResolvedService, estate: ResolvedEstate) -> str:
    """The app a core or app service belongs to: `chat` for chat-backend and chat-web; a helper
    with a single dependent and no public hostname joins it (searxng joins search)."""
    dependents = [s for s in estate.services if service.id in (*s.hard, *s.lazy)]
    if service.public is None and len(dependents) == 1 and \
            dependents[0].category == service.category:
        return app_of(dependents[0], estate)
    return service.id.removesuffix("-backend").removesuffix("-web")


GROUPS: dict[str, type[ServiceGroup]] = {
    "infra": InfraTier, "matrix": MatrixStack, "mon": MonitoringStack, "tools": ToolsStack,
    "native": NativeServices,
}
EDGE = frozenset({"cloudflared"})  # deployed by the CloudflareTunnel component


def plan(estate: ResolvedEstate) -> list[tuple[type[ServiceGroup], str, list[ResolvedService]]]:
    """Which component holds which services, in a stable order."""
    groups: dict[tuple[type[ServiceGroup], str], list[ResolvedService]] = {}
    for s in estate.services:
        if s.id in EDGE:
            continue
        if s.role == "backup":
            key = (BackupJob, s.id)
        elif s.category in ("core", "app"):
            key = (AppService, app_of(s, estate))
        else:
            key = (GROUPS[s.category], s.category)
        groups.setdefault(key, []).append(s)
    return [(cls, name, members) for (cls, name), members in
            sorted(groups.items(), key=lambda kv: (kv[0][0] is BackupJob,
                                                   min(s.tier for s in kv[1]), kv[0][1]))]
