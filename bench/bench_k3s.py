"""Benchmark (not a test): the k3s figures. The estate's memory with every replica against the
cluster's `memoryBudget` (and what is left of it when one of N equal nodes is lost); how long
the k3s program takes to evaluate under mocks, the Helm chart to render, and real `helm
template` to expand it, for the catalogue and for the synthetic estate of bench/bench.py
(`--scale` times larger).

    .venv/bin/python bench/bench_k3s.py [--repeat N] [--scale 10]

Each figure is the median of N runs (min in brackets) after one warm-up run.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _bench_module():
    """bench/bench.py (timing and the synthetic estate), loaded by path: bench/ is no package."""
    spec = importlib.util.spec_from_file_location("manacore_bench", ROOT / "bench" / "bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def memory(estate) -> None:
    """The estate's memory limits, every replica counted (what the scheduler reserves), against
    the cluster's budget, whole and with one of N equal nodes lost."""
    from catalog.units import format_bytes
    from exports.reports import budget

    lines = budget(estate)
    total, pods = sum(x.limit_bytes for x in lines), sum(x.pods for x in lines)
    allowed = estate.settings.memory_budget_bytes
    replicated = sum(1 for s in estate.containers if s.replicas > 1)
    print(f"memory: {pods} pods of {len(estate.containers)} services ({replicated} replicated)"
          f" reserve {format_bytes(total)} of the cluster's {estate.settings.memory_budget} "
          f"({100 * total / allowed:.0f} %); one copy each would be "
          f"{format_bytes(sum((s.memory or 0) for s in estate.containers))}")
    for nodes in (2, 3, 4):
        left = allowed * (nodes - 1) // nodes
        verdict = "fits" if total <= left else "does NOT fit"
        print(f"memory: one of {nodes} equal nodes lost: {format_bytes(left)} left, the estate "
              f"{verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scale", type=int, default=10)
    args = parser.parse_args()
    bench = _bench_module()

    start = time.perf_counter()
    import pulumi_kubernetes  # noqa: F401  (the k3s path's imports, timed once)

    from catalog.load import load_estate
    from catalog.resolve import resolve
    from catalog.settings import load_settings
    from components.program import deploy
    from exports.helm import render
    from tests.conftest import known_secrets
    from tests.harness import run_program
    print(f"imports (pulumi, pulumi_kubernetes, project): {time.perf_counter() - start:.2f} s")

    settings = load_settings("k3s")
    memory(resolve(load_estate(), settings))
    helm = ROOT / ".venv" / "bin" / "helm"
    secrets = known_secrets()
    rows: list[tuple[str, str, str]] = []
    for label, estate in (("catalogue", load_estate()),
                          (f"x{args.scale}", bench.synthetic(args.scale))):
        resolved = resolve(estate, settings)
        registered: list[int] = []

        def evaluate(resolved=resolved, registered=registered) -> None:
            run = run_program("k3s", secrets=secrets, program=lambda: deploy(resolved))
            registered.append(len(run.registrations))

        median, best = bench.timed(evaluate, args.repeat)
        rows.append((label, f"k3s program under mocks ({len(resolved.containers)} containers, "
                            f"{registered[-1]} resources)", f"{median:.3f} s [{best:.3f}]"))
        with tempfile.TemporaryDirectory() as tmp:
            files: list[Path] = []

            def chart(resolved=resolved, tmp=tmp, files=files) -> None:
                files[:] = render(resolved, Path(tmp))

            median, best = bench.timed(chart, args.repeat)
            rows.append((label, f"render helm chart ({len(files)} files)",
                         f"{median:.3f} s [{best:.3f}]"))
            if helm.exists():
                objects: list[int] = []

                def template(tmp=tmp, objects=objects) -> None:
                    out = subprocess.run([str(helm), "template", "manacore", f"{tmp}/manacore",
                                          "-n", "manacore"], capture_output=True, text=True,
                                         check=True).stdout
                    objects.append(out.count("\nkind: "))

                median, best = bench.timed(template, args.repeat)
                rows.append((label, f"helm template ({objects[-1]} objects)",
                             f"{median:.3f} s [{best:.3f}]"))
    width = max(len(r[1]) for r in rows)
    for label, what, figure in rows:
        print(f"{label:>10}  {what:<{width}}  {figure}")


if __name__ == "__main__":
    main()
