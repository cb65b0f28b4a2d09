"""Run the Pulumi program without the engine and record every registration.

Follows ../shared/PULUMI-TESTING.md: a fresh event loop and cleared runtime state per run, the
root Stack reset, mocks installed per run with project "manacore", config supplied as plain
values, and the raw `RegisterResource` requests recorded (parent, provider, protect, aliases …)
because `MockResourceArgs` lacks them. Used by the tests and by `bench/`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc, settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from catalog.settings import PROJECT, load_settings, stack_file


@dataclass
class Registration:
    type: str
    name: str
    urn: str
    custom: bool
    inputs: dict[str, Any]  # wire format: camelCase keys, floats, secrets wrapped
    parent: str
    provider: str
    protect: bool
    retain_on_delete: bool
    dependencies: list[str]
    aliases: list[Any]
    ignore_changes: list[str]
    delete_before_replace: bool
    read_id: str = ""  # set for `Resource.get(...)` reads of existing resources


    def plain(self) -> dict[str, Any]:
        """Inputs with secret wrappers removed (for assertions on values)."""
        return unwrap(self.inputs)


def unwrap(value: Any) -> Any:
    if rpc.is_rpc_secret(value):
        return unwrap(rpc.unwrap_rpc_secret(value))
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def has_secret(value: Any) -> bool:
    """True if any part of a wire value is marked secret."""
    if rpc.is_rpc_secret(value):
        return True
    if isinstance(value, dict):
        return any(has_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(has_secret(v) for v in value)
    return False


def hex_value(name: str) -> str:
    """What the mocked program makes of a generated `hex32` secret (a RandomId's hex): 64 hex
    digits, stable per name."""
    return hashlib.sha256(name.encode()).hexdigest()


def image_id(reference: str) -> str:
    """The mocked ID of a pulled image: stable and traceable to its reference."""
    return "sha256:" + hashlib.sha256(reference.encode()).hexdigest()


class Recorder(pulumi.runtime.Mocks):
    """Returns realistic outputs: the inputs, an id, and a value for generated secrets."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        outputs = dict(args.inputs)
        if args.typ == "random:index/randomPassword:RandomPassword":
            outputs["result"] = f"generated-{args.name}-value"
        if args.typ == "random:index/randomBytes:RandomBytes":
            outputs["base64"] = f"generated-{args.name}-base64"
        if args.typ == "random:index/randomId:RandomId":
            outputs["hex"] = hex_value(args.name)
        if args.typ == "docker:index/remoteImage:RemoteImage":  # what a container runs
            outputs["imageId"] = image_id(args.inputs["name"])
        outputs.setdefault("name", args.name)
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        self.calls.append((args.token, dict(args.args)))
        if args.token.endswith("getZeroTrustTunnelCloudflaredToken"):
            return {"token": f"token-of-{args.args.get('tunnelId')}"}
        return {}


class RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: Recorder) -> None:
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.registrations.append(Registration(
                type=request.type, name=request.name, urn=response.urn, custom=request.custom,
                inputs=rpc.deserialize_properties(request.object, keep_unknowns=True),
                parent=request.parent, provider=request.provider, protect=request.protect,
                retain_on_delete=request.retainOnDelete,
                dependencies=list(request.dependencies),
                aliases=[str(a) for a in request.aliases] + list(request.aliasURNs),
                ignore_changes=list(request.ignoreChanges),
                delete_before_replace=request.deleteBeforeReplace))
        return response

    def ReadResource(self, request):
        response = super().ReadResource(request)
        self.registrations.append(Registration(
            type=request.type, name=request.name, urn=response.urn, custom=True,
            inputs=rpc.deserialize_properties(request.properties, keep_unknowns=True),
            parent=request.parent, provider=request.provider, protect=False,
            retain_on_delete=False, dependencies=list(request.dependencies), aliases=[],
            ignore_changes=[], delete_before_replace=False, read_id=request.id))
        return response


@dataclass
class Run:
    registrations: list[Registration]
    exports: dict[str, Any]
    logs: list[str] = field(default_factory=list)
    error: BaseException | None = None

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_]

    def by_urn(self) -> dict[str, Registration]:
        return {r.urn: r for r in self.registrations}

    def named(self, name: str) -> Registration:
        return next(r for r in self.registrations if r.name == name)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def stack_config(stack: str) -> dict[str, str]:
    """The stack's settings as the Pulumi CLI would pass them (plain strings, objects as JSON)."""
    load_settings(stack)  # fail early on a broken stack file
    config = (yaml.safe_load(stack_file(stack).read_text()) or {}).get("config") or {}
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()
            if not (isinstance(v, dict) and "secure" in v)}


def run_program(stack: str, *, config: dict[str, str] | None = None,
                secrets: dict[str, str] | None = None,
                program: Callable[[], Any] | None = None, preview: bool = False,
                raise_errors: bool = True) -> Run:
    """Evaluate the program for `stack` under mocks and return what it registered.

    `config` overrides stack settings (`manacore:` keys, or any `ns:key`), `secrets` supplies
    secret config values by name (`GEMINI_API_KEY` → `manacore:GEMINI_API_KEY`, marked secret).
    """
    values = stack_config(stack)
    for key, value in (config or {}).items():
        values[key if ":" in key else f"{PROJECT}:{key}"] = value
    secret_keys = []
    for key, value in (secrets or {}).items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        values[full] = value
        secret_keys.append(full)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    settings.ROOT.set(None)
    settings.SETTINGS.outputs.clear()
    settings.SETTINGS.rpc_manager.clear()
    pulumi.runtime.set_all_config(values, secret_keys)

    mocks = Recorder()
    monitor = RecordingMonitor(mocks)
    collect = _Collect()
    logger = logging.getLogger(f"manacore.mock.{stack}")
    logger.handlers[:] = [collect]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=preview,
                             monitor=monitor, logger=logger)

    if program is None:
        def program() -> None:
            run_main()

    error: BaseException | None = None
    try:
        _sync_await(run_pulumi_func(program))
    except BaseException as exc:
        error = exc
    finally:
        settings.SETTINGS.outputs.clear()
        settings.SETTINGS.rpc_manager.clear()
    root = settings.get_root_resource()
    exports = dict(getattr(root, "outputs", {}) or {})
    resolved = {k: _resolve_output(v, loop) for k, v in exports.items()}
    loop.close()
    asyncio.set_event_loop(None)
    if error is not None and raise_errors:
        raise error
    return Run(monitor.registrations, resolved, collect.lines, error)


def _resolve_output(value: Any, loop: asyncio.AbstractEventLoop) -> Any:
    """Plain value of a stack export (Outputs awaited, secrets kept as their plain value)."""
    output = pulumi.Output.from_input(value)
    try:
        return loop.run_until_complete(output.future(with_unknowns=True))
    except Exception:
        return None


def run_main() -> None:
    """Execute __main__.py as the Pulumi language host would."""
    import runpy

    from catalog.settings import ROOT

    runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
