"""Benchmark (not a test): issue 16's speed targets, all from one run.

    .venv/bin/python bench/bench_speed.py [--repeat N] [--repeat-large N] [--scale 10]
                                          [--cli-repeat N]

1. The program under mocks against its flat baseline (bench/flat.py: the same registrations
   replayed as flat SDK constructions with plain values, regenerated from this run), on both
   stacks, for the catalogue and the synthetic estate `--scale` times larger (bench/bench.py);
   each stack in a fresh process, as `pulumi up` evaluates one stack's program (measured: a
   stack timed after the other in one process came out 10 % worse against its baseline).
   "Ours" is what `__main__.py` does after loading the catalogue: resolve it for the stack's
   settings and deploy it. Both run in the same process state: ours' first run tunes the
   collector once (`components.program.tune_gc`), so every timed run of either has it, and the
   bench's own data is frozen while timing, as a fresh process would not have it. Ours and
   flat run interleaved in pairs (ours-flat, then flat-ours), each after a `gc.collect()`,
   timed in CPU time of this process
   (`time.process_time`: the machine is shared, wall time is noise). A figure is the median of
   `--repeat` runs (`--repeat-large` for the large estate); ours/flat is the median of the
   pairs' ratios (robust to the load drifting).
   Targets: ours/flat ≤ 1.10 per stack; growth (x10 over catalogue) of ours ≤ 1.1 × flat's.
2. `manacore validate` and `manacore ports` as installed (`.venv/bin/manacore`) and as a user
   runs them (bytecode cached: `PYTHONDONTWRITEBYTECODE` is dropped, one warm-up run), median
   wall time of `--cli-repeat` runs (and the CPU time they used). Target: ≤ 0.4 s wall.
3. With `--real-engine`: the real Pulumi engine (`scripts/toolchain`) on stack k3s against the
   suite's API server (`scripts/cluster up`), wall time of `pulumi preview` and `pulumi up` of
   the whole stack, then of a no-op preview and `up`, next to the same program's evaluation
   under mocks; under each, what it spent the time on (bench/otel.py, from the command's
   `--otel-traces`: when the program registered, provider time by call and type, state
   writes). The stack is destroyed and its namespaces deleted afterwards. (Stack macmini
   needs the docker provider, which the Go module proxy does not serve: README, "Real
   engines".)
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROGRAM_RATIO = 1.10  # ours / flat, CPU time, per stack
GROWTH_RATIO = 1.1  # ours' growth over the large estate / flat's growth
CLI_SECONDS = 0.4  # wall time of `manacore validate` and `manacore ports`
STACKS = ("macmini", "k3s")


def _load(name: str):
    """A sibling module of bench/ by path: bench/ is no package."""
    spec = importlib.util.spec_from_file_location(f"manacore_bench_{name}",
                                                  ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def cpu(fn: Callable[[], object]) -> float:
    gc.collect()
    start = time.process_time()
    fn()
    return time.process_time() - start


def program_figures(stack: str, repeat: int, repeat_large: int, scale: int
                    ) -> tuple[list[str], list[bool]]:
    """One stack's figures, in this process (main runs each stack in a fresh one)."""
    import pulumi

    from catalog.load import load_estate
    from catalog.resolve import resolve
    from catalog.settings import PROJECT, settings_from_config
    from components.program import deploy
    from tests.conftest import known_secrets
    from tests.harness import run_program

    bench, flat = _load("bench"), _load("flat")
    secrets = known_secrets()
    estates = {"catalogue": load_estate(), f"x{scale}": bench.synthetic(scale)}
    lines, met = [], []
    medians: dict[str, tuple[float, float, float]] = {}
    for label, estate in estates.items():
        def ours(estate=estate) -> None:
            deploy(resolve(estate, settings_from_config(pulumi.get_stack(),
                                                        pulumi.Config(PROJECT).get)))

        def run(program: Callable[[], object]):
            return run_program(stack, secrets=secrets, program=program)

        recording, recorded = flat.record(run, ours)
        baseline = run(recording.replay)
        wrong = flat.differences(recorded.registrations, baseline.registrations)
        if wrong or baseline.exports != recorded.exports:
            raise SystemExit(f"{stack} {label}: the flat baseline differs from ours:\n  "
                             + "\n  ".join(wrong or ["stack exports"]))
        times: dict[str, list[float]] = {"ours": [], "flat": []}
        programs = {"ours": ours, "flat": recording.replay}
        gc.collect()
        gc.freeze()  # the bench's own data (estates, recordings) is no program's burden
        for i in range(repeat if label == "catalogue" else repeat_large):
            for who in ("ours", "flat") if i % 2 == 0 else ("flat", "ours"):
                times[who].append(cpu(lambda p=programs[who]: run(p)))
        gc.unfreeze()
        mine, theirs = statistics.median(times["ours"]), statistics.median(times["flat"])
        paired = statistics.median(a / b for a, b in zip(times["ours"], times["flat"],
                                                         strict=True))
        medians[label] = (mine, theirs, paired)
        lines.append(
            f"{stack:>8} {label:>9}  {len(recorded.registrations):>5} resources  "
            f"ours {mine:6.3f} s  flat {theirs:6.3f} s  ours/flat {paired:.3f}  "
            f"Output inputs: ours {recording.derived_outputs + recording.attribute_outputs}"
            f", flat {recording.flat_outputs}")
    (small_ours, small_flat, ratio), (big_ours, big_flat, _) = medians.values()
    growth = (big_ours / small_ours) / (big_flat / small_flat)
    met += [ratio <= PROGRAM_RATIO, growth <= GROWTH_RATIO]
    lines.append(f"{stack:>8}  target ours/flat ≤ {PROGRAM_RATIO}: {ratio:.3f} "
                 f"{'met' if met[-2] else 'MISSED'}; growth x{scale}: ours "
                 f"{big_ours / small_ours:.2f}×, flat {big_flat / small_flat:.2f}×, ratio "
                 f"{growth:.3f} (target ≤ {GROWTH_RATIO}) {'met' if met[-1] else 'MISSED'}")
    return lines, met


