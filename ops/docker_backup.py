"""`manacore backup` and `manacore restore` on a Docker host (a stack whose target is docker:
the Pulumi stack macmini or a Compose deployment of the export, which name their containers
alike).

A backup runs in the backup container (`manacore-backup run`). A restore runs in a one-off
container of the same image, on the same network, with the backup container's environment
(its secrets stay in memory: handed over by name through this process's environment, never on
a command line or in a file) and the volumes it backs up mounted writable: first a dry run
that refuses a non-empty target (before anything stops), then the services each item needs
stopped are stopped, the restore verifies what it wrote, the services start again, and what
can only be checked on a running server (Redis's keys) is checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable

from catalog.backup import Plan, backup_service, plan
from catalog.resolve import ResolvedEstate, ResolvedService
from exports.compose import NO_NEW_PRIVILEGES

# what a restore writes as root: files of any owner (DAC_OVERRIDE, DAC_READ_SEARCH), their
# owners (CHOWN) and modes and times (FOWNER)
RESTORE_CAPS = ("CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER")


class OpsError(Exception):
    """A restore or backup that could not run; `code` is the exit code (1 failed, 2 refused)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


Say = Callable[[str], None]


class DockerBackup:
    def __init__(self, estate: ResolvedEstate, say: Say = print):
        if estate.target != "docker":
            raise OpsError(f"stack {estate.settings.stack} targets {estate.target}: this "
                           "command works on a Docker stack (Kubernetes: stage 2)", 2)
        backup = backup_service(estate.services)
        if backup is None:
            raise OpsError(f"stack {estate.settings.stack} runs no backup service", 2)
        self.estate, self.service, self.say = estate, backup, say
        self.plan: Plan = plan(estate.services, estate.databases, estate.settings)
        host = os.environ.get("DOCKER_HOST") or estate.settings.docker_host
        self.env = {**os.environ, **({"DOCKER_HOST": host} if host else {})}

    def docker(self, *args: str, check: bool = True, env: dict[str, str] | None = None,
               timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["docker", *args], capture_output=True, text=True,
                              env={**self.env, **(env or {})}, timeout=timeout)
        if check and proc.returncode != 0:
            raise OpsError(f"docker {args[0]} {args[1] if len(args) > 1 else ''}: "
                           f"{proc.stderr.strip()[-1500:]}")
        return proc

    # --- backup --------------------------------------------------------------------------

    def backup(self, *args: str) -> int:
        """`manacore-backup ARGS` in the running backup container; its output passes through."""
        name = self.service.container_name
        if self.docker("inspect", name, check=False).returncode != 0:
            raise OpsError(f"no container {name}: deploy the stack first (pulumi up, or "
                           "docker compose up)", 2)
        proc = subprocess.run(["docker", "exec", name, "manacore-backup", *args],
                              env=self.env)
        return proc.returncode

    # --- restore -------------------------------------------------------------------------

    def environment(self, svc: ResolvedService) -> dict[str, str]:
        """A service's container's environment, as its stack gave it (secrets included)."""
        name = svc.container_name
        found = self.docker("inspect", name, check=False)
        if found.returncode != 0:
            raise OpsError(f"no container {name}: deploy stack {self.estate.settings.stack} "
                           "first (pulumi up, or docker compose up)", 2)
        return dict(e.split("=", 1) for e in json.loads(found.stdout)[0]["Config"]["Env"])

    def secrets(self) -> dict[str, str]:
        """The backup container's environment that the restore container gets."""
        env = self.environment(self.service)
        return {k: env[k] for k in self.service.environment if k in env}

    def restore_args(self, values: dict[str, str], phase: str) -> list[str]:
        """`docker run` arguments of a restore container: the backup's image, network, mounts
        (writable) and environment (names only: the values come from this process's env)."""
        args = ["run", "--rm", "--network", self.estate.settings.network,
                "--security-opt", NO_NEW_PRIVILEGES, "--cap-drop", "ALL",
                *(a for c in RESTORE_CAPS for a in ("--cap-add", c)),
                "--label", f"manacore.restore={phase}"]
        for v in self.service.volumes:
            spec = f"type=volume,src={v.name},dst={v.path}"
            if v.subpath:
                spec += f",volume-subpath={v.subpath}"
            args += ["--mount", spec]
        for m in self.service.host_mounts:
            args += ["--mount", f"type=bind,src={m.source},dst={m.path}"]
        for name in (*values, "MANACORE_BACKUP_PLAN_JSON"):
            args += ["-e", name]
        return [*args, "--entrypoint", "/usr/local/bin/manacore-backup", self.service.image or ""]

    def in_restore_container(self, values: dict[str, str], *args: str) -> int:
        env = {**self.env, **values, "MANACORE_BACKUP_PLAN_JSON": self.plan.model_dump_json()}
        phase = "dry-run" if "--dry-run" in args else args[0]
        return subprocess.run(["docker", *self.restore_args(values, phase), *args], env=env
                              ).returncode

    def restore(self, services: list[str], snapshot: str | None, from_stack: str | None,
                force: bool, dry_run: bool = False, limit: int | None = None) -> int:
        known = self.plan.services()
        unknown = sorted(set(services) - known)
        if unknown:
            raise OpsError(f"nothing is backed up of {', '.join(unknown)}; services with data: "
                           f"{', '.join(sorted(known))}", 2)
        items = self.plan.select(services)
        values = self.secrets()
        common = [*services, *(["--snapshot", snapshot] if snapshot else []),
                  *(["--from-stack", from_stack] if from_stack else [])]
        checked = self.in_restore_container(values, "restore", *common, "--dry-run",
                                            *(["--force"] if force else []))
        if checked != 0 or dry_run:
            return checked
        stop = [self.estate[s] for s in dict.fromkeys(x for i in items for x in i.stop)]
        running = [s for s in stop if self.running(s)]
        if running:
            self.say(f"stopping {', '.join(s.container_name for s in running)}")
            self.docker("stop", *(s.container_name for s in running), timeout=300)
        limit_args = ["--limit-download", str(limit)] if limit else []
        try:
            code = self.in_restore_container(values, "restore", *common, *limit_args,
                                             *(["--force"] if force else []))
        finally:
            self.start(running)
        if code == 0 and any(i.kind == "redis" for i in items):
            code = self.in_restore_container(values, "check", *common)
        return code

    def running(self, svc: ResolvedService) -> bool:
        proc = self.docker("inspect", "-f", "{{.State.Running}}", svc.container_name,
                           check=False)
        return proc.stdout.strip() == "true"

    def start(self, services: list[ResolvedService]) -> None:
        """Start in startup order and wait until each one with a health check is healthy."""
        for svc in sorted(services, key=lambda s: (s.tier, s.id)):
            self.docker("start", svc.container_name)
        deadline = time.monotonic() + 300
        for svc in services:
            while svc.health is not None:
                state = self.docker("inspect", "-f", "{{.State.Health.Status}}",
                                    svc.container_name, check=False).stdout.strip()
                if state == "healthy":
                    break
                if time.monotonic() > deadline:
                    raise OpsError(f"{svc.container_name} is {state or 'gone'} after the "
                                   "restore: see docker logs " + svc.container_name)
                time.sleep(1)
        if services:
            self.say(f"started {', '.join(s.container_name for s in services)}")

