"""Benchmark (not a test): how long the macmini program takes to evaluate under mocks and the
exports take to render, for the real catalogue and for a synthetic estate ten times larger.

    .venv/bin/python bench/bench.py [--repeat N] [--scale 10]

Renderers come from `exports.RENDERERS`, each timed on the stacks whose target it serves
(compose: docker; helm: kubernetes; tunnel: both; a kind added later: both, and a renderer
that refuses a target is reported, not fatal). Each figure is the median of N runs (min in
brackets), after one warm-up run so imports are reported once, separately.

The synthetic estate: the catalogue plus `scale - 1` copies of every service (except the
tunnel connector, PostgreSQL and Redis, of which an estate has one: the copies get their own
databases in it), suffixed `-c1`, `-c2` … in id, database, public host and shared volume name,
with every dependency and env reference pointing at the same copy. It is validated and
resolved by the same rules. Relaxed only where the rules cannot hold ten estates: a copy
publishes no host port (the port schema gives each role 100 ports and the datastores one
fixed port each) and has no legacy facts (nothing ran before it, and legacy names must be
unique). The copies' volumes are fresh, so they use the shared Matrix volume with subpaths
while the originals still adopt their legacy volumes: both code paths are exercised.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGETS_OF = {"compose": ("docker",), "helm": ("kubernetes",), "tunnel": ("docker", "kubernetes")}
# one per estate, not copied: the tunnel connector, and the datastores every copy keeps its
# database and sessions in (the catalogue's database and Redis URLs name them)
SINGLE = ("cloudflared", "postgres", "redis")


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(median, min) seconds of `repeat` runs after one warm-up run."""
    fn()
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs), min(runs)


def synthetic(scale: int):
    """The catalogue with `scale - 1` suffixed copies of every service (see module doc)."""
    from catalog.load import load_estate
    from catalog.model import (
        DbUrl,
        HostOf,
        Legacy,
        PortOf,
        PublicUrl,
        RedisUrl,
        SecretOf,
        UrlOf,
    )

    estate = load_estate()
    ids = {s.id for s in estate.valid_services}

    def copy(svc, n: int):
        def ref(sid: str) -> str:
            return f"{sid}-c{n}" if sid in ids and sid not in SINGLE else sid

        env = {}
        for key, value in svc.env.items():
            if isinstance(value, UrlOf | HostOf | PortOf | PublicUrl):
                value = value.model_copy(update={"service": ref(value.service)})
            elif not isinstance(value, str | DbUrl | RedisUrl | SecretOf):
                raise TypeError(f"{svc.id}: cannot copy env {key}={value!r}")
            env[key] = value
        update = {
            "id": ref(svc.id), "env": env, "legacy": Legacy(),
            "ports": tuple(p.model_copy(update={"published": None}) for p in svc.ports),
            "needs": tuple(x.model_copy(update={"service": ref(x.service)}) for x in svc.needs),
            "database": f"{svc.database}_c{n}" if svc.database else None,
            "pg_monitor": f"{svc.pg_monitor}_c{n}" if svc.pg_monitor else None,
            "public": svc.public and svc.public.model_copy(
                update={"host": f"{svc.public.host}-c{n}"}),
            "volumes": tuple(v.model_copy(update={
                "name": v.name and v.name.replace("-data", f"-c{n}-data"), "legacy_dir": None})
                for v in svc.volumes),
        }
        return svc.model_copy(update=update)

    copies = [copy(s, n) for n in range(1, scale) for s in estate.valid_services
              if s.id not in SINGLE]
    return estate.model_copy(update={"services": (*estate.services, *copies)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scale", type=int, default=10)
    args = parser.parse_args()

    start = time.perf_counter()
    import pulumi_docker  # noqa: F401  (the macmini path's imports, timed once)

    from catalog.load import load_estate
    from catalog.resolve import resolve
    from catalog.settings import load_settings
    from components.program import deploy
    from exports import RENDERERS
    from tests.conftest import known_secrets
    from tests.harness import run_program
    print(f"imports (pulumi, pulumi_docker, project): {time.perf_counter() - start:.2f} s")

    stacks = {name: load_settings(name) for name in ("macmini", "k3s")}
    estates = {"catalogue": load_estate(), f"x{args.scale}": synthetic(args.scale)}
    secrets = known_secrets()
    rows: list[tuple[str, str, str]] = []

    for label, estate in estates.items():
        resolved = {name: resolve(estate, settings) for name, settings in stacks.items()}
        macmini = resolved["macmini"]
        registered: list[int] = []

        def evaluate(estate=macmini, registered=registered) -> None:
            run = run_program("macmini", secrets=secrets, program=lambda: deploy(estate))
            registered.append(len(run.registrations))

        median, best = timed(evaluate, args.repeat)
        rows.append((label, f"macmini program under mocks ({len(macmini.containers)} containers,"
                            f" {registered[-1]} resources)", f"{median:.3f} s [{best:.3f}]"))
        for kind in RENDERERS:
            for stack, r in resolved.items():
                if r.target not in TARGETS_OF.get(kind, ("docker", "kubernetes")):
                    continue
                try:
                    render = importlib.import_module(RENDERERS[kind][0]).render
                except ImportError as exc:
                    rows.append((label, f"render {kind} ({stack})", f"not available: {exc}"))
                    continue
                with tempfile.TemporaryDirectory() as tmp:
                    try:
                        median, best = timed(lambda render=render, r=r, tmp=tmp: render(
                            r, Path(tmp)), args.repeat)
                    except Exception as exc:  # a renderer that refuses this estate
                        rows.append((label, f"render {kind} ({stack})",
                                     f"failed: {type(exc).__name__}: {exc}"[:120]))
                        continue
                rows.append((label, f"render {kind} ({stack})", f"{median:.3f} s [{best:.3f}]"))

    width = max(len(r[1]) for r in rows)
    print(f"median of {args.repeat} runs [min], after a warm-up run")
    for label, what, figure in rows:
        print(f"{label:>10}  {what:<{width}}  {figure}")


if __name__ == "__main__":
    main()
