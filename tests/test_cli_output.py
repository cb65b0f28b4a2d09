"""What the CLI prints and how it exits, for anything a user can type: one line per problem,
the README's exit codes, text shown as written (no markup, no wrapping), never a traceback."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import catalog.load
from catalog.model import Public
from tests.estates import estate
from tests.test_stack_files import invoke

COMMANDS = [["validate"], ["ports"], ["graph"], ["budget"], ["migrate", "--out", "{tmp}/m"],
            ["render", "compose", "--out", "{tmp}/c"], ["render", "helm", "--out", "{tmp}/h"],
            ["render", "tunnel", "--out", "{tmp}/t"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_an_unknown_stack_exits_2_on_every_command(command, tmp_path) -> None:
    args = [a.format(tmp=tmp_path) for a in command]
    result = invoke(*args, "--stack", "nope")
    assert result.exit_code == 2, result.output
    assert "settings: stack nope: no " in result.output and "known stacks: k3s, macmini" in \
        result.output


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_stack_dir_without_stacks_exits_2(command, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MANACORE_STACK_DIR", str(tmp_path / "nonexistent"))
    result = invoke(*[a.format(tmp=tmp_path) for a in command])
    assert result.exit_code == 2, result.output
    assert str(tmp_path / "nonexistent") in result.output


def test_text_in_square_brackets_is_shown_as_written(monkeypatch) -> None:
    broken = estate(**{"notes-backend": {"public": Public(host="notes",
                                                          open_paths=("/webhook/[id]",))}})
    monkeypatch.setattr("cli.load_estate", lambda: broken)
    result = invoke("validate", "--stack", "macmini")
    assert result.exit_code == 1
    assert "open path /webhook/[id] needs access=True" in result.output
    assert "open path '/webhook/[id]' must be a plain path" in result.output


def test_help_shows_placeholders_as_written() -> None:
    assert "Pulumi.STACK.yaml" in invoke("--help").output
    assert "Pulumi..yaml" not in invoke("validate", "--help").output
    graph = invoke("graph", "--help").output
    assert "dependencies.<fmt>, ports.<fmt>" in graph
    assert "--force" in invoke("render", "compose", "--help").output


def test_output_to_a_pipe_is_not_wrapped(tmp_path, monkeypatch) -> None:
    deep = tmp_path / ("a-rather-long-directory-name-" * 4) / "stacks"
    monkeypatch.setenv("MANACORE_STACK_DIR", str(deep))
    result = invoke("validate")
    line = next(x for x in result.output.splitlines() if "nothing to validate" in x)
    assert str(deep) in line and len(line) > 120


WORDS = st.sampled_from(["validate", "ports", "graph", "budget", "migrate", "render", "compose",
                         "helm", "tunnel", "--stack", "-s", "macmini", "k3s", "nope", "--out",
                         "--images", "--format", "png", "svg", "gif", "--force", "--help", "",
                         "[red]x[/red]", "-", "--", "{tmp}/o", "{tmp}", "{tmp}/x.mmd", "é"])


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=st.lists(WORDS, max_size=6))
def test_no_command_line_traces_back(argv, tmp_path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)  # default outputs (out/, migration/) land here, not in the project
        result = invoke(*[a.format(tmp=tmp_path) for a in argv])  # asserts: no traceback
    assert result.exit_code in (0, 1, 2)


def test_a_services_file_that_raises_is_exit_2(monkeypatch) -> None:
    def broken():
        raise catalog.load.LoadError("services.py could not be loaded: NameError: x [at 1]")

    monkeypatch.setattr("cli.load_estate", broken)
    result = invoke("validate")
    assert result.exit_code == 2
    assert "NameError: x [at 1]" in result.output


def test_every_slow_setup_step_says_what_it_does() -> None:
    """scripts/setup.sh prints one line before each block that installs or downloads."""
    import re

    from catalog.settings import ROOT

    script = (ROOT / "scripts" / "setup.sh").read_text()
    blocks = re.findall(r"^\s*if [^\n]*then\n(.*?)^\s*fi$", script, re.M | re.S)
    slow = [b for b in blocks if re.search(r"apt-get|pip (install|download)|-m venv", b)]
    assert len(slow) >= 5
    assert all(b.lstrip().startswith("step ") for b in slow), slow


SERVICES_FILES = {
    "syntax error": ("def estate(:\n", "SyntaxError: "),
    "name error": ("from catalog.model import Estate\nSECRETS = [sevrice]\n", "NameError: "),
    "pydantic error": ("from catalog.model import Secret\nS = Secret(nme='X')\n",
                       "ValidationError: name: Field required; nme: Extra inputs"),
    "no estate()": ("X = 1\n", "AttributeError: "),
}


@pytest.mark.parametrize("case", SERVICES_FILES)
def test_a_services_file_that_does_not_load_is_one_line_and_exit_2(case, tmp_path,
                                                                   monkeypatch) -> None:
    source, fragment = SERVICES_FILES[case]
    name = f"broken_services_{list(SERVICES_FILES).index(case)}"
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("cli.load_estate", lambda: catalog.load.load_estate(name))
    result = invoke("validate")
    assert result.exit_code == 2
    [line] = [x for x in result.output.splitlines() if x.strip()]
    assert f"{name}.py could not be loaded: {fragment}" in line
    assert f"{name}.py:" in line or case == "no estate()"  # where, in the file itself


@pytest.mark.parametrize(("args", "lists"), [((), "validate"), (("render",), "compose"),
                                             (("bogus",), "invalid choice")])
def test_no_command_or_an_unknown_one_shows_what_there_is_and_exits_2(args, lists) -> None:
    result = invoke(*args)
    assert result.exit_code == 2 and lists in result.stderr and "usage: manacore" in \
        result.stderr
