"""Renovate finds every image pin and our own images' release tag, orders each tag scheme the
way its project does, watches the packages that publish the pinned releases for vulnerabilities
(OSV), and its configuration passes Renovate's own validator."""

from __future__ import annotations

import json
import re
import subprocess
from fnmatch import fnmatchcase
from pathlib import Path

import yaml

from catalog.images import TAG_SCHEMES, version
from catalog.settings import ROOT
from exports.compose import VOLUME_INIT_IMAGE
from exports.kubernetes import WAIT_IMAGE
from exports.migration import COPIER_IMAGE, HELPER_IMAGE
from exports.pins import extract
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


def _pins() -> dict[str, tuple[str, str, str | None]]:
    return {s.id: (s.image.repository, s.image.tag or "", s.image.package)
            for s in estate().valid_services if s.image is not None and not s.image.own}


def test_every_image_pin_of_the_catalogue_is_found() -> None:
    found = {(d.dep_name, d.current_value) for d in extract(_config(), ROOT)
             if d.file == "services.py" and d.datasource == "docker"}
    assert found == {(repo, tag) for repo, tag, _ in _pins().values()}


def test_the_helper_images_of_the_exports_are_found() -> None:
    found = {f"{d.dep_name}:{d.current_value}" for d in extract(_config(), ROOT)
             if d.file.startswith("exports/")}
    assert found == {WAIT_IMAGE, VOLUME_INIT_IMAGE, HELPER_IMAGE, COPIER_IMAGE}


def test_the_package_of_each_pinned_release_is_watched_for_vulnerabilities_only() -> None:
    """OSV knows packages, not images: Renovate checks the package that publishes the pinned
    release (n8n on npm, Synapse on PyPI, the Go exporters, Garage's crate) and opens a pull
    request only for a published vulnerability, moving the pin to the fixed version."""
    config = _config()
    assert config["osvVulnerabilityAlerts"] is True
    assert config["vulnerabilityAlerts"]["enabled"] is True
    packages = {(d.datasource, d.dep_name): d.current_value for d in extract(config, ROOT)
                if d.file == "services.py" and d.datasource != "docker"}
    wanted = {tuple(p.split(":", 1)): tag.removeprefix("v") for _, tag, p in _pins().values()
              if p}
    assert packages == wanted
    assert {("npm", "n8n"), ("pypi", "matrix-synapse"), ("crate", "garage")} <= set(wanted)
    [off] = [r for r in config["packageRules"] if r.get("enabled") is False]
    assert set(off["matchDatasources"]) == {source for source, _ in wanted}
    for _, tag, _ in _pins().values():
        assert version(tag)  # a version Renovate can compare against OSV's ranges


def test_every_package_rule_names_something_pinned() -> None:
    """A rule for a repository no longer pinned (gcr.io/cadvisor, minio/minio) is a sign the
    pin moved without Renovate: each matchDepNames entry matches a pin or a helper image."""
    names = {repo for repo, _, _ in _pins().values()} | {"manacore-images"} | {
        ref.rsplit(":", 1)[0] for ref in (WAIT_IMAGE, VOLUME_INIT_IMAGE, HELPER_IMAGE,
                                          COPIER_IMAGE)}
    for rule in _config()["packageRules"]:
        for pattern in rule.get("matchDepNames", []):
            assert any(fnmatchcase(n, pattern) for n in names), (rule["description"], pattern)


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
    """A searxng tag ends in a commit hash: Renovate's default docker versioning would never
    see a newer one as newer."""
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
