"""YAML in and out through libyaml when PyYAML was built with it (the wheels are): the same
safe subset and the same text as the pure-Python classes, about ten times faster. Every
module that reads or writes YAML takes its dumper and loader from here."""

from __future__ import annotations

from typing import Any

import yaml

SafeDumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
YAMLError = yaml.YAMLError


def dump(data: Any, dumper: type[yaml.SafeDumper] = SafeDumper, **options: Any) -> str:
    """YAML text of `data`, keys in their given order."""
    return yaml.dump(data, Dumper=dumper, sort_keys=False, **options)


def load(text: str) -> Any:
    return yaml.load(text, Loader=SafeLoader)
