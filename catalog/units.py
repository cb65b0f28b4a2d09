"""Kubernetes-style memory quantities ("256Mi", "1.5Gi", "512M") as bytes."""

from __future__ import annotations

import re

_SUFFIX = {
    "": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
}
_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T|)$")


def parse_memory(text: str) -> int:
    """Bytes in a quantity; ValueError names the accepted form."""
    match = _QUANTITY.match(text.strip()) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"{text!r} is not a memory quantity like '256Mi' or '1.5Gi'")
    return int(float(match[1]) * _SUFFIX[match[2]])


def mebibytes(n_bytes: int) -> int:
    return n_bytes // 2**20


def format_bytes(n_bytes: int) -> str:
    """Human figure for reports: '1.50 GiB', '768 MiB'."""
    if n_bytes >= 2**30:
        return f"{n_bytes / 2**30:.2f} GiB"
    return f"{n_bytes // 2**20} MiB"
