"""Stack settings: one model, read from `pulumi.Config` in the program and from
`Pulumi.<stack>.yaml` by the CLI, so exports work without the Pulumi CLI.

Secret values are never settings: they live in the stack config as `secure:` values under the
secret's own name (`manacore:GEMINI_API_KEY`) and are only ever referenced.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from catalog.model import Target
from catalog.units import parse_memory

PROJECT = "manacore"
LEGACY_STACK = "macmini"  # the host whose legacy volumes Phase 0 adopts
ROOT = Path(__file__).resolve().parent.parent


class SettingsError(Exception):
    """Stack settings that cannot be used; `problems` lists every one of them."""

    def __init__(self, stack: str, problems: list[str]):
        self.stack, self.problems = stack, problems
        super().__init__(f"stack {stack}: " + "; ".join(problems))


class StackSettings(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )

    stack: str
    target: Target
    domain: str
    registry: str  # where our own images live, e.g. ghcr.io/manacore
    tag: str  # the release of our own images
    memory_budget: str  # memory the host (or cluster) gives the estate
    docker_host: str | None = None  # docker target: unix:// socket or ssh://user@host
    kube_context: str | None = None  # kubernetes target
    storage_class: str = "local-path"
    native_host: str = "host.docker.internal"  # where the native macOS services listen
    network: str = "manacore"  # the shared Docker network
    cloudflare_account_id: str | None = None
    cloudflare_zone_id: str | None = None
    access_emails: tuple[str, ...] = ()  # who passes Cloudflare Access to the admin UIs
    migrated_volumes: tuple[str, ...] = ()  # new volume names whose data has been moved
    # Phase 0: mount the Mac Mini's legacy volumes (read, never created) until migrated. A new
    # Docker host (a customer, a test) starts fresh: every volume created and managed.
    adopt_legacy: bool | None = None  # default: true on stack macmini, false elsewhere

    @model_validator(mode="after")
    def _adopt_default(self) -> StackSettings:
        if self.adopt_legacy is None:
            object.__setattr__(self, "adopt_legacy", self.stack == LEGACY_STACK)
        return self

    @field_validator("memory_budget")
    @classmethod
    def _memory(cls, value: str) -> str:
        parse_memory(value)
        return value

    @property
    def memory_budget_bytes(self) -> int:
        return parse_memory(self.memory_budget)


def _is_secret_key(name: str, value: Any) -> bool:
    return name.isupper() or (isinstance(value, dict) and "secure" in value)


def settings_from_values(stack: str, values: dict[str, Any]) -> StackSettings:
    """Validate raw `manacore:*` values (keys without the namespace)."""
    fields = {k: v for k, v in values.items() if not _is_secret_key(k, v)}
    try:
        return StackSettings.model_validate({"stack": stack, **fields})
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        ]
        raise SettingsError(stack, problems) from None


def stack_dir() -> Path:
    """Where the `Pulumi.<stack>.yaml` files are: the project, or $MANACORE_STACK_DIR."""
    return Path(os.environ.get("MANACORE_STACK_DIR") or ROOT)


def known_stacks() -> list[str]:
    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in stack_dir().glob("Pulumi.*.yaml"))


def stack_file(stack: str) -> Path:
    return stack_dir() / f"Pulumi.{stack}.yaml"


def load_settings(stack: str) -> StackSettings:
    """Settings from `Pulumi.<stack>.yaml`, as the Pulumi CLI would hand them to the program."""
    path = stack_file(stack)
    if not path.exists():
        raise SettingsError(stack, [f"no {path}; known stacks: {', '.join(known_stacks())}"])
    config = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
    prefix = f"{PROJECT}:"
    values = {k[len(prefix):]: v for k, v in config.items() if k.startswith(prefix)}
    return settings_from_values(stack, values)


def settings_from_config(stack: str, get: Callable[[str], str | None]) -> StackSettings:
    """Settings from a `pulumi.Config`-like getter (`get(key)` → raw string or None)."""
    values: dict[str, Any] = {}
    for name, field in StackSettings.model_fields.items():
        if name == "stack":
            continue
        raw = get(field.alias or name)
        if raw is None:
            continue
        values[field.alias or name] = (yaml.safe_load(raw)
                                       if name in ("migrated_volumes", "access_emails")
                                       else raw)
    return settings_from_values(stack, values)