def cli_figures(repeat: int) -> tuple[list[str], list[bool]]:
    manacore = ROOT / ".venv" / "bin" / "manacore"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    lines, met = [], []
    for command in (["validate"], ["ports"]):
        walls, cpus = [], []
        subprocess.run([str(manacore), *command], cwd=ROOT, env=env, check=True,
                       capture_output=True)  # warm-up: writes the project's bytecode
        for _ in range(repeat):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run([str(manacore), *command], cwd=ROOT, env=env, check=True,
                           capture_output=True)
            walls.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        wall = statistics.median(walls)
        met.append(wall <= CLI_SECONDS)
        lines.append(f"manacore {' '.join(command):<8}  wall {wall:.3f} s [min {min(walls):.3f}]"
                     f"  cpu {statistics.median(cpus):.3f} s  target ≤ {CLI_SECONDS} s wall: "
                     f"{'met' if met[-1] else 'MISSED'}")
    return lines, met


def engine_figures() -> list[str]:
    """Target 4 on the real engine (k3s): see the module's docstring."""
    import tempfile

    from tests.conftest import resolved
    from tests.harness import run_program
    from tests.realengine.conftest import random_env
    from tests.realengine.pulumi_cli import PulumiStack

    subprocess.run([ROOT / "scripts" / "toolchain"], check=True, capture_output=True)
    kubeconfig = subprocess.run([ROOT / "scripts" / "cluster", "up"], check=True,
                                capture_output=True, text=True).stdout.strip().splitlines()[-1]
    context = subprocess.run([ROOT / ".tools" / "bin" / "kubectl", "--kubeconfig", kubeconfig,
                              "config", "current-context"], check=True, capture_output=True,
                             text=True).stdout.strip()
    secrets = random_env(resolved("k3s"))
    start = time.monotonic()
    run_program("k3s", config={"kubeContext": context}, secrets=secrets)
    lines = [f"  k3s under mocks (one evaluation, wall): {time.monotonic() - start:.1f} s"]
    with tempfile.TemporaryDirectory() as tmp:
        stack = PulumiStack.create(Path(tmp), "k3s", env={"KUBECONFIG": kubeconfig})
        stack.config({"kubeContext": context})
        stack.config(secrets, secret=True)
        otel = _load("otel")
        try:
            for i, (what, call) in enumerate((("pulumi preview (empty stack)", stack.preview),
                                              ("pulumi up (whole estate)", stack.up),
                                              ("pulumi preview (no changes)", stack.preview),
                                              ("pulumi up (no-op)", stack.up))):
                trace = Path(tmp) / f"trace-{i}.json"
                start = time.monotonic()
                call("--otel-traces", f"file://{trace}")
                lines.append(f"  {what}: {time.monotonic() - start:.1f} s")
                lines.append(f"    {otel.summary(trace)}")
        finally:
            stack.run("state", "unprotect", "--all", *stack.stack_args(), "--yes", check=False)
            stack.run("destroy", *stack.stack_args(), "--yes", check=False)
            kubectl = [ROOT / ".tools" / "bin" / "kubectl", "--kubeconfig", kubeconfig]
            names = [n["metadata"]["name"] for n in json.loads(subprocess.run(
                [*kubectl, "get", "namespaces", "-o", "json"], capture_output=True,
                text=True).stdout or '{"items": []}')["items"]
                if n["metadata"]["name"].startswith("manacore-")]
            if names:
                subprocess.run([*kubectl, "delete", "namespace", *names], capture_output=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--repeat-large", type=int, default=5)
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--cli-repeat", type=int, default=7)
    parser.add_argument("--real-engine", action="store_true",
                        help="also time the real Pulumi engine on stack k3s (minutes)")
    parser.add_argument("--stack-figures", choices=STACKS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = ["--repeat", str(args.repeat), "--repeat-large", str(args.repeat_large),
             "--scale", str(args.scale)]
    if args.stack_figures:  # one stack's program figures, as JSON, for the parent run
        lines, met = program_figures(args.stack_figures, args.repeat, args.repeat_large,
                                     args.scale)
        print(json.dumps({"lines": lines, "met": met}))
        return

    cli_lines, cli_met = cli_figures(args.cli_repeat)  # first: before this process grows
    program_lines, program_met = [], []
    for stack in STACKS:  # each in a fresh process, as `pulumi up` runs one stack's program
        done = subprocess.run([sys.executable, __file__, "--stack-figures", stack, *sizes],
                              capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{stack}: {done.stderr[-4000:]}")
        figures = json.loads(done.stdout.splitlines()[-1])
        program_lines += figures["lines"]
        program_met += figures["met"]
    print(f"program under mocks: CPU time, median of {args.repeat} interleaved runs "
          f"({args.repeat_large} for x{args.scale})")
    print("\n".join(program_lines))
    print(f"CLI: median of {args.cli_repeat} runs")
    print("\n".join(cli_lines))
    if args.real_engine:
        print("real engine, stack k3s on the suite's API server (wall time)")
        print("\n".join(engine_figures()))
    met = [*program_met, *cli_met]
    print(f"targets met: {sum(met)} of {len(met)}")


if __name__ == "__main__":
    main()
