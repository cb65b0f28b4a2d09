"""Every third-party image pin with its currency, for `manacore images`: the tag and its scheme,
the day it was last checked upstream and the newest release known then (catalogue and
`catalog.images.HELPERS`), and what Renovate makes of it — read from renovate.json the way
Renovate reads the repository: its regex managers run over services.py and exports/*.py, its
package rules give the versioning and group. Nothing here asks a registry: the report says
what the repository knows, Renovate asks the registries.
"""

from __future__ import annotations

import json
import re
from datetime import date
from fnmatch import fnmatchcase
from pathlib import Path
from typing import NamedTuple

from catalog.images import HELPERS, STALE_AFTER_DAYS, TAG_SCHEMES, tag_matches, version
from catalog.model import Estate

RENOVATE = "renovate.json"
CATALOGUE = "services.py"
HELPERS_GLOB = "exports/*.py"


class Dependency(NamedTuple):
    """One dependency as a Renovate regex manager extracts it."""

    file: str
    dep_name: str
    current_value: str
    datasource: str


class Pin(NamedTuple):
    where: str  # the service id, or the exports constant's module for a helper image
    repository: str
    tag: str
    scheme: str
    checked: str
    newest: str
    registry: str  # the registry Renovate asks (the one the pin is pulled from)
    versioning: str  # Renovate's versioning for it ("" when no dependency was found)
    group: str
    package: str  # the OSV-covered package Renovate watches for vulnerabilities, or ""
    problems: tuple[str, ...]

    @property
    def current(self) -> bool:
        """The pin is the newest release known when it was checked."""
        newest = self.newest.split(" ")[0]
        return newest == self.tag or (bool(version(newest)) and version(newest) == version(
            self.tag))


def registry_of(repository: str) -> str:
    """The registry of an image reference, as Docker resolves it."""
    first = repository.split("/", 1)[0]
    return first if "/" in repository and ("." in first or ":" in first) else "docker.io"


def _js_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern.replace("(?<", "(?P<"))


def extract(config: dict, root: Path) -> list[Dependency]:
    """What every regex manager of the configuration extracts from the repository's files."""
    found = []
    for manager in config.get("customManagers", []):
        files = [p for p in sorted(root.rglob("*.py")) + sorted(root.glob("*.yaml"))
                 if ".venv" not in p.parts and
                 any(re.search(m, p.relative_to(root).as_posix()) for m in manager["fileMatch"])]
        for path in files:
            text = path.read_text()
            for pattern in manager["matchStrings"]:
                for m in _js_regex(pattern).finditer(text):
                    groups = m.groupdict()
                    found.append(Dependency(
                        path.relative_to(root).as_posix(),
                        groups.get("depName") or manager.get("depNameTemplate", ""),
                        groups.get("currentValue", ""),
                        groups.get("datasource") or manager.get("datasourceTemplate", "")))
    return found


def _rules_for(config: dict, dep: Dependency, *, any_update: bool = False) -> list[dict]:
    """The package rules that apply to a dependency (by name and datasource; with
    `any_update`, also those limited to some update types)."""
    return [r for r in config.get("packageRules", [])
            if all(any(fnmatchcase(dep.dep_name, p) for p in r[k]) if k == "matchDepNames" else
                   dep.datasource in r[k] for k in ("matchDepNames", "matchDatasources")
                   if k in r)
            and not (set(r) & {"matchManagers", "matchPackageNames"})
            and (any_update or "matchUpdateTypes" not in r)]


def _setting(config: dict, dep: Dependency, key: str, default: object) -> object:
    value = default
    for rule in _rules_for(config, dep):
        value = rule.get(key, value)
    return value


def _group(config: dict, dep: Dependency) -> str:
    for rule in reversed(_rules_for(config, dep, any_update=True)):
        if "groupName" in rule:
            kinds = rule.get("matchUpdateTypes")
            return rule["groupName"] + (f" ({', '.join(kinds)})" if kinds else "")
    return ""


def _age(checked: str, today: date) -> int | None:
    try:
        return (today - date.fromisoformat(checked)).days
    except ValueError:
        return None


def pins(estate: Estate, root: Path, today: date) -> list[Pin]:
    """Every third-party pin of the catalogue and of the exports' helpers, with its problems:
    no or a stale check date, a tag outside its scheme, no Renovate dependency for it, the
    wrong versioning, a package for OSV that Renovate does not find or would update."""
    config = json.loads((root / RENOVATE).read_text())
    deps = extract(config, root)
    out = []
    rows = [(s.id, s.image.repository, s.image.tag or "", s.image.scheme or "",
             s.image.checked, s.image.newest, s.image.package or "", CATALOGUE)
            for s in estate.valid_services if s.image is not None and not s.image.own]
    for dep in deps:
        if dep.file.startswith("exports/") and dep.datasource == "docker":
            facts = HELPERS.get(dep.dep_name)
            rows.append((dep.file, dep.dep_name, dep.current_value, "docker",
                         facts.checked if facts else "", facts.newest if facts else "", "",
                         dep.file))
    for where, repository, tag, scheme, checked, newest, package, file in rows:
        problems = []
        age = _age(checked, today)
        if age is None:
            problems.append("no date of its last check upstream")
        elif age > STALE_AFTER_DAYS:
            problems.append(f"last checked {age} days ago (more than {STALE_AFTER_DAYS})")
        if scheme in TAG_SCHEMES and not tag_matches(scheme, tag):
            problems.append(f"tag {tag} is not a {scheme} tag")
        found = [d for d in deps if d.file == file and d.datasource == "docker" and
                 d.dep_name == repository and d.current_value == tag]
        versioning = group = ""
        if not found:
            problems.append(f"Renovate finds no docker dependency {repository}:{tag} in {file}")
        else:
            versioning = str(_setting(config, found[0], "versioning", "docker"))
            group = _group(config, found[0])
            want = TAG_SCHEMES[scheme].versioning if scheme in TAG_SCHEMES else "docker"
            if versioning != want:
                problems.append(f"Renovate orders its tags with {versioning!r}, its scheme "
                                f"needs {want!r}")
        watched = ""
        if package:
            source, name = package.split(":", 1)
            osv = [d for d in deps if d.file == file and d.datasource == source and
                   d.dep_name == name]
            if not osv or not config.get("osvVulnerabilityAlerts"):
                problems.append(f"Renovate does not check {package} against OSV")
            elif _setting(config, osv[0], "enabled", True) is not False:
                problems.append(f"{package} is updated as a dependency of its own: it would "
                                "move the image's tag without the image's versioning")
            else:
                watched = package
        out.append(Pin(where, repository, tag, scheme, checked, newest, registry_of(repository),
                       versioning, group, watched, tuple(problems)))
    return out
