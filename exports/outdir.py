"""Output directories the CLI owns: an export is rendered aside first, then copied in; the files
of an earlier render that this one no longer writes are removed, and a directory holding files
manacore never wrote is refused (unless forced), so a stale chart template can never be
installed along with a fresh chart.

`DIR/.manacore-<kind>` lists the files the last render of that kind wrote (paths relative to
DIR), so several exports can share a directory (the workflow writes compose and tunnel into
one) without taking each other's files for stale or foreign ones.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

MANIFEST = ".manacore-"  # + the kind of export: .manacore-compose, .manacore-helm …
SHOWN = 5  # foreign files named in a refusal


class OutputError(Exception):
    """The output path cannot be used; the message says why and what to do."""


def usable_dir(path: Path, option: str = "--out", given: Path | None = None) -> None:
    """`path` is, or can become, a writable directory; OutputError otherwise. `given`: what
    the user typed, when `path` is derived from it (the folder of an output file)."""
    shown = f"{option} {given or path}"
    if path.exists() and not path.is_dir():
        raise OutputError(f"{shown}: {path} is a file, not a directory")
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        raise OutputError(f"{shown}: {existing} is not a directory, so {path} cannot be "
                          "created")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if existing == path else f"cannot be created in {existing}"
        raise OutputError(f"{shown}: {path} {what} (permission denied)")


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file() or p.is_symlink()}


def _listed(manifest: Path) -> set[Path]:
    try:
        lines = manifest.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return set()
    return {Path(line) for line in lines if line and not line.startswith("#")}


def manifests(out_dir: Path) -> dict[Path, set[Path]]:
    """Every manifest in `out_dir` or below (an export in a subdirectory, as run.sh writes
    them beside the graph) → the files it lists, both relative to `out_dir`."""
    if not out_dir.is_dir():
        return {}
    return {m.relative_to(out_dir): {m.parent.relative_to(out_dir) / f for f in _listed(m)}
            for m in out_dir.rglob(f"{MANIFEST}*") if m.is_file()}


def write_managed(out_dir: Path, render: Callable[[Path], object], *, kind: str,
                  force: bool = False, option: str = "--out") -> tuple[list[Path], list[Path]]:
    """Run `render` into a scratch directory, then make `out_dir` hold its files instead of
    those of the last render of the same `kind`, beside the files of other kinds (and foreign
    ones when `force`). Returns (files written, stale files removed), inside `out_dir`. Raises
    OutputError, before anything in `out_dir` changed, when it cannot be used."""
    usable_dir(out_dir, option)
    manifest = Path(f"{MANIFEST}{kind}")
    with tempfile.TemporaryDirectory(prefix="manacore-render-") as scratch:
        render(Path(scratch))
        new = sorted(_files(Path(scratch)))  # everything it wrote, listed or not
        listed = manifests(out_dir)
        previous = listed.get(manifest, set())
        known = set().union(*listed.values(), listed)
        present = _files(out_dir) if out_dir.is_dir() else set()
        foreign = sorted(present - known - set(new))
        if foreign and not force:
            names = ", ".join(map(str, foreign[:SHOWN])) + (
                f" and {len(foreign) - SHOWN} more" if len(foreign) > SHOWN else "")
            raise OutputError(f"{option} {out_dir}: holds files manacore did not write ({names});"
                              " empty it, choose another directory, or pass --force to write "
                              "beside them")
        try:
            for rel in new:
                target = out_dir / rel
                if target.is_dir() and not target.is_symlink():
                    raise OutputError(f"{option} {out_dir}: {rel} is a directory where a file "
                                      "belongs; remove it")
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.is_symlink():
                    target.unlink()
                shutil.copy2(Path(scratch) / rel, target)
            stale = sorted(previous - set(new))
            removed = []
            for rel in stale:
                target = out_dir / rel
                if target.is_file() or target.is_symlink():
                    target.unlink()
                    removed.append(target)
                _prune(target.parent, out_dir)
            (out_dir / manifest).write_text(
                "# files written by manacore; the next render removes the ones it no longer "
                "writes\n" + "".join(f"{rel.as_posix()}\n" for rel in new), encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"{option} {out_dir}: {exc.strerror or exc}"
                              f"{f' ({exc.filename})' if exc.filename else ''}") from None
    return [out_dir / rel for rel in new], removed


def _prune(folder: Path, root: Path) -> None:
    """Remove directories left empty by removed files, up to (not including) `root`."""
    while folder != root and root in folder.parents and folder.is_dir() and \
            not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent
