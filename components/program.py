"""The program: one resolved estate → the components of its target. `__main__.py` calls
`deploy`; tests call it under mocks."""

from __future__ import annotations

import gc

import pulumi

from catalog.resolve import ResolvedEstate
from components.base import Adapter, Platform, plan
from components.secrets import SecretStore
from components.tunnel import CloudflareTunnel


def adapter_for(estate: ResolvedEstate, secrets: SecretStore) -> Adapter:
    """Import only the target's provider SDK: macmini never loads pulumi_kubernetes."""
    if estate.target == "docker":
        from components.docker import DockerAdapter

        return DockerAdapter(estate, secrets)
    from components.kubernetes import KubernetesAdapter

    return KubernetesAdapter(estate, secrets)


_gc_tuned = False


def tune_gc() -> None:
    """Everything alive once the target's SDK is imported (the SDKs, the resolved estate) lives
    as long as the program: `gc.freeze` takes it out of the collector's sight, so the full
    collections scan only what the run made. And a run makes tens of thousands of short-lived
    Outputs, futures and tasks: collecting the young generation every 20,000 allocations instead
    of 700 spares most passes (each measured: about -10 % and -4 % of a run in fresh
    processes). Once per process: a test session deploys many times, and what is frozen is
    never collected. (A flag, not `gc.get_freeze_count()`: that walks every frozen object.)"""
    global _gc_tuned
    if not _gc_tuned:
        _gc_tuned = True
        gc.freeze()
        gc.set_threshold(20_000, 10, 10)


def deploy(estate: ResolvedEstate) -> dict[str, object]:
    # first: its checks run before anything exists, and its token feeds the connector
    tunnel = CloudflareTunnel("cloudflare-tunnel", estate)
    secrets = SecretStore("secrets", estate, provided=(
        {"TUNNEL_TOKEN": tunnel.token} if tunnel.token is not None else None))
    adapter = adapter_for(estate, secrets)
    tune_gc()
    Platform("platform", adapter)
    components = [cls(name, services, adapter) for cls, name, services in plan(estate)]
    connector = tunnel.connect(adapter)
    services = {sid: out for c in components for sid, out in c.services.items()}
    if connector is not None:
        services["cloudflared"] = connector
    outputs = {
        "target": estate.target,
        "services": services,
        "hostnames": tunnel.hostnames,
        "accessHostnames": tunnel.access_hostnames,
        "accessUnguardedHostnames": tunnel.unguarded_hostnames,
        "tunnelId": tunnel.tunnel_id,  # None: the tunnel is managed outside this stack
    }
    for key, value in outputs.items():
        pulumi.export(key, value)
    return outputs
