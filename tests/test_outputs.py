"""Output paths: an --out that cannot be used is one line and exit 2; a directory manacore
renders into is owned by it: files of an earlier render it no longer writes are removed, files
it never wrote are refused unless --force."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exports import outdir
from exports.outdir import MANIFEST, OutputError, write_managed
from tests.test_stack_files import invoke

WRITERS = {
    "render compose": ["render", "compose"],
    "render helm": ["render", "helm"],
    "render tunnel": ["render", "tunnel"],
    "migrate": ["migrate"],
}


def _file(tmp: Path) -> Path:
    path = tmp / "taken"
    path.write_text("not a directory")
    return path


BAD_DIRS = {
    "is a file": (lambda tmp: _file(tmp), "is a file, not a directory"),
    "below a file": (lambda tmp: _file(tmp) / "sub" / "dir", "is not a directory, so"),
}


@pytest.mark.parametrize("bad", BAD_DIRS)
@pytest.mark.parametrize("writer", WRITERS)
def test_an_unusable_out_dir_is_one_line_and_exit_2(writer, bad, tmp_path) -> None:
    make, fragment = BAD_DIRS[bad]
    target = make(tmp_path)
    result = invoke(*WRITERS[writer], "--out", str(target))
    assert result.exit_code == 2, result.output
    assert f"--out {target}: " in result.output and fragment in result.output


@pytest.mark.parametrize("writer", WRITERS)
def test_an_unwritable_out_dir_is_one_line_and_exit_2(writer, tmp_path, monkeypatch) -> None:
    # root may write anywhere, so the permission is taken away where manacore asks for it
    monkeypatch.setattr(outdir.os, "access", lambda path, mode: False)
    result = invoke(*WRITERS[writer], "--out", str(tmp_path / "new"))
    assert result.exit_code == 2, result.output
    assert "(permission denied)" in result.output


@pytest.mark.parametrize(("args", "fragment"), [
    (["--out", "{file}/g.mmd"], "is a file, not a directory"),
    (["--out", "{dir}"], "is a directory; give the file to write"),
    (["--images", "{file}"], "is a file, not a directory"),
    (["--out", "{dir}/g.mmd", "--images", "{file}/x"], "is not a directory, so"),
])
def test_graph_output_paths(args, fragment, tmp_path) -> None:
    paths = {"file": str(_file(tmp_path)), "dir": str(tmp_path)}
    result = invoke("graph", *(a.format(**paths) for a in args))
    assert result.exit_code == 2, result.output
    assert fragment in result.output


def test_a_write_error_while_writing_is_one_line(tmp_path, monkeypatch) -> None:
    def full_disk(*_args, **_kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outdir.shutil, "copy2", full_disk)
    result = invoke("render", "tunnel", "--out", str(tmp_path / "t"))
    assert result.exit_code == 2
    assert "No space left on device" in result.output


def test_rerendering_removes_what_is_no_longer_written(tmp_path) -> None:
    out = tmp_path / "out"
    assert invoke("render", "helm", "--out", str(out)).exit_code == 0
    chart = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    # an earlier render wrote a template this one does not: it must not be installed
    stale = out / "manacore" / "templates" / "old-service.yaml"
    stale.write_text("kind: Deployment\n")
    manifest = out / f"{MANIFEST}helm"
    manifest.write_text(manifest.read_text() + "manacore/templates/old-service.yaml\n")
    again = invoke("render", "helm", "--out", str(out))
    assert again.exit_code == 0, again.output
    assert not stale.exists()
    assert f"removed {stale}" in again.output
    assert sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file()) == chart


def test_foreign_files_are_refused_unless_forced(tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    refused = invoke("render", "compose", "--out", str(out))
    assert refused.exit_code == 2
    assert "holds files manacore did not write (notes.txt)" in refused.output
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # nothing written
    forced = invoke("render", "compose", "--out", str(out), "--force")
    assert forced.exit_code == 0, forced.output
    assert (out / "notes.txt").read_text() == "mine"  # left alone
    assert (out / "compose.yaml").exists()


def test_a_render_over_its_own_earlier_output_is_not_refused(tmp_path) -> None:
    """An out/ written before manifests existed holds the same names: they are ours."""
    out = tmp_path / "out"
    assert invoke("render", "compose", "--out", str(out)).exit_code == 0
    (out / f"{MANIFEST}compose").unlink()
    assert invoke("render", "compose", "--out", str(out)).exit_code == 0


def test_exports_sharing_a_directory_keep_each_others_files(tmp_path) -> None:
    """The workflow renders compose and tunnel into one directory, and the graph beside."""
    out = tmp_path / "macmini"
    for _ in range(2):
        for args in (["render", "compose"], ["render", "tunnel"], ["migrate"]):
            result = invoke(*args, "--out", str(out))
            assert result.exit_code == 0, result.output
            assert "removed" not in result.output
        graph = invoke("graph", "--out", str(out / "graph.mmd"))
        assert graph.exit_code == 0, graph.output
    names = {p.name for p in out.iterdir()}
    assert {"compose.yaml", ".env.example", "config.yml", "PORTS.md", "graph.mmd",
            "dependencies.svg", "ports.svg"} <= names


def test_exports_in_subdirectories_are_not_foreign(tmp_path) -> None:
    """run.sh: out/macmini/{compose,tunnel}/ and the graph in out/macmini/ itself."""
    for _ in range(2):
        for args in (["render", "compose", "--out", str(tmp_path / "compose")],
                     ["render", "tunnel", "--out", str(tmp_path / "tunnel")],
                     ["graph", "--out", str(tmp_path / "graph.mmd")]):
            result = invoke(*args)
            assert result.exit_code == 0, result.output
    (tmp_path / "compose" / "notes.txt").write_text("mine")
    refused = invoke("graph", "--out", str(tmp_path / "graph.mmd"))
    assert refused.exit_code == 2 and "(compose/notes.txt)" in refused.output


def test_a_graph_in_another_format_replaces_the_pictures(tmp_path) -> None:
    assert invoke("graph", "--images", str(tmp_path)).exit_code == 0
    png = invoke("graph", "--images", str(tmp_path), "--format", "png")
    assert png.exit_code == 0, png.output
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "dependencies.png", "ports.png"]


NAMES = st.lists(st.sampled_from(["a.txt", "b.yaml", "d/c.yaml", "d/e/f.sh", "g"]),
                 unique=True, max_size=5)


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(earlier=NAMES, now=NAMES, foreign=NAMES, force=st.booleans())
def test_the_directory_holds_exactly_the_new_render(earlier, now, foreign, force,
                                                    tmp_path_factory) -> None:
    out = tmp_path_factory.mktemp("owned")

    def render(names: list[str]):
        def write(folder: Path) -> list[Path]:
            for name in names:
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                (folder / name).write_text(name)
            return [folder / n for n in names]
        return write

    write_managed(out, render(earlier), kind="k")
    foreign = [f"x/{n}" for n in foreign]  # never a name a render writes
    for name in foreign:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("foreign")
    try:
        write_managed(out, render(now), kind="k", force=force)
    except OutputError:
        assert foreign and not force
        return
    present = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert present == {*now, *foreign, f"{MANIFEST}k"}
    assert all((out / n).read_text() == n for n in now)
