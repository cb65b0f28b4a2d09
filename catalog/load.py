"""Load the catalogue and a stack, turning every failure into a report instead of a traceback."""

from __future__ import annotations

import importlib
import sys
import traceback

from catalog.model import Estate
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
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        raise LoadError(f"{module}.py could not be loaded: {type(exc).__name__}: {exc} "
                        f"(at {frame.filename}:{frame.lineno})") from None


def load_stack(stack: str) -> tuple[StackSettings, ResolvedEstate]:
    """Settings of `stack` and the estate resolved for it; raises SettingsError, EstateError,
    LoadError."""
    settings = load_settings(stack)
    return settings, resolve(load_estate(), settings)
