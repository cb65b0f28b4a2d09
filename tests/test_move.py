"""`manacore move` (the Phase 1 move, ops/move.py) without engines: what it checks before
anything stops, whom it stops, which snapshot it restores, what it does when a step fails, and
how it carries the secrets the data needs. The real move, Docker engine to the cluster's real
nodes, is the real-engine suite's (tests/realengine/test_move.py)."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ops.docker_backup import OpsError
from ops.move import Move
from tests.cli_run import invoke
from tests.conftest import resolved

SNAPSHOT = "4f3e2d1c" * 8


class Fake:
    """The Docker host and the cluster as a move sees them: containers with their environment,
    the cluster's Secrets; every docker and kubectl call recorded in order."""

    def __init__(self, move: Move, differ: tuple[str, ...] = (), backup_fails: bool = False):
        self.move, self.calls = move, []
        self.values = {s.name: f"value-of-{s.name}"
                       for e in (move.source, move.target) for s in e.secrets}
        self.cluster = {n: v + ("-other" if n in differ else "") for n, v in self.values.items()}
        self.backup_fails = backup_fails
        move.docker.docker = self.docker  # type: ignore[method-assign]
        move.docker.running = lambda s: True  # type: ignore[method-assign]
        move.docker.start = lambda svcs: self.calls.append(  # type: ignore[method-assign]
            ("start", *sorted(s.container_name for s in svcs)))
        move.kube.kubectl = self.kubectl  # type: ignore[method-assign]
        move.kube.run = self.run  # type: ignore[method-assign]
        self.real_restore = move.kube.restore  # its dry run: the Jobs it would create
        move.kube.restore = self.restore  # type: ignore[method-assign]

    def docker(self, *args: str, check: bool = True, **kw: Any
               ) -> subprocess.CompletedProcess[str]:
        self.calls.append(("docker", *args))
        if args[0] == "inspect":
            svc = next(s for s in self.move.source.services if s.container_name == args[1])
            env = [f"{k}={self.values[t.secrets[0]]}" for k, t in svc.environment.items()
                   if len(t.parts) == 1 and t.secrets]
            return subprocess.CompletedProcess(args, 0, json.dumps([{"Config": {"Env": env}}]))
        if args[0] == "exec":
            if self.backup_fails:
                return subprocess.CompletedProcess(args, 1, "", "restic: connection refused")
            out = json.dumps({"snapshot": SNAPSHOT, "size": 1})
            return subprocess.CompletedProcess(args, 0, out + "\n", "backup 4f3e2d1c: …\n")
        return subprocess.CompletedProcess(args, 0, "", "")

    def kubectl(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(("kubectl", *args))
        assert args[:2] == ("get", "secret"), args
        svc = next(s for s in self.move.target.services
                   if self.move.kube.form.secret_name(s) == args[2])
        data = {n: base64.b64encode(self.cluster[n].encode()).decode() for n in svc.secrets}
        return subprocess.CompletedProcess(args, 0, json.dumps({"data": data}), "")

    def run(self, jobs: list[dict[str, Any]]) -> int:
        self.calls.append(("jobs", *(a for j in jobs for a in j["spec"]["template"]["spec"][
            "containers"][0]["args"])))
        return 0

    def restore(self, services: list[str], snapshot: str | None, from_stack: str | None,
                force: bool, dry_run: bool = False, items: Any = None) -> int:
        if dry_run:
            return self.real_restore(services, snapshot, from_stack, force, True, items)
        self.calls.append(("restore", snapshot, from_stack, force, *(i.id for i in items)))
        return 0

    def verbs(self) -> list[str]:
        return [c[1] if c[0] == "docker" else c[0] for c in self.calls]


def move(lines: list[str] | None = None) -> Move:
    return Move(resolved("macmini"), resolved("k3s"), (lines if lines is not None else []).append)


def test_a_move_stops_the_writers_backs_up_their_items_and_restores_that_snapshot() -> None:
    """Synapse moves: the checks first (the secrets its data needs, the cluster's dry run of
    the source stack's snapshot), then Synapse stops on Docker, the final backup takes its
    database and media, and exactly that snapshot is restored into the cluster; each step's
    time and the downtime are printed, and the Docker side is left stopped."""
    lines: list[str] = []
    m = move(lines)
    fake = Fake(m)
    assert m.run(["synapse"], force=False, dry_run=False) == 0
    assert fake.verbs() == ["inspect", "kubectl"] * 3 + [
        "jobs", "stop", "exec", "restore"], fake.calls
    inspected = [c[2] for c in fake.calls if c[:2] == ("docker", "inspect")]
    assert inspected == [m.source["backup"].container_name] + [
        m.source["synapse"].container_name] * 2  # repository password, macaroon, signing key
    dry = next(c for c in fake.calls if c[0] == "jobs")
    at = dry.index("--from-stack")
    assert "--dry-run" in dry and dry[at + 1] == "macmini"
    assert "--force" not in dry
    assert next(c for c in fake.calls if c[1:2] == ("stop",))[2:] == (
        m.source["synapse"].container_name,)
    exec_ = next(c for c in fake.calls if c[1:2] == ("exec",))
    assert exec_[2:] == (m.source["backup"].container_name, "manacore-backup", "run", "--item",
                         "database:synapse", "--item", "volume:synapse:/data")
    assert fake.calls[-1] == ("restore", SNAPSHOT, "macmini", False, "database:synapse",
                              "volume:synapse:/data")
    assert not [c for c in fake.calls if c[0] == "start"]  # stays stopped on Docker
    for step in ("check", "stop", "backup", "restore"):
        assert any(x.startswith(f"move: {step}: ") and x.endswith(" s") for x in lines), lines
    assert any(re.fullmatch(r"move: done; down for [\d.]+ s \(stop [\d.]+ s, backup [\d.]+ s, "
                            r"restore [\d.]+ s\), after the checks \([\d.]+ s\)", x)
               for x in lines), lines


def test_a_secret_the_data_needs_that_differs_is_refused_before_anything_stops() -> None:
    m = move()
    fake = Fake(m, differ=("SYNAPSE_SIGNING_KEY",))
    with pytest.raises(OpsError) as refused:
        m.run(["synapse"], force=False, dry_run=False)
    assert refused.value.code == 2
    message = str(refused.value)
    assert "SYNAPSE_SIGNING_KEY" in message and "--carry-secrets" in message
    assert "value-of" not in message  # never the values
    assert set(fake.verbs()) == {"inspect", "kubectl"}  # nothing stopped, no job


def test_a_dry_run_checks_only() -> None:
    m = move()
    fake = Fake(m)
    assert m.run([], force=True, dry_run=True) == 0
    assert fake.verbs()[-1] == "jobs" and "stop" not in fake.verbs()
    dry = fake.calls[-1]
    assert "--force" in dry and "--dry-run" in dry
    # every service with data on both stacks: the roles, each database, Redis, the buckets …
    assert {"roles", "redis", "objects", "database:auth", "volume:synapse:/data"} <= set(dry)


def test_a_failed_final_backup_starts_the_writers_again_and_leaves_the_cluster() -> None:
    m = move()
    fake = Fake(m, backup_fails=True)
    with pytest.raises(OpsError, match="the final backup failed"):
        m.run(["synapse"], force=False, dry_run=False)
    assert fake.calls[-1] == ("start", m.source["synapse"].container_name)
    assert "restore" not in fake.verbs()


def test_redis_moves_with_its_users_stopped_and_itself_serving_the_backup() -> None:
    m = move()
    writers = {s.id for s in m.writers(m.items(["redis"]))}
    assert "redis" not in writers and "backup" not in writers
    users = {s.id for s in m.source.services if "redis" in (*s.hard, *s.lazy)} - {"backup"}
    assert writers == users and users


def test_only_a_service_with_data_on_both_stacks_moves() -> None:
    with pytest.raises(OpsError) as refused:
        move().items(["synapse", "nothing-here"])
    assert refused.value.code == 2 and "nothing of nothing-here moves" in str(refused.value)


def test_carried_secrets_go_into_the_target_stacks_config_through_stdin(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the differing ones, each value on `pulumi config set --secret`'s stdin: never on
    a command line (ps shows it) or in a file."""
    pulumi = tmp_path / "pulumi"
    pulumi.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/argv\ncat >> {tmp_path}/stdin\n'
                      f'echo >> {tmp_path}/stdin\n')
    pulumi.chmod(pulumi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    lines: list[str] = []
    m = move(lines)
    Fake(m, differ=("SYNAPSE_SIGNING_KEY", "N8N_ENCRYPTION_KEY"))
    assert m.carry_secrets(["synapse"], "k3s") == 0
    assert (tmp_path / "argv").read_text().splitlines() == [  # n8n's: not Synapse's data
        "config set --secret --stack k3s SYNAPSE_SIGNING_KEY --non-interactive"]
    assert (tmp_path / "stdin").read_text() == "value-of-SYNAPSE_SIGNING_KEY\n"
    assert "pulumi up -s k3s" in lines[-1]


def test_the_secrets_that_follow_the_data_are_declared() -> None:
    follow = {s.name for s in resolved("macmini").secrets if s.follows_data}
    assert {"SYNAPSE_SIGNING_KEY", "N8N_ENCRYPTION_KEY", "BACKUP_REPOSITORY_PASSWORD"} <= follow
    assert "POSTGRES_PASSWORD" not in follow  # the target's roles keep the target's passwords


def test_the_command_refuses_a_move_between_the_wrong_kinds_of_stack() -> None:
    wrong = invoke("move", "--from", "k3s", "--to", "macmini")
    assert wrong.exit_code == 2, wrong.output
    assert "from a Docker stack to a Kubernetes stack" in wrong.stderr
