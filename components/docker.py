"""The docker target (stack macmini): each resolved service becomes an image, its volumes and a
container on one Docker host, through an explicit `docker.Provider` (`dockerHost` setting).

Container facts come from the resolved spec; how they are spelt for the Docker engine (health
probe, durations, MiB and memory+swap, capabilities, stop grace, port order, host gateway,
subpath preparation) comes from `exports.compose`, so the Pulumi stack and the Compose export
cannot drift apart. Every input is spelled as the engine reports it back: the provider refreshes
its state from `docker inspect`, so the next preview compares the engine's spelling with the
program's (tests/realengine/test_compose_estate.py, tests/test_docker_state.py).
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_docker as docker

from catalog.resolve import ResolvedEstate, ResolvedService, SecretRef, Template
from components.secrets import SecretStore
from exports.compose import (
    HOST_GATEWAY,
    LOOPBACK,
    NATIVE_ALIAS,
    RESTART,
    VOLUME_INIT_IMAGE,
    VOLUME_INIT_MEMORY_MB,
    VOLUME_INIT_MOUNT,
    VOLUME_INIT_PRIVILEGES,
    Privileges,
    hard_containers,
    healthcheck,
    inits_needed,
    memory_mb,
    memory_swap_mb,
    networks,
    privileges,
    published,
    stop_grace,
    uses_host_gateway,
    volume_init_command,
    volume_init_name,
    volume_inits,
    wait_timeout,
)


class DockerAdapter:
    """Deploys resolved services as Docker containers; see `components.base.Adapter`."""

    def __init__(self, estate: ResolvedEstate, secrets: SecretStore):
        self.estate, self.secrets = estate, secrets
        settings = estate.settings
        self.provider = docker.Provider("docker", host=settings.docker_host)
        self.network: docker.Network | None = None
        self.networks: dict[str, docker.Network] = {}
        self.volumes: dict[str, docker.Volume] = {}
        self.legacy_volumes: dict[str, docker.Volume] = {}
        self.inits: dict[str, docker.Container] = {}
        self.containers: dict[str, docker.Container] = {}
        self._inits = volume_inits(estate)
        self._stateful = {v.final for s in estate.containers for v in s.volumes if v.stateful}

    def _opts(self, parent: pulumi.Resource, **extra: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=parent, provider=self.provider, **extra)

    def prepare(self, parent: pulumi.Resource) -> None:
        """The internal network (containers find each other by name) and the edge network of
        the tunnel connector and the services it routes to (exports.compose.networks)."""
        s = self.estate.settings
        for name in (s.network, s.edge_network):
            self.networks[name] = docker.Network(
                name, name=name, driver="bridge",
                labels=[docker.NetworkLabelArgs(label="manacore.stack", value=s.stack)],
                opts=self._opts(parent))
        self.network = self.networks[s.network]

    def deploy(self, service: ResolvedService, parent: pulumi.Resource) -> dict[str, Any]:
        if service.native:  # a macOS host service: nothing to create, only to reach
            return {"native": True, "address": service.host,
                    "ports": {p.name: p.container for p in service.ports}}
        if self.network is None:
            raise RuntimeError("DockerAdapter.prepare() must run before deploy()")
        image = docker.RemoteImage(f"{service.id}-image", name=service.image, keep_locally=True,
                                   opts=self._opts(parent))
        # Volumes and networks by name as plain text, the resources in depends_on: the same
        # registration and dependencies as their `name` Outputs, without an Output (and its
        # tasks) each
        mounted = [self._mount(service, index, parent) for index in range(len(service.volumes))]
        mounts = [mount for mount, _ in mounted]
        used = [*(volume for _, volume in mounted),
                *(self.networks[n] for n in networks(service, self.estate))]
        mounts += [docker.ContainerMountArgs(type="bind", source=m.source, target=m.path,
                                             read_only=m.read_only)
                   for m in service.host_mounts if not m.create]
        # a bind that makes its missing source: the engine's Binds do, its Mounts refuse
        made = [docker.ContainerVolumeArgs(host_path=m.source, container_path=m.path,
                                           read_only=m.read_only)
                for m in service.host_mounts if m.create]
        check = healthcheck(service)
        memory = memory_mb(service)
        container = docker.Container(
            service.container_name,
            name=service.container_name,
            image=image.image_id,  # the ID, not the name: a name forces a replace on every up
            command=[self._value(c) for c in service.command] if service.command else None,
            envs=self._envs(service),
            ports=[docker.ContainerPortArgs(internal=p.container, external=p.published,
                                            ip=LOOPBACK, protocol="tcp")
                   for p in published(service)] or None,
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=check["test"], interval=check["interval"], timeout=check["timeout"],
                retries=check["retries"], start_period=check["start_period"],
                start_interval=check["start_interval"]) if check else None,
            restart=RESTART,
            stop_timeout=stop_grace(service),  # `docker stop`, a host shutdown
            destroy_grace_seconds=stop_grace(service),  # when Pulumi replaces or removes it
            **self._privileges(privileges(service)),
            memory=memory, memory_swap=memory_swap_mb(memory),
            labels=[docker.ContainerLabelArgs(label=k, value=v)
                    for k, v in sorted(service.labels.items())],
            mounts=mounts or None,
            volumes=made or None,
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=n)
                               for n in networks(service, self.estate)],
            hosts=[docker.ContainerHostArgs(host=NATIVE_ALIAS, ip=HOST_GATEWAY)]
            if uses_host_gateway(service, self.estate) else None,
            uploads=[docker.ContainerUploadArgs(file=f.path, content=self._value(f.content),
                                                permissions=f"{f.mode:04o}")
                     for f in service.files] or None,
            # `up` returns once every container is healthy, as `docker compose up --wait` and
            # the k3s stack do; a hard dependent is created only after this one is healthy
            wait=True if check else None,
            wait_timeout=wait_timeout(service) if check else None,
            opts=self._opts(parent, depends_on=[*self._depends_on(service),
                                                *dict.fromkeys(used)]))
        self.containers[service.id] = container
        out: dict[str, Any] = {
            "container": service.container_name, "image": service.image,
            "internal": service.internal,
            "published": {p.name: f"{LOOPBACK}:{p.published}"
                          for p in service.ports if p.published},
        }
        if service.public:
            out["public"] = service.public.url
        return out

    # --- pieces of a container -----------------------------------------------------------

    @staticmethod
    def _privileges(p: Privileges) -> dict[str, Any]:
        """The same confinement as the Compose file (exports.compose.privileges)."""
        return {"security_opts": list(p.security_opt),
                "capabilities": docker.ContainerCapabilitiesArgs(
                    drops=list(p.cap_drop) or None, adds=list(p.cap_add) or None)
                if p.cap_drop or p.cap_add else None}

    def _value(self, template: Template) -> pulumi.Input[str]:
        """Plain text, or a secret Output when the template embeds a secret."""
        if not template.secrets:
            return template.render(str)
        return pulumi.Output.concat(*(self.secrets.value(p.secret) if isinstance(p, SecretRef)
                                      else p for p in template.parts))

    def _envs(self, service: ResolvedService) -> pulumi.Input[list[str]] | None:
        """`KEY=value` lines; the whole list is a secret as soon as one value is: the secret
        values are secret Outputs, and so is what is computed from them. One Output for the
        list (each costs the engine a task and a serialization)."""
        environment = service.environment
        if not environment:
            return None
        names = sorted({n for t in environment.values() for n in t.secrets})
        if not names:
            return [f"{k}={t.plain}" for k, t in environment.items()]
        return pulumi.Output.all(**{n: self.secrets.value(n) for n in names}).apply(
            lambda values: [f"{k}={t.render(values.__getitem__)}"
                            for k, t in environment.items()])

    def _mount(self, service: ResolvedService, index: int, parent: pulumi.Resource
               ) -> tuple[docker.ContainerMountArgs, docker.Volume]:
        """The mount of a service's volume and the volume it mounts."""
        v = service.volumes[index]
        volume = self._volume(v.final, parent)
        if not v.migrated:  # mount the legacy data; the final volume waits, empty and unused
            volume = self._legacy(v.name, parent)  # read: must exist (the container needs it)
        return docker.ContainerMountArgs(
            type="volume", source=v.name, target=v.path,  # the volume to mount now
            read_only=v.read_only or None,  # the backup service's copies
            volume_options=docker.ContainerMountVolumeOptionsArgs(subpath=v.subpath)
            if v.subpath else None), volume

    def _volume(self, name: str, parent: pulumi.Resource) -> docker.Volume:
        """A named volume, created once however many services mount it. Stateful ones are
        protected and retained: no `pulumi destroy` or rename ever deletes their data."""
        if name not in self.volumes:
            stateful = name in self._stateful
            self.volumes[name] = docker.Volume(
                name, name=name,
                opts=self._opts(parent, protect=stateful, retain_on_delete=stateful))
            if name in self._inits:
                self.inits[name] = self._volume_init(name, parent)
        return self.volumes[name]

    def _legacy(self, name: str, parent: pulumi.Resource) -> docker.Volume:
        """A legacy volume still holding a service's data, read, never managed: a wrong name
        fails the preview instead of creating an empty volume, and marking the volume
        migrated later only changes the mount (nothing protected has to be deleted)."""
        if name not in self.legacy_volumes:
            self.legacy_volumes[name] = docker.Volume.get(f"legacy-{name}", name,
                                                          opts=self._opts(parent))
        return self.legacy_volumes[name]

    def _volume_init(self, name: str, parent: pulumi.Resource) -> docker.Container:
        """A one-shot container creating a shared volume's subdirectories (Docker does not);
        `attach` makes Pulumi wait for it to finish before the consumers are created."""
        image = docker.RemoteImage(f"{volume_init_name(name)}-image", name=VOLUME_INIT_IMAGE,
                                   keep_locally=True, opts=self._opts(parent))
        return docker.Container(
            volume_init_name(name), name=volume_init_name(name), image=image.image_id,
            command=volume_init_command(self._inits[name]), attach=True, must_run=False,
            restart="no", memory=VOLUME_INIT_MEMORY_MB,
            memory_swap=memory_swap_mb(VOLUME_INIT_MEMORY_MB), network_mode="none",
            **self._privileges(VOLUME_INIT_PRIVILEGES),
            labels=[docker.ContainerLabelArgs(label="manacore.volume-init", value=name)],
            mounts=[docker.ContainerMountArgs(type="volume", source=name,
                                              target=VOLUME_INIT_MOUNT)],
            opts=self._opts(parent, depends_on=[self.volumes[name]]))

    def _depends_on(self, service: ResolvedService) -> list[pulumi.Resource]:
        """The containers of its hard dependencies (created earlier: components deploy in
        startup order) and the inits of the shared volumes it mounts."""
        missing = [d for d in hard_containers(service, self.estate) if d not in self.containers]
        if missing:
            raise RuntimeError(f"{service.id}: hard dependencies {', '.join(missing)} are not "
                               "deployed yet; components must be created in startup order")
        return [*(self.containers[d] for d in hard_containers(service, self.estate)),
                *(self.inits[v] for v in inits_needed(service))]
