"""`manacore`: the estate's command line. Works without the Pulumi CLI: stack settings are read
from `Pulumi.<stack>.yaml`, secrets are never needed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from catalog.load import LoadError, load_estate, load_stack
from catalog.resolve import ResolvedEstate
from catalog.rules import EstateError, Violation, validate
from catalog.settings import SettingsError, known_stacks, load_settings
from catalog.units import format_bytes
from exports import RENDERERS, renderer

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False,
                  rich_markup_mode="markdown")
out = Console()
err = Console(stderr=True)

StackOpt = Annotated[str, typer.Option("--stack", "-s", help="stack name (Pulumi.<stack>.yaml)")]


def _fail(lines: list[str], code: int) -> typer.Exit:
    for line in lines:
        err.print(f"[red]✗[/red] {line}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _resolved(stack: str) -> ResolvedEstate:
    """The estate resolved for a stack, or a clean exit with every problem listed."""
    try:
        return load_stack(stack)[1]
    except EstateError as exc:
        raise _fail([str(v) for v in exc.violations], 1) from None
    except SettingsError as exc:
        raise _fail([f"settings: {p}" for p in exc.problems], 2) from None
    except LoadError as exc:
        raise _fail([str(exc)], 2) from None


@app.command("validate")
def validate_cmd(
    stack: Annotated[list[str] | None, typer.Option("--stack", "-s", help="stack(s) to check; "
                                                    "default: every Pulumi.<stack>.yaml")] = None,
) -> None:
    """Check the catalogue and resolve it for each stack; list every violation at once."""
    from exports import tunnel

    try:
        estate = load_estate()
    except LoadError as exc:
        raise _fail([str(exc)], 2) from None
    problems: list[str] = []
    for name in stack or known_stacks():
        try:
            settings = load_settings(name)
        except SettingsError as exc:
            problems += [f"settings: stack {name}: {p}" for p in exc.problems]
            continue
        found: list[Violation] = validate(estate, settings)
        problems += [str(v) for v in found]
        if not found:
            resolved = _resolved(name)
            routes = tunnel.violations(resolved)  # cloudflared's rules, on the resolved routes
            problems += [str(v) for v in routes]
            if routes:
                continue
            out.print(f"[green]✓[/green] stack [bold]{name}[/bold] ({settings.target}): "
                      f"{len(resolved.containers)} containers, "
                      f"{len(resolved.services) - len(resolved.containers)} native services, "
                      f"{len(resolved.secrets)} secrets, {len(resolved.databases)} databases, "
                      f"tiers {min(s.tier for s in resolved.containers)}-"
                      f"{max(s.tier for s in resolved.services)}")
    if problems:
        raise _fail(list(dict.fromkeys(problems)), 1)


@app.command("ports")
def ports_cmd(stack: StackOpt = "macmini") -> None:
    """The port map: new vs legacy published ports, grouped by range, with reserved and free
    slots."""
    from rich.table import Table

    from exports import reports

    for block in reports.port_map(_resolved(stack)):
        table = Table(title=f"{block.first}-{block.last}  {block.label}", title_justify="left")
        for column in ("port", "service", "name", "legacy port(s)"):
            table.add_column(column)
        for row in block.rows:
            table.add_row(str(row.port), row.service, row.name, row.legacy)
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
) -> None:
    """The dependency graph as a Mermaid flowchart (solid: hard, dotted: lazy); with --out or
    --images also as pictures of the graph and the port map, drawn by Graphviz."""
    from graphviz import ExecutableNotFound

    from exports import reports
    from exports.graph_image import FORMATS, write_images

    if fmt not in FORMATS:
        raise _fail([f"--format {fmt}: use one of {', '.join(FORMATS)}"], 2)
    resolved = _resolved(stack)
    text = reports.mermaid(resolved)
    if output is None:
        out.print(text, highlight=False, markup=False, end="")
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        out.print(f"wrote {output}")
    folder = images if images is not None else output.parent if output is not None else None
    if folder is None:
        return
    try:
        written = write_images(resolved, folder, fmt)  # type: ignore[arg-type]
    except ExecutableNotFound:
        raise _fail(["Graphviz's dot is not installed: run bash scripts/setup.sh "
                     "(it installs the Debian package graphviz)"], 2) from None
    for path in written:
        (err if output is None else out).print(f"wrote {path}")


@app.command("budget")
def budget_cmd(stack: StackOpt = "macmini") -> None:
    """Memory limits per category against the seed's estimates and the stack's host budget;
    exits 1 when the estate does not fit."""
    from rich.table import Table

    from exports import reports

    resolved = _resolved(stack)
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
    verdict = f"host budget {resolved.settings.memory_budget} ({format_bytes(allowed)})"
    if total > allowed:
        raise _fail([f"the estate needs {format_bytes(total)}, more than the {verdict}"], 1)
    out.print(f"[green]✓[/green] fits the {verdict}: {format_bytes(allowed - total)} spare")


@app.command("migrate")
def migrate_cmd(
    stack: StackOpt = "macmini",
    output: Annotated[Path, typer.Option("--out", help="directory to write into")] = Path(
        "migration"),
) -> None:
    """Write the Phase 0 migration aids: PORTS.md, MIGRATION.md and the data-safe volume
    scripts (check-legacy-volumes.sh, migrate-VOLUME.sh)."""
    from exports import migration

    resolved = _resolved(stack)
    try:
        written = migration.render(resolved, output)
    except EstateError as exc:
        raise _fail([str(v) for v in exc.violations], 1) from None
    for path in written:
        out.print(f"wrote {path}")


render_app = typer.Typer(help="Write an export of the estate for a stack.",
                         no_args_is_help=True)
app.add_typer(render_app, name="render")


def _render_command(kind: str, summary: str, default_stack: str) -> None:
    def command(
        stack: StackOpt = default_stack,
        output: Annotated[Path, typer.Option("--out", help="directory to write into")] = Path(
            "out"),
    ) -> None:
        resolved = _resolved(stack)
        try:
            written = renderer(kind)(resolved, output)
        except EstateError as exc:
            raise _fail([str(v) for v in exc.violations], 1) from None
        for path in written:
            out.print(f"wrote {path}")

    command.__doc__ = f"Write {summary}."
    render_app.command(kind)(command)


for _kind, _export in RENDERERS.items():
    _render_command(_kind, _export.summary, _export.stack)


if __name__ == "__main__":
    app()
