"""The benchmark's flat baseline (bench/flat.py) stays what it claims to be: the same
registrations as the program, with plain values. Nothing here is timed."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from types import ModuleType

import pytest

from catalog.settings import ROOT
from components.program import deploy
from tests.conftest import known_secrets
from tests.harness import Run, run_program


def _flat() -> ModuleType:
    spec = importlib.util.spec_from_file_location("manacore_bench_flat",
                                                  ROOT / "bench" / "flat.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("stack", ["macmini", "k3s"])
def test_flat_replay_registers_what_the_program_registers(stack, stack_estate):
    flat = _flat()
    resolved = stack_estate(stack)

    def run(program: Callable[[], object]) -> Run:
        return run_program(stack, secrets=known_secrets(), program=program)

    recording, ours = flat.record(run, lambda: deploy(resolved))
    replayed = run(recording.replay)
    assert flat.differences(ours.registrations, replayed.registrations) == []
    assert replayed.exports == ours.exports
    # plain values where ours computes Outputs; secrets stay secret Outputs in both
    assert recording.flat_outputs <= recording.derived_outputs + recording.attribute_outputs
    assert any(r.inputs != r.plain() for r in replayed.registrations), "secrets kept"
