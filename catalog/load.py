"""Load the catalogue and a stack, turning every failure into a report instead of a traceback."""

from __future__ import annotations

import importlib
import sys

from pydantic import ValidationError

from catalog.model import Estate, describe
from catalog.resolve import ResolvedEstate, resolve
from catalog.settings import ROOT, StackSettings, load_settings


class LoadError(Exception):
    """services.py could not be imported at all (a Python error, not a rule violation)."""


def load_estate(module: str = "services") -> Estate:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:
        return importlib.import_module(module).estate()
    except Exception as exc:
        raise LoadError(f"{module}.py could not be loaded: {type(exc).__name__}: "
                        f"{_one_line(exc)} (at {_where(exc)})") from None


def _one_line(exc: Exception) -> str:
    """The error on one line: pydantic's errors as `field: message (got value)`."""
    if isinstance(exc, ValidationError):
        return "; ".join(describe(e) for e in exc.errors())
    if isinstance(exc, SyntaxError):
        return exc.msg
    return " ".join(str(exc).split())


def _where(exc: Exception) -> str:
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    import traceback  # only when something failed: a command that succeeds never needs it

    frames = traceback.extract_tb(exc.__traceback__)
    # the last line of ours (services.py, catalog/), not pydantic's or importlib's
    ours = [f for f in frames if "site-packages" not in f.filename
            and not f.filename.startswith("<")] or frames
    return f"{ours[-1].filename}:{ours[-1].lineno}"


def load_stack(stack: str) -> tuple[StackSettings, ResolvedEstate]:
    """Settings of `stack` and the estate resolved for it; raises SettingsError, EstateError,
    LoadError."""
    settings = load_settings(stack)
    return settings, resolve(load_estate(), settings)
