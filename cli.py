"""`manacore`: the estate's command line. Works without the Pulumi CLI: stack settings are read
from `Pulumi.STACK.yaml`, secrets are never needed.

Exit codes: 0 all good · 1 the estate breaks a rule (one line per violation) · 2 the catalogue,
a stack file or an output path cannot be used."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from catalog.load import LoadError, load_estate, load_stack
from catalog.model import Estate
from catalog.resolve import ResolvedEstate, resolve
from catalog.rules import EstateError, Violation, stage_failure, unknown_secrets, validate
from catalog.settings import (
    SettingsError,
    known_stacks,
    load_settings,
    secret_keys,
    stack_dir,
)
from catalog.units import format_bytes
from exports import RENDERERS, renderer
from exports.checks import stack_violations
from exports.outdir import OutputError, usable_dir, write_managed

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False,
                  rich_markup_mode=None, pretty_exceptions_enable=False)
# soft_wrap: a line is never broken at the terminal's (or a pipe's 80) columns, so paths stay
# whole when the output goes to a file; highlight off: nothing is coloured by guesswork
out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)

StackOpt = Annotated[str, typer.Option("--stack", "-s", help="stack name (Pulumi.STACK.yaml)")]
ForceOpt = Annotated[bool, typer.Option(
    "--force", help="write even into a directory holding files manacore did not write "
    "(they are left alone)")]


def _fail(lines: list[str], code: int) -> typer.Exit:
    for line in dict.fromkeys(lines):
        err.print(Text.assemble(("✗ ", "red"), line))  # Text: no markup, [brackets] stay
    return typer.Exit(code)


def _ok(message: str) -> None:
    out.print(Text.assemble(("✓ ", "green"), message))


def _settings_lines(exc: SettingsError) -> list[str]:
    return [f"settings: stack {exc.stack}: {p}" for p in exc.problems]


def _problems(exc: Exception, stage: str) -> tuple[list[str], int]:
    """Lines and exit code for anything a command can fail with: 1 when the estate breaks a
    rule, 2 when an input or output cannot be used."""
    if isinstance(exc, EstateError):
        return [str(v) for v in exc.violations], 1
    if isinstance(exc, SettingsError):
        return _settings_lines(exc), 2 if exc.unreadable else 1
    if isinstance(exc, (LoadError, OutputError)):
        return [str(exc)], 2
    if isinstance(exc, OSError):
        return [f"{stage}: {exc.strerror or exc}{f' ({exc.filename})' if exc.filename else ''}"
                ], 2
    return [str(stage_failure("estate", stage, exc))], 1


@contextmanager
def _reported(stage: str) -> Iterator[None]:
    """Every failure of the block as one line per problem and an exit code, never a
    traceback."""
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        lines, code = _problems(exc, stage)
        raise _fail(lines, code) from None


def _resolved(stack: str) -> ResolvedEstate:
    """The estate resolved for a stack, or a clean exit with every problem listed."""
    try:
        return load_stack(stack)[1]
    except Exception as exc:
        lines, code = _problems(exc, f"stack {stack}")
        raise _fail(lines, code) from None


@app.command("validate")
def validate_cmd(
    stack: Annotated[list[str] | None, typer.Option("--stack", "-s", help="stack(s) to check; "
                                                    "default: every Pulumi.STACK.yaml")] = None,
) -> None:
    """Check the catalogue and resolve it for each stack, with every check the Pulumi program
    runs (tunnel, memory budget); list every violation at once."""
    with _reported("services.py"):
        estate = load_estate()
    names = list(dict.fromkeys(stack or known_stacks()))
    if not names:
        raise _fail([f"no Pulumi.STACK.yaml in {stack_dir()}: nothing to validate (is "
                     "MANACORE_STACK_DIR right?)"], 2)
    problems: list[str] = []
    code = 0
    for name in names:
        lines, found_code = _validate_stack(estate, name)
        problems += lines
        code = max(code, found_code)
    if problems:
        raise _fail(problems, code)


def _validate_stack(estate: Estate, name: str) -> tuple[list[str], int]:
    """Problem lines and exit code of one stack; prints its summary when it passes."""
    try:
        settings = load_settings(name)
        found: list[Violation] = validate(estate, settings) + unknown_secrets(
            estate, name, secret_keys(name))
        if found:
            return [str(v) for v in found], 1
        resolved = resolve(estate, settings)
        found = stack_violations(resolved)  # the tunnel's and the budget's checks, as Pulumi
        if found:
            return [str(v) for v in found], 1
    except Exception as exc:
        return _problems(exc, f"stack {name}")
    _ok(f"stack {name} ({settings.target}): "
        f"{len(resolved.containers)} containers, "
        f"{len(resolved.services) - len(resolved.containers)} native services, "
        f"{len(resolved.secrets)} secrets, {len(resolved.databases)} databases, "
        f"tiers {min((s.tier for s in resolved.containers), default=0)}-"
        f"{max((s.tier for s in resolved.services), default=0)}")
    return [], 0


@app.command("ports")
def ports_cmd(stack: StackOpt = "macmini") -> None:
    """The port map: new vs legacy published ports, grouped by range, with reserved and free
    slots."""
    from rich.table import Table

    from exports import reports

    resolved = _resolved(stack)
    with _reported("ports"):
        blocks = reports.port_map(resolved)
    for block in blocks:
        table = Table(title=Text(f"{block.first}-{block.last}  {block.label}"),
                      title_justify="left")
        for column in ("port", "service", "name", "legacy port(s)"):
            table.add_column(column)
        for row in block.rows:
            table.add_row(*map(Text, (str(row.port), row.service, row.name, row.legacy)))
        table.caption = (f"{len(block.rows) - len(block.reserved)} used, "
                         f"{len(block.reserved)} reserved, {block.free} free"
                         + (f"; next free: {', '.join(map(str, block.next_free))}"
                            if block.next_free else ""))
        table.caption_justify = "left"
        out.print(table)


@app.command("graph")
def graph_cmd(
    stack: StackOpt = "macmini",
    output: Annotated[Path | None, typer.Option(
        "--out", help="write the Mermaid here, and the pictures beside it")] = None,
    images: Annotated[Path | None, typer.Option(
        "--images", help="write the pictures (dependencies.<fmt>, ports.<fmt>) into this "
        "directory; default: beside --out")] = None,
    fmt: Annotated[str, typer.Option("--format", help="picture format: svg or png")] = "svg",
    force: ForceOpt = False,
) -> None:
    """The dependency graph as a Mermaid flowchart (solid: hard, dotted: lazy); with --out or
    --images also as pictures of the graph and the port map, drawn by Graphviz."""
    from graphviz import ExecutableNotFound

    from exports import reports
    from exports.graph_image import FORMATS, write_images

    if fmt not in FORMATS:
        raise _fail([f"--format {fmt}: use one of {', '.join(FORMATS)}"], 2)
    with _reported("graph"):
        if output is not None and output.is_dir():
            raise OutputError(f"--out {output}: is a directory; give the file to write, "
                              "e.g. graph.mmd")
        for option, folder in (("--out", output and output.parent), ("--images", images)):
            if folder is not None:
                usable_dir(folder, option, output if option == "--out" else None)
    resolved = _resolved(stack)
    with _reported("graph"):
        text = reports.mermaid(resolved)

    def pictures(folder: Path) -> None:
        try:
            write_images(resolved, folder, fmt)  # type: ignore[arg-type]
        except ExecutableNotFound:
            raise OutputError("Graphviz's dot is not installed: run bash scripts/setup.sh "
                              "(it installs the Debian package graphviz)") from None

    def mermaid(folder: Path) -> None:
        assert output is not None
        (folder / output.name).write_text(text)
        if images is None:  # the pictures go beside it
            pictures(folder)

    if output is None:
        out.print(text, markup=False, end="")
    else:
        _write(mermaid, output.parent, force, "graph")
    if images is not None:
        _write(pictures, images, force, "graph pictures", err if output is None else out)


def _wrote(path: Path, console: Console = out) -> None:
    console.print(Text(f"wrote {path}"))


@app.command("budget")
def budget_cmd(stack: StackOpt = "macmini") -> None:
    """Memory limits per category against the seed's estimates and the stack's host budget;
    exits 1 when the estate does not fit."""
    from rich.table import Table

    from exports import reports

    resolved = _resolved(stack)
    with _reported("budget"):
        lines = reports.budget(resolved)
    table = Table(title=f"memory on stack {stack} ({resolved.target})", title_justify="left")
    for column in ("group", "containers", "limits", "seed estimate"):
        table.add_column(column, justify="left" if column == "group" else "right")
    for line in lines:
        table.add_row(line.group, str(line.containers), format_bytes(line.limit_bytes),
                      f"{line.seed_gb:.1f} GB")
    total = sum(line.limit_bytes for line in lines)
    allowed = resolved.settings.memory_budget_bytes
    table.add_row("total", str(sum(x.containers for x in lines)), format_bytes(total),
                  f"{sum(x.seed_gb for x in lines):.1f} GB", style="bold")
    out.print(table)
    over = reports.budget_violations(resolved)  # the same check validate and Pulumi run
    if over:
        raise _fail([str(v) for v in over], 1)
    _ok(f"fits the host budget {resolved.settings.memory_budget} ({format_bytes(allowed)}): "
        f"{format_bytes(allowed - total)} spare")


@app.command("migrate")
def migrate_cmd(
    stack: StackOpt = "macmini",
    output: Annotated[Path, typer.Option("--out", help="directory to write into")] = Path(
        "migration"),
    force: ForceOpt = False,
) -> None:
    """Write the Phase 0 migration aids: PORTS.md, MIGRATION.md and the data-safe volume
    scripts (check-legacy-volumes.sh, migrate-VOLUME.sh)."""
    from exports import migration

    _write(lambda d: migration.render(_resolved(stack), d), output, force, "migrate")


def _write(render: Callable[[Path], object], output: Path, force: bool, stage: str,
           console: Console = out) -> None:
    """Render into `output`, where manacore owns what it wrote: stale files of the last render
    of this kind (`stage` without "render") go, foreign files are refused."""
    option = "--images" if stage == "graph pictures" else "--out"
    with _reported(stage):
        usable_dir(output, option)  # before resolving: a wrong --out is reported first
        written, removed = write_managed(output, render, force=force, option=option,
                                         kind=stage.removeprefix("render ").replace(" ", "-"))
    for path in written:
        _wrote(path, console)
    for path in removed:
        console.print(Text(f"removed {path} (no longer rendered)"))


render_app = typer.Typer(help="Write an export of the estate for a stack.",
                         no_args_is_help=True)
app.add_typer(render_app, name="render")


def _render_command(kind: str, summary: str, default_stack: str) -> None:
    def command(
        stack: StackOpt = default_stack,
        output: Annotated[Path, typer.Option("--out", help="directory to write into")] = Path(
            "out"),
        force: ForceOpt = False,
    ) -> None:
        _write(lambda d: renderer(kind)(_resolved(stack), d), output, force, f"render {kind}")

    command.__doc__ = f"Write {summary}."
    render_app.command(kind)(command)


for _kind, _export in RENDERERS.items():
    _render_command(_kind, _export.summary, _export.stack)


if __name__ == "__main__":
    app()
