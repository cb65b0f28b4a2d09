"""`manacore images`: every third-party pin with its scheme, the day it was checked, the newest
release known then and what Renovate makes of it; it fails on the rot issue 24 found."""

from __future__ import annotations

import json
from datetime import date, timedelta

from catalog.images import STALE_AFTER_DAYS
from catalog.load import load_estate
from catalog.model import image
from catalog.settings import ROOT
from exports.pins import pins, registry_of
from tests.cli_run import invoke

CHECKED = date(2026, 12, 7)


def test_every_pin_is_reported_and_none_has_a_problem() -> None:
    found = pins(load_estate(), ROOT, CHECKED)
    catalogue = {s.id for s in load_estate().valid_services if s.image and not s.image.own}
    assert catalogue <= {p.where for p in found}
    assert {p.repository for p in found if p.where.startswith("exports/")} == {
        "busybox", "alpine", "rclone/rclone"}
    assert [(p.where, p.problems) for p in found if p.problems] == []
    by_id = {p.where: p for p in found}
    assert by_id["cadvisor"].registry == "ghcr.io"
    assert by_id["searxng"].versioning.startswith("regex:")
    assert by_id["n8n"].package == "npm:n8n"
    assert by_id["s3"].package == "crate:garage"


def test_a_pin_not_checked_for_a_quarter_is_stale() -> None:
    later = CHECKED + timedelta(days=STALE_AFTER_DAYS + 1)
    found = pins(load_estate(), ROOT, later)
    assert all(any("last checked" in x for x in p.problems) for p in found)


def test_a_pin_renovate_does_not_see_or_orders_wrong_is_a_problem(tmp_path) -> None:
    """The rot of issue 24: cAdvisor pinned on gcr.io while its releases moved to ghcr.io is
    still found (Renovate would just never see a newer tag there), so the check is about the
    repository's file: a pin Renovate cannot extract, a scheme without its versioning."""
    estate = load_estate()
    moved = [s.model_copy(update={"image": image(
        "searxng/searxng:2026.8.22-9fea41204", scheme="searxng", family="posix-sh",
        checked="2026-12-07", newest="x (y)")}) if s.id == "searxng" else s
        for s in estate.valid_services]
    (tmp_path / "exports").mkdir()
    (tmp_path / "services.py").write_text("# nothing Renovate can find\n")
    config = json.loads((ROOT / "renovate.json").read_text())
    config["packageRules"] = [r for r in config["packageRules"] if "versioning" not in r]
    (tmp_path / "renovate.json").write_text(json.dumps(config))
    found = {p.where: p for p in pins(estate.model_copy(update={"services": tuple(moved)}),
                                      tmp_path, CHECKED)}
    assert any("finds no docker dependency" in x for x in found["searxng"].problems)
    (tmp_path / "services.py").write_text((ROOT / "services.py").read_text())
    found = {p.where: p for p in pins(estate, tmp_path, CHECKED)}
    assert any("orders its tags with 'docker'" in x for x in found["searxng"].problems)


def test_registry_is_the_one_docker_pulls_from() -> None:
    assert registry_of("ghcr.io/google/cadvisor") == "ghcr.io"
    assert registry_of("prom/node-exporter") == "docker.io"
    assert registry_of("redis") == "docker.io"
    assert registry_of("localhost:5000/x") == "localhost:5000"


def test_the_command_prints_every_pin_and_passes() -> None:
    done = invoke("images", "--today", CHECKED.isoformat())
    assert done.exit_code == 0, done.output
    assert "ghcr.io/google/cadvisor" in done.stdout and "dxflrs/garage" in done.stdout
    assert "npm:n8n" in done.stdout


def test_the_command_fails_naming_each_stale_pin() -> None:
    done = invoke("images", "--today", "2028-01-01")
    assert done.exit_code == 1
    assert "n8n (n8nio/n8n:" in done.stderr and "last checked" in done.stderr
