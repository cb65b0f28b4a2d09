"""The program: one resolved estate → the components of its target. `__main__.py` calls
`deploy`; tests call it under mocks."""

from __future__ import annotations

import pulumi

from catalog.resolve import ResolvedEstate
from components.base import Adapter, Platform, plan
from components.secrets import SecretStore


def adapter_for(estate: ResolvedEstate, secrets: SecretStore) -> Adapter:
    """Import only the target's provider SDK: macmini never loads pulumi_kubernetes."""
    if estate.target == "docker":
        from components.docker import DockerAdapter

        return DockerAdapter(estate, secrets)
    from components.kubernetes import KubernetesAdapter

    return KubernetesAdapter(estate, secrets)


def deploy(estate: ResolvedEstate) -> dict[str, object]:
    secrets = SecretStore("secrets", estate)
    adapter = adapter_for(estate, secrets)
    Platform("platform", adapter)
    components = [cls(name, services, adapter) for cls, name, services in plan(estate)]
    outputs = {
        "target": estate.target,
        "services": {sid: out for c in components for sid, out in c.services.items()},
        "hostnames": sorted(s.public.hostname for s in estate.services if s.public),
    }
    for key, value in outputs.items():
        pulumi.export(key, value)
    return outputs
