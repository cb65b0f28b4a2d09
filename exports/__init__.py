"""Serializers of the resolved estate: each a pure function of `ResolvedEstate`.

Every export module named here offers `render(estate, out_dir) -> list[Path]`, which writes its
files below `out_dir` and returns them; `manacore render <kind>` calls it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from catalog.resolve import ResolvedEstate

Renderer = Callable[[ResolvedEstate, Path], list[Path]]

RENDERERS: dict[str, tuple[str, str]] = {
    "compose": ("exports.compose", "compose.yaml and .env.example for `docker compose up`"),
    "helm": ("exports.helm", "the Helm chart manacore/ for `helm install`"),
    "tunnel": ("exports.tunnel", "cloudflared config.yml for a locally-managed tunnel"),
}


def renderer(kind: str) -> Renderer:
    module, _ = RENDERERS[kind]
    return importlib.import_module(module).render
