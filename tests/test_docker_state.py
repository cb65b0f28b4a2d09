"""Stack macmini against the docker provider's state (issue 25): what a refresh reads back from
the engine is what the program registers, so the next plan after `up` or `refresh` is empty.

The provider's Read and the engine's rewrites are mirrored in tests/docker_state.py (and
checked against the real engine by tests/realengine/test_compose_estate.py); here every
container of the program, before and after the volume migration and on a fresh host, goes
through a refresh-shaped state and the plan that follows it.
"""

from __future__ import annotations

import copy

import pytest

from catalog.resolve import ResolvedEstate
from components.program import deploy
from exports.compose import duration
from tests.conftest import known_secrets
from tests.docker_state import engine_inspect, plan, reported
from tests.harness import Registration, Run, run_program
from tests.test_macmini import CONTAINER, containers


def refreshed(reg: Registration, **engine: bool) -> dict:
    """The state after the container was created (or refreshed): the engine's view of it."""
    return reported(engine_inspect(reg.plain(), **engine))


@pytest.fixture(scope="module")
def fresh_run() -> Run:
    return run_program("macmini", secrets=known_secrets(), config={"adoptLegacy": "false"})


@pytest.mark.parametrize("which", ["macmini_run", "migrated_run", "fresh_run"])
def test_a_refresh_plans_nothing_for_any_container(which: str,
                                                   request: pytest.FixtureRequest) -> None:
    """Every container (services and volume inits), in the engine's spelling, against the
    same program: no update, no replacement (issue 25: every container showed `memorySwap`,
    PostgreSQL, Redis, SearXNG and Synapse were replaced after a refresh)."""
    run: Run = request.getfixturevalue(which)
    regs = run.of_type(CONTAINER)
    assert len(regs) >= 46
    for reg in regs:
        assert plan(refreshed(reg), reg.plain()) == ("same", []), reg.name
    if which != "macmini_run":  # subpaths and inits exist once volumes are managed
        assert any("volumeOptions" in m for r in regs for m in r.plain().get("mounts", []))
        assert any(r.plain().get("attach") for r in regs)


def _with(reg: Registration, **changes) -> dict:
    inputs = copy.deepcopy(reg.plain())
    for key, value in changes.items():
        if value is None:
            inputs.pop(key, None)
        else:
            inputs[key] = value
    return inputs


def test_the_spellings_issue_25_found_would_change_the_plan(macmini_run: Run) -> None:
    """The model has teeth: the inputs of before issue 25 plan what the real provider did."""
    found = containers(macmini_run)
    pg = found["postgres"]
    state = refreshed(pg)
    caps = pg.plain()["capabilities"]
    legacy_caps = {"drops": caps["drops"], "adds": [c.removeprefix("CAP_") for c in caps["adds"]]}
    assert plan(reported(engine_inspect(_with(pg, capabilities=legacy_caps))),
                _with(pg, capabilities=legacy_caps)) == ("replace", ["capabilities"])
    assert plan(reported(engine_inspect(_with(pg, memorySwap=None))),
                _with(pg, memorySwap=None)) == ("update", ["memorySwap"])
    check = {**pg.plain()["healthcheck"], "startPeriod": "90s"}  # Go prints "1m30s"
    assert plan(reported(engine_inspect(_with(pg, healthcheck=check))),
                _with(pg, healthcheck=check)) == ("update", ["healthcheck"])
    # a host without swap accounting reports -1: memory+swap would differ there
    assert plan(refreshed(pg, swap_accounting=False), pg.plain()) == ("update", ["memorySwap"])
    # and the plan itself: the same state against other inputs
    assert plan(state, _with(pg, memory=pg.plain()["memory"] * 2)) == ("update", ["memory"])
    assert plan(state, _with(pg, name="other")) == ("replace", ["name"])


def test_ports_are_registered_in_the_order_the_engine_reports_them(macmini_run: Run) -> None:
    for sid in ("s3", "synapse"):  # the containers publishing two ports
        reg = containers(macmini_run)[sid]
        ports = reg.plain()["ports"]
        assert len(ports) == 2 and ports == sorted(ports, key=lambda p: p["internal"]), sid
        assert plan(refreshed(reg), _with(reg, ports=ports[::-1])) == ("replace", ["ports"])


def test_a_memory_change_updates_exactly_that_container_in_place(
        macmini_run: Run, macmini_estate: ResolvedEstate) -> None:
    """From the state `up` left (the engine's view of every container), a new memory limit
    for PostgreSQL: one container updated in place (memory and memory+swap together, so its
    limits follow the catalogue, not its history), no other change, no replacement."""
    before = {r.urn: refreshed(r) for r in macmini_run.of_type(CONTAINER)}
    pg = macmini_estate["postgres"]
    assert pg.memory is not None
    services = tuple(s.model_copy(update={"memory": pg.memory * 2}) if s.id == "postgres" else s
                     for s in macmini_estate.services)
    estate = macmini_estate.model_copy(update={"services": services})
    after = run_program("macmini", secrets=known_secrets(), program=lambda: deploy(estate))
    plans = {r.name: plan(before[r.urn], r.plain()) for r in after.of_type(CONTAINER)}
    changed = {name: p for name, p in plans.items() if p != ("same", [])}
    assert changed == {pg.container_name: ("update", ["memory", "memorySwap"])}
    inputs = containers(after)["postgres"].plain()
    assert inputs["memory"] == inputs["memorySwap"] == 2 * pg.memory // 2**20


@pytest.mark.parametrize(("seconds", "go"), [
    (0, "0s"), (2, "2s"), (30, "30s"), (59, "59s"), (60, "1m0s"), (90, "1m30s"),
    (600, "10m0s"), (3600, "1h0m0s"), (3661, "1h1m1s")])
def test_durations_are_spelled_as_go_prints_them(seconds: int, go: str) -> None:
    """The engine keeps nanoseconds; the provider reads them back with Go's Duration.String()."""
    assert duration(seconds) == go
