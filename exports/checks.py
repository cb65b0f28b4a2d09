"""Every check a stack runs on the resolved estate before anything is created or written:
`manacore validate` and the Pulumi program call the same function, so neither passes an estate
the other refuses."""

from __future__ import annotations

from catalog.resolve import ResolvedEstate
from catalog.rules import Violation, stage_failure
from exports import reports, tunnel

CHECKS = {"tunnel": tunnel.violations, "memory-budget": reports.budget_violations}


def stack_violations(estate: ResolvedEstate) -> list[Violation]:
    found: list[Violation] = []
    for name, check in CHECKS.items():
        try:
            found += check(estate)
        except Exception as exc:  # a check must never turn a bad estate into a traceback
            found.append(stage_failure("estate", name, exc))
    return found
