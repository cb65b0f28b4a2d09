"""A new Docker host (`adoptLegacy: false`): no legacy volume, every volume created and managed
by Compose, and the estate healthy from nothing (issue: deploy for real on Docker, part 5)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from catalog.load import load_estate
from catalog.resolve import resolve
from catalog.settings import load_settings
from tests.harness import run_program
from tests.realengine.conftest import Engine, Estate, benchmark, clear_project, render, stack_copy
from tests.realengine.roundtrip import mismatches


@pytest.fixture(scope="module")
def fresh(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Estate]:
    clear_project(engine)
    settings = load_settings("macmini").model_copy(update={"adopt_legacy": False})
    resolved = resolve(load_estate(), settings)
    tmp = tmp_path_factory.mktemp("fresh")
    est = render(engine, resolved, tmp / "estate",
                 stacks=stack_copy(tmp / "stacks", adoptLegacy=False))
    volumes = sorted(est.model["volumes"])
    engine.remove_volumes(*volumes)  # what an earlier run of this test left
    yield est
    est.compose("down", "-v", "-t", "5", check=False)
    engine.remove_volumes(*volumes)


def test_a_fresh_host_has_no_legacy_volume(fresh: Estate) -> None:
    volumes = fresh.model["volumes"]
    finals = {v.final for s in fresh.resolved.containers for v in s.volumes}
    assert set(volumes) == finals and not [v for v in volumes.values() if v.get("external")]
    for name in volumes:
        assert not fresh.engine.exists(name), f"{name} exists before the install"


def test_the_estate_comes_up_healthy_from_nothing(fresh: Estate) -> None:
    took = fresh.up()
    benchmark(f"fresh estate healthy in {took:.1f} s")
    assert fresh.diagnose() == ""
    for name in fresh.model["volumes"]:
        labels = fresh.engine.inspect(name, kind="volume")[0]["Labels"] or {}
        assert labels.get("com.docker.compose.project") == "manacore", name
    # the shared bot volume: each bot on its own subdirectory, created before they start
    bots = [s for s in fresh.resolved.containers for v in s.volumes
            if v.shared and not v.read_only]  # not the backup, which only reads them
    assert len(bots) >= 3
    for s in bots:
        v = next(v for v in s.volumes if v.shared and not v.read_only)
        fresh.engine.docker("exec", s.container_name, "sh", "-c",
                            f'echo {s.id} > "{v.path}/whoami"')
    for s in bots:
        v = next(v for v in s.volumes if v.shared and not v.read_only)
        seen = fresh.engine.docker("exec", s.container_name, "cat", f"{v.path}/whoami").strip()
        assert seen == s.id, f"{s.id} shares its directory with {seen}"


def test_the_engine_reports_back_what_the_docker_adapter_registers(fresh: Estate) -> None:
    """Issue 25's round trip on a fresh host: also the shared bot volume's subpath mounts and
    the volume inits (exited), as test_compose_estate.py does for the Mac Mini's estate."""
    run = run_program("macmini", secrets=fresh.env, config={"adoptLegacy": "false"})
    inits = [r for r in run.registrations if r.plain().get("attach")]
    assert inits, "a fresh host prepares its volumes"
    problems, compared = mismatches(fresh, run)
    assert not problems, "\n".join(problems)
    assert compared >= 46 * 15
