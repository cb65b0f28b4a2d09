"""Serializers of the resolved estate: each a pure function of `ResolvedEstate`.

Every export module named here offers `render(estate, out_dir) -> list[Path]`, which writes its
files below `out_dir` and returns them; `manacore render <kind>` calls it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from catalog.resolve import ResolvedEstate

Renderer = Callable[[ResolvedEstate, Path], list[Path]]

class Export(NamedTuple):
    module: str
    summary: str
    stack: str  # the stack it is rendered from by default


RENDERERS: dict[str, Export] = {
    "compose": Export("exports.compose", "compose.yaml and .env.example for `docker compose up`",
                      "macmini"),
    "helm": Export("exports.helm", "the Helm chart manacore/ for `helm install`", "k3s"),
    "tunnel": Export("exports.tunnel", "cloudflared config.yml for a locally-managed tunnel",
                     "macmini"),
}


def renderer(kind: str) -> Renderer:
    module = RENDERERS[kind].module
    return importlib.import_module(module).render
