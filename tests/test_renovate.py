"""Renovate finds every image pin and our own images' release tag, orders each tag scheme the
way its project does, and its configuration passes Renovate's own validator."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml

from catalog.images import TAG_SCHEMES
from catalog.settings import ROOT
from exports.compose import VOLUME_INIT_IMAGE
from exports.kubernetes import WAIT_IMAGE
from exports.migration import HELPER_IMAGE
from services import estate

CONFIG = ROOT / "renovate.json"
VALIDATOR = ROOT / ".tools/renovate/node_modules/.bin/renovate-config-validator"


def _config() -> dict:
    return json.loads(CONFIG.read_text())


def _extract(manager: dict, path: Path) -> list[dict[str, str]]:
    """What a regex manager extracts from a file (JavaScript named groups → Python's)."""
    found = []
    for pattern in manager["matchStrings"]:
        regex = re.compile(pattern.replace("(?<", "(?P<"))
        found += [m.groupdict() for m in regex.finditer(path.read_text())]
    return found


def _manager(file: str) -> dict:
    managers = [m for m in _config()["customManagers"]
                if any(re.search(p, file) for p in m["fileMatch"])]
    assert len(managers) == 1, file
    return managers[0]


def test_every_image_pin_of_the_catalogue_is_found() -> None:
    pins = {(s.image.repository, s.image.tag) for s in estate().valid_services
            if s.image is not None and not s.image.own}
    found = {(d["depName"], d["currentValue"])
             for d in _extract(_manager("services.py"), ROOT / "services.py")}
    assert found == pins


def test_the_helper_images_of_the_exports_are_found() -> None:
    found = set()
    for path in sorted((ROOT / "exports").glob("*.py")):
        manager = [m for m in _config()["customManagers"]
                   if any(re.search(p, f"exports/{path.name}") for p in m["fileMatch"])]
        for m in manager:
            found |= {f"{d['depName']}:{d['currentValue']}" for d in _extract(m, path)}
    assert found == {WAIT_IMAGE, VOLUME_INIT_IMAGE, HELPER_IMAGE}


def test_our_own_release_tag_is_found_in_every_stack() -> None:
    for path in sorted(ROOT.glob("Pulumi.*.yaml")):
        if path.name == "Pulumi.yaml":
            continue
        config = yaml.safe_load(path.read_text())["config"]
        [dep] = _extract(_manager(path.name), path)
        assert dep["currentValue"] == str(config["manacore:tag"]), path.name
        assert dep["packageName"] == config["manacore:registry"], path.name
    own = [m for m in _config()["customManagers"] if m.get("depNameTemplate") ==
           "manacore-images"]
    assert own and own[0]["packageNameTemplate"].endswith("/mana-core-auth")
    assert any(s.image is not None and s.image.own and s.image.repository == "mana-core-auth"
               for s in estate().valid_services)


def test_each_tag_scheme_gets_its_versioning() -> None:
    """A searxng tag ends in a commit hash, a minio tag is a timestamp: Renovate's default
    docker versioning would never see them as newer."""
    rules = _config()["packageRules"]
    for s in estate().valid_services:
        if s.image is None or s.image.own or s.image.scheme is None:
            continue
        versioning = TAG_SCHEMES[s.image.scheme].versioning
        matching = [r["versioning"] for r in rules if "versioning" in r and
                    s.image.repository in r.get("matchDepNames", [])]
        assert matching == ([] if versioning == "docker" else [versioning]), s.id
        if versioning.startswith("regex:"):
            pattern = versioning.removeprefix("regex:").replace("(?<", "(?P<")
            assert re.fullmatch(pattern, s.image.tag or ""), s.id


def test_renovate_validates_the_configuration() -> None:
    assert VALIDATOR.exists(), "run bash scripts/setup.sh (installs npm renovate into .tools/)"
    done = subprocess.run([str(VALIDATOR), "--strict", str(CONFIG)], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Config validated successfully" in done.stdout
