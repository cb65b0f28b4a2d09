"""Benchmark (not a test): stack macmini under the real Pulumi engine and docker provider, beside
`docker compose up --wait` of the Compose export, on the suite's Docker Engine with the same
images and secrets (issue 25). Figures are printed, never asserted.

    flock /tmp/manacore-engines.lock .venv/bin/python bench/bench_macmini_engine.py

Needs the docker provider plugin `pulumi-resource-docker` (pulumi-docker 5.2.0, the version of
the installed Python SDK) on PATH, used as an ambient plugin: no registry here serves it and
this project does not build it (README, "Real engines"), so without it the script says so and
stops. `scripts/toolchain` gives the engine and language host, `scripts/engine up` the engine
(stopped again if this script started it), `scripts/images` the images.

1. `docker compose up -d --wait` of the rendered export from nothing (legacy volumes present and
   empty, as the suite's estate test has them), then again with nothing to do; `down -v`.
2. `pulumi up` of the stack from nothing, with `dockerHost` on the suite's engine and every
   secret set to the values Compose got; then a no-op `up`; under each, what it spent the time
   on (bench/otel.py). Afterwards the stack is destroyed (`state unprotect --all` first) and
   the volumes it created and retained are removed, with the legacy ones made here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

PLUGIN = "pulumi-resource-docker"


def main() -> None:
    plugin = shutil.which(PLUGIN)
    if plugin is None:
        raise SystemExit(f"{PLUGIN} is not on PATH: stack macmini needs the docker provider "
                         "plugin (README, 'Real engines')")
    from tests.realengine.conftest import Engine

    subprocess.run([ROOT / "scripts" / "toolchain"], check=True, capture_output=True)
    engine_script = ROOT / "scripts" / "engine"
    running = subprocess.run([engine_script, "status"], capture_output=True).returncode == 0
    host = subprocess.run([engine_script, "up"], check=True, capture_output=True,
                          text=True).stdout.strip().splitlines()[-1]
    try:
        engine = Engine(host)
        version = engine.docker("version", "--format", "{{.Server.Version}}").strip()
        print(f"stack macmini on Docker Engine {version} ({host}), provider {plugin}")
        with tempfile.TemporaryDirectory() as tmp:
            measure(engine, Path(tmp))
    finally:
        if not running:
            subprocess.run([engine_script, "down"], capture_output=True)


def measure(engine, tmp: Path) -> None:
    import otel  # bench/otel.py

    from exports.migration import HELPER_IMAGE
    from tests.conftest import resolved
    from tests.realengine.conftest import clear_project, render
    from tests.realengine.pulumi_cli import PulumiStack

    clear_project(engine)
    estate = render(engine, resolved("macmini"), tmp / "compose", extra_images=(HELPER_IMAGE,))
    # the volumes Compose and the stack create (the stack: every final volume, mounted or not
    # yet); those that exist already are another's and stay as they are
    managed = sorted(n for n in {*(n for n, v in estate.model["volumes"].items()
                                   if not v.get("external")),
                                 *(v.final for s in estate.resolved.containers
                                   for v in s.volumes)} if not engine.exists(n))
    stack = None
    try:
        estate.seed_legacy_volumes()
        took = estate.up()
        print(f"  docker compose up -d --wait (from nothing): {took:.1f} s "
              f"({len(estate.container_names())} containers)")
        took = estate.up()
        print(f"  docker compose up -d --wait (nothing to do): {took:.1f} s")
        estate.compose("down", "-v", "-t", "10")
        estate.seed_legacy_volumes()  # empty again: PostgreSQL initialises as for Compose

        stack = PulumiStack.create(tmp / "pulumi", "macmini")
        stack.config({"dockerHost": engine.host})
        stack.config(estate.env, secret=True)
        for i, what in enumerate(("pulumi up (whole estate, from nothing)",
                                  "pulumi up (no-op)")):
            trace = tmp / f"trace-{i}.json"
            start = time.monotonic()
            stack.up("--otel-traces", f"file://{trace}")
            print(f"  {what}: {time.monotonic() - start:.1f} s")
            print(f"    {otel.summary(trace)}")
    finally:
        if stack is not None:
            stack.run("state", "unprotect", "--all", *stack.stack_args(), "--yes", check=False)
            stack.run("destroy", *stack.stack_args(), "--yes", check=False)
        estate.compose("down", "-v", "-t", "5", check=False)
        clear_project(engine)
        engine.run("docker", "network", "rm", "manacore-edge", check=False)
        engine.remove_volumes(*[n for n in managed if engine.exists(n)], owned=True)
        engine.remove_volumes(*estate.legacy_volumes())


if __name__ == "__main__":
    main()
