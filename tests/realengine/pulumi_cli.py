"""The real Pulumi CLI on a copy of the project: the toolchain `scripts/toolchain` builds
(.tools/bin: engine, Python language host, provider plugins used as ambient plugins, automatic
plugin acquisition off), a local file backend and passphrase secrets in a temp folder.

The copy holds the checkout's files (its virtualenv and tools linked): `pulumi stack init` and
`pulumi config set` write into `Pulumi.<stack>.yaml`, and a test may edit `services.py` the way a
user does, while the checkout stays as it is. These are the commands the README gives for a
local backend.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from catalog.settings import ROOT

TOOLS = ROOT / ".tools" / "bin"
PASSPHRASE = "manacore-real-engine-suite"  # a test stack's own, never a real one


@dataclass
class PulumiStack:
    """One stack of the project under the real engine; every call is a `pulumi` command."""

    workdir: Path
    stack: str
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, tmp: Path, stack: str, env: dict[str, str] | None = None) -> PulumiStack:
        work, state, home = tmp / "project", tmp / "state", tmp / "pulumi-home"
        # the kubernetes provider writes the kubeconfig it was given (client key included)
        # into a new $TMPDIR/kubeconfig* on every run and never removes it (its util.go,
        # writeKubeconfigToFile): the stack's own TMPDIR, removed with the test's folder
        scratch = tmp / "tmp"
        for folder in (work, state, home, scratch):
            folder.mkdir(parents=True, exist_ok=True)
        for entry in ROOT.iterdir():
            if entry.name.startswith(".venv") or entry.name == ".tools":
                (work / entry.name).symlink_to(entry)  # installed, not the project's source
            elif entry.is_dir() and not entry.name.startswith((".", "__")) and entry.name != "out":
                shutil.copytree(entry, work / entry.name,
                                ignore=shutil.ignore_patterns("__pycache__"))
            elif entry.is_file():
                shutil.copy2(entry, work / entry.name)
        path = os.pathsep.join([str(TOOLS), str(ROOT / ".venv" / "bin"), os.environ["PATH"]])
        full = {**os.environ, "PATH": path, "PULUMI_HOME": str(home),
                "PULUMI_BACKEND_URL": f"file://{state}",
                "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
                "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
                "PULUMI_SKIP_UPDATE_CHECK": "true", "PULUMI_SKIP_CONFIRMATIONS": "true",
                "PULUMI_NO_PROMPT": "true", "NO_COLOR": "1", "TMPDIR": str(scratch),
                **(env or {})}
        full.pop("VIRTUAL_ENV", None)
        me = cls(work, stack, full)
        me.run("stack", "init", stack)
        return me

    def run(self, *args: str, check: bool = True, timeout: float = 1800
            ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(TOOLS / "pulumi"), *args, "--non-interactive"],
                              capture_output=True, text=True, cwd=self.workdir, env=self.env,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"pulumi {' '.join(args[:3])} … exited {proc.returncode}:\n"
                                 f"{proc.stdout[-6000:]}\n{proc.stderr[-4000:]}")
        return proc

    def stack_args(self) -> tuple[str, ...]:
        return ("--stack", self.stack)

    def config(self, values: dict[str, Any], *, secret: bool = False) -> None:
        """`pulumi config set [--secret] manacore:KEY VALUE` for each value (a secret goes in
        on stdin, never on a command line)."""
        for key, value in values.items():
            full = key if ":" in key else f"manacore:{key}"
            text = value if isinstance(value, str) else json.dumps(value)
            if secret:
                proc = subprocess.run([str(TOOLS / "pulumi"), "config", "set", "--secret",
                                       full, *self.stack_args(), "--non-interactive"],
                                      input=text, capture_output=True, text=True,
                                      cwd=self.workdir, env=self.env, timeout=120)
                assert proc.returncode == 0, proc.stderr
            else:
                self.run("config", "set", full, text, *self.stack_args())

    def preview(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("preview", *self.stack_args(), "--diff", *args, check=check)

    def preview_json(self, *args: str) -> dict[str, Any]:
        """`pulumi preview --json`: the steps the engine plans (op, type, urn …)."""
        return json.loads(self.run("preview", *self.stack_args(), "--json", *args).stdout)

    def up(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("up", *self.stack_args(), "--yes", "--skip-preview", *args,
                        check=check)

    def outputs(self) -> dict[str, Any]:
        return json.loads(self.run("stack", "output", *self.stack_args(), "--json").stdout)

    def export(self) -> dict[str, Any]:
        return json.loads(self.run("stack", "export", *self.stack_args()).stdout)

    def resources(self) -> list[dict[str, Any]]:
        return self.export()["deployment"].get("resources") or []
