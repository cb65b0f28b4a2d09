"""`manacore move`: the Phase 1 move of services' data from a Docker stack (the Mac Mini) to a
Kubernetes stack (k3s), built on the backups: both stacks' backups write to one restic
repository, so a snapshot the Docker stack takes restores on the cluster (`--from-stack`).

One run, each step timed (the services are down from "stop" to "restore"):

1. check — the secrets that must follow the data (`Secret.follows_data` in the catalogue:
   Synapse's signing key, n8n's encryption key …, and the repository's password) hold the same
   value on both stacks as deployed (compared in memory, never printed), and a dry run of the
   restore on the cluster finds the source stack's snapshots and empty targets (a target that
   holds data is refused unless --force). Nothing has stopped yet.
2. stop — the writers of the data on Docker (the services each item's restore would stop; for
   Redis its users, as Redis itself serves the backup).
3. backup — the final backup of those items in the Docker stack's backup container, one
   snapshot.
4. restore — that snapshot into the cluster, `manacore restore --stack k3s --snapshot ID
   --from-stack macmini`: the cluster's services stopped, restored, verified, started again.

The Docker side is left as it is, stopped: its volumes keep the data until the operator removes
them, and `docker start` brings a service back there. A move that fails before the cluster's
data changed (the final backup, or the cluster's restore refusing before it stopped anything)
starts the Docker writers again; one that fails in the restore leaves them stopped (the
cluster's data may be half-written: run the move again with --force).

Secrets that differ are carried with `carry_secrets`: read from the Docker containers and set in
the target Pulumi stack's config as secrets (`pulumi config set --secret`, the value on stdin,
never on a command line or in a file); `pulumi up` on the target stack then deploys them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from catalog.backup import PASSWORD_SECRET, Item
from catalog.resolve import ResolvedEstate, ResolvedService
from ops.docker_backup import DockerBackup, OpsError, Say
from ops.kube_backup import KubeBackup


class Move:
    def __init__(self, source: ResolvedEstate, target: ResolvedEstate, say: Say = print):
        if source.target != "docker" or target.target != "kubernetes":
            raise OpsError(f"a move goes from a Docker stack to a Kubernetes stack, not from "
                           f"{source.settings.stack} ({source.target}) to "
                           f"{target.settings.stack} ({target.target})", 2)
        self.source, self.target, self.say = source, target, say
        self.docker = DockerBackup(source, say)
        self.kube = KubeBackup(target, say)
        self.times: list[tuple[str, float]] = []

    # --- what moves ----------------------------------------------------------------------

    def items(self, services: list[str]) -> tuple[Item, ...]:
        """The items of the services (default: all) that both stacks back up."""
        known = self.docker.plan.services() & self.kube.plan.services()
        unknown = sorted(set(services) - known)
        if unknown:
            raise OpsError(f"nothing of {', '.join(unknown)} moves: the services with data on "
                           f"both stacks are {', '.join(sorted(known))}", 2)
        there = {i.id for i in self.kube.plan.items}
        items = tuple(i for i in self.docker.plan.select(services) if i.id in there)
        left = [i.id for i in self.docker.plan.select(services) if i.id not in there]
        if left:
            self.say(f"not moved (no such item on {self.target.settings.stack}): "
                     f"{', '.join(left)}")
        if not items:
            raise OpsError("no item to move", 2)
        return items

    def writers(self, items: tuple[Item, ...]) -> list[ResolvedService]:
        """The Docker services that write the items' data: what the items' restore stops, but
        a server the backup reads the item through (Redis) stays up, and its users stop."""
        server = self.docker.plan.redis.service if self.docker.plan.redis else None
        users = [s.id for s in self.source.services
                 if server in (*s.hard, *s.lazy) and s.id != self.docker.service.id]
        ids = dict.fromkeys(w for i in items for sid in i.stop
                            for w in (users if sid == server else [sid]))
        return [self.source[s] for s in ids]

    # --- the secrets that follow the data ------------------------------------------------

    def bound_secrets(self, items: tuple[Item, ...]) -> list[str]:
        """The secrets that must hold the same value on both stacks for these items: those the
        catalogue marks as following the data, used by a service whose data moves, and the
        repository's password."""
        follow = {s.name for s in self.source.secrets if s.follows_data}
        moving = {i.service for i in items}
        used = {n for s in self.source.services if s.id in moving for n in s.secrets}
        return sorted((follow & used) | {PASSWORD_SECRET})

    @staticmethod
    def _holder(estate: ResolvedEstate, name: str) -> tuple[ResolvedService, str]:
        """A service of the estate that gets the secret, and the environment variable that
        holds it whole (on Docker; on Kubernetes its Secret's key is the secret's name)."""
        for s in estate.services:
            for key, t in s.environment.items():
                if t.secrets == (name,) and len(t.parts) == 1:
                    return s, key
        raise OpsError(f"stack {estate.settings.stack}: no service holds the secret {name}", 2)

    def source_value(self, name: str) -> str:
        svc, key = self._holder(self.source, name)
        env = self.docker.environment(svc)
        if key not in env:
            raise OpsError(f"{svc.container_name} has no {key} (the secret {name})", 2)
        return env[key]

    def target_value(self, name: str) -> str | None:
        svc, _ = self._holder(self.target, name)
        secret = self.kube.form.secret_name(svc)
        got = self.kube.kubectl("get", "secret", secret, "-n", svc.namespace, "-o", "json",
                                check=False)
        if got.returncode != 0:
            raise OpsError(f"no Secret {svc.namespace}/{secret} on the cluster: deploy stack "
                           f"{self.target.settings.stack} first", 2)
        data = json.loads(got.stdout).get("data") or {}
        return base64.b64decode(data[name]).decode() if name in data else None

    def differing(self, names: list[str]) -> list[str]:
        """The secrets whose values differ (compared as digests: no value is kept around)."""
        return [n for n in names if _digest(self.source_value(n)) != _digest(
            self.target_value(n))]

    def carry_secrets(self, services: list[str], stack: str) -> int:
        """Sets each differing secret in the Pulumi stack `stack`'s config (`pulumi config set
        --secret`, the value on stdin); the stack's `pulumi up` then deploys it."""
        names = self.differing(self.bound_secrets(self.items(services)))
        for n in names:
            proc = subprocess.run(["pulumi", "config", "set", "--secret", "--stack", stack, n,
                                   "--non-interactive"],
                                  input=self.source_value(n), capture_output=True, text=True,
                                  timeout=300)
            if proc.returncode != 0:
                raise OpsError(f"pulumi config set --secret {n} on stack {stack}: "
                               f"{proc.stderr.strip()[-1500:]}")
            self.say(f"secrets: {n} set on stack {stack} from {self.source.settings.stack}")
        self.say(f"secrets: {len(names)} carried; now: pulumi up -s {stack}, then manacore "
                 "move" if names else "secrets: the same on both stacks, nothing to carry")
        return 0

    # --- the move ------------------------------------------------------------------------

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            took = time.monotonic() - start
            self.times.append((name, took))
            self.say(f"move: {name}: {took:.1f} s")

    def final_backup(self, items: tuple[Item, ...]) -> str:
        """A backup of the items in the Docker stack's backup container; its snapshot id."""
        name = self.docker.service.container_name
        args = [a for i in items for a in ("--item", i.id)]
        proc = self.docker.docker("exec", name, "manacore-backup", "run", *args, check=False,
                                  timeout=7200)
        for line in proc.stderr.splitlines():
            self.say(line)
        done = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
        if proc.returncode != 0 or not done:
            raise OpsError(f"the final backup failed ({proc.returncode}): "
                           f"{proc.stderr.strip()[-1500:]}")
        return str(done[-1]["snapshot"])

    def run(self, services: list[str], force: bool, dry_run: bool) -> int:
        items = self.items(services)
        frm, to = self.source.settings.stack, self.target.settings.stack
        self.say(f"move from {frm} to {to}: {', '.join(i.id for i in items)}")
        with self.step("check"):
            differ = self.differing(self.bound_secrets(items))
            if differ:
                raise OpsError(f"these secrets differ between {frm} and {to}, and the data "
                               f"needs them equal: {', '.join(differ)}; carry them with "
                               f"`manacore move --carry-secrets --to {to}` and `pulumi up -s "
                               f"{to}`", 2)
            checked = self.kube.restore(services, None, frm, force, dry_run=True, items=items)
        if checked != 0 or dry_run:
            return checked
        writers = [s for s in self.writers(items) if self.docker.running(s)]
        down = time.monotonic()
        with self.step("stop"):
            if writers:
                self.say(f"stopping {', '.join(s.container_name for s in writers)} on {frm}")
                self.docker.docker("stop", *(s.container_name for s in writers), timeout=300)
        restoring, code = False, 1  # from the restore on, the cluster's data may change
        try:
            with self.step("backup"):
                snapshot = self.final_backup(items)
                self.say(f"final backup: snapshot {snapshot[:8]} of {frm}")
            with self.step("restore"):
                restoring = True
                code = self.kube.restore(services, snapshot, frm, force, items=items)
        finally:
            if not restoring or code == 2:  # the cluster unchanged (2: refused): back on Docker
                self.docker.start(writers)
        steps = ", ".join(f"{n} {t:.1f} s" for n, t in self.times[1:])
        self.say(f"move: {'done' if code == 0 else 'FAILED'}; down for "
                 f"{time.monotonic() - down:.1f} s ({steps}), after the checks "
                 f"({self.times[0][1]:.1f} s)")
        if code == 0:
            self.say(f"the data of {', '.join(sorted({i.service for i in items}))} now lives on "
                     f"{to}; on {frm} its writers stay stopped, their volumes as they were "
                     f"(`docker start` brings one back; remove them when {to} has served for "
                     "a while). Next: the public routes to the cluster's tunnel (README: "
                     "Phase 1)")
        return code


def _digest(value: str | None) -> bytes | None:
    return None if value is None else hashlib.sha256(value.encode()).digest()
