"""`manacore`: the estate's command line. Works without the Pulumi CLI: stack settings are read
from `Pulumi.STACK.yaml`, secrets are never needed.

Exit codes: 0 all good · 1 the estate breaks a rule (one line per violation) · 2 the catalogue,
a stack file or an output path cannot be used."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from catalog.load import LoadError, load_estate, load_stack
from catalog.model import Estate
from catalog.resolve import ResolvedEstate, resolve
from catalog.rules import EstateError, Violation, stage_failure, unknown_secrets
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

# The command line is argparse's and the tables are plain aligned text: the standard library
# imports in ~5 ms where a CLI framework and a terminal-rendering library took ~170 ms of a
# 0.4 s command. Lines are printed as they are (no markup: [brackets] stay; never wrapped, so
# paths stay whole in a file), coloured only on a terminal without NO_COLOR.
COLOURS = {"red": 31, "green": 32}


def _say(line: str, stderr: bool = False) -> None:
    print(line, file=sys.stderr if stderr else sys.stdout)


def _mark(symbol: str, colour: str, stream: TextIO) -> str:
    if stream.isatty() and not os.environ.get("NO_COLOR"):
        return f"\033[{COLOURS[colour]}m{symbol}\033[0m "
    return f"{symbol} "


def _fail(lines: list[str], code: int) -> SystemExit:
    for line in dict.fromkeys(lines):
        _say(_mark("✗", "red", sys.stderr) + line, stderr=True)
    return SystemExit(code)


def _ok(message: str) -> None:
    _say(_mark("✓", "green", sys.stdout) + message)


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]],
           caption: str = "", right: Sequence[str] = ()) -> None:
    """A titled table in aligned columns (those named in `right` flush right) under a rule,
    as `docker ps` and `kubectl get` print them, with an optional caption line."""
    widths = [max([len(column), *(len(row[i]) for row in rows)])
              for i, column in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.rjust(width) if column in right else cell.ljust(width)
                         for cell, width, column in zip(cells, widths, columns, strict=True)
                         ).rstrip()

    _say("\n".join([title, line(columns), line(["-" * w for w in widths]),
                     *map(line, rows), *([caption] if caption else []), ""]))


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
    except SystemExit:
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


def validate_cmd(stack: list[str] | None) -> None:
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
        found: list[Violation] = unknown_secrets(estate, name, secret_keys(name))
        try:
            resolved = resolve(estate, settings)  # checks every rule first
        except EstateError as exc:
            found = [*exc.violations, *found]
        if found:
            return [str(v) for v in found], 1
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


def ports_cmd(stack: str) -> None:
    """The port map: new vs legacy published ports, grouped by range, with reserved and free
    slots."""
    from exports import reports

    resolved = _resolved(stack)
    with _reported("ports"):
        blocks = reports.port_map(resolved)
    for block in blocks:
        _table(f"{block.first}-{block.last}  {block.label}",
               ("port", "service", "name", "legacy port(s)"),
               [(str(row.port), row.service, row.name, row.legacy) for row in block.rows],
               f"{len(block.rows) - len(block.reserved)} used, {len(block.reserved)} reserved, "
               f"{block.free} free" + (f"; next free: {', '.join(map(str, block.next_free))}"
                                       if block.next_free else ""))


def graph_cmd(stack: str, output: Path | None, images: Path | None, fmt: str,
              force: bool) -> None:
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
        sys.stdout.write(text)
    else:
        _write(mermaid, output.parent, force, "graph")
    if images is not None:
        # the Mermaid went to stdout: what was written goes to stderr
        _write(pictures, images, force, "graph pictures", stderr=output is None)


def budget_cmd(stack: str) -> None:
    """Memory limits per category against the seed's estimates and the stack's host budget;
    exits 1 when the estate does not fit."""
    from exports import reports

    resolved = _resolved(stack)
    with _reported("budget"):
        lines = reports.budget(resolved)
    total = sum(line.limit_bytes for line in lines)
    allowed = resolved.settings.memory_budget_bytes
    columns = ("group", "services", "pods" if resolved.target == "kubernetes" else
               "containers", "limits", "seed estimate")
    _table(f"memory on stack {stack} ({resolved.target})", columns,
           [*((line.group, str(line.containers), str(line.pods),
               format_bytes(line.limit_bytes), f"{line.seed_gb:.1f} GB") for line in lines),
            ("total", str(sum(x.containers for x in lines)), str(sum(x.pods for x in lines)),
             format_bytes(total), f"{sum(x.seed_gb for x in lines):.1f} GB")],
           right=columns[1:])
    over = reports.budget_violations(resolved)  # the same check validate and Pulumi run
    if over:
        raise _fail([str(v) for v in over], 1)
    _ok(f"fits the host budget {resolved.settings.memory_budget} ({format_bytes(allowed)}): "
        f"{format_bytes(allowed - total)} spare")


def images_cmd(today: str | None) -> None:
    """Every third-party image pin: its tag scheme, the day it was last checked upstream, the
    newest release known then, the registry and versioning Renovate uses for it, and the
    package Renovate checks against OSV for its vulnerabilities; exits 1 when a pin was never
    or too long ago checked, or Renovate does not cover it right."""
    from datetime import date

    from catalog.settings import ROOT
    from exports.pins import pins

    with _reported("images"):
        day = date.fromisoformat(today) if today else date.today()
        found = pins(load_estate(), ROOT, day)
    _table(f"image pins ({len(found)}; checked against {day.isoformat()})",
           ("where", "image", "tag", "scheme", "checked", "newest known", "renovate", "osv"),
           [(p.where, p.repository, p.tag, p.scheme, p.checked or "never",
             "= pinned" if p.current else p.newest, " ".join(x for x in (
                 p.registry, p.versioning, p.group and f"[{p.group}]") if x) or "-",
             p.package or "-") for p in found],
           f"{sum(p.current for p in found)} of {len(found)} at the newest release known")
    problems = [f"{p.where} ({p.repository}:{p.tag}): {x}" for p in found for x in p.problems]
    if problems:
        raise _fail(problems, 1)
    _ok("every pin checked within its period and covered by Renovate")


def migrate_cmd(stack: str, output: Path, force: bool) -> None:
    """Write the Phase 0 migration aids: PORTS.md, MIGRATION.md and the data-safe volume
    scripts (check-legacy-volumes.sh, migrate-VOLUME.sh)."""
    from exports import migration

    _write(lambda d: migration.render(_resolved(stack), d), output, force, "migrate")


def backup_cmd(stack: str, init: bool, snapshots: bool, limit_upload: int | None) -> None:
    """Take a backup now (what its schedule does every interval): on Docker in the stack's
    backup container, one restic snapshot of every database, Redis, the buckets and every
    stateful volume; on Kubernetes a Job from each of the backup's CronJobs (the servers' and
    one per claim, a snapshot each). --init creates the repository (once); --snapshots lists
    what it holds."""
    from ops.docker_backup import OpsError

    resolved = _resolved(stack)
    args = ["init"] if init else ["snapshots"] if snapshots else [
        "run", *(["--limit-upload", str(limit_upload)] if limit_upload else [])]
    try:
        code = _backup_ops(resolved).backup(*args)
    except OpsError as exc:
        raise _fail([f"backup: {exc}"], exc.code) from None
    if code:
        raise SystemExit(code)


def _backup_ops(resolved: ResolvedEstate) -> Any:
    """The backup and restore of the stack's target."""
    if resolved.target == "kubernetes":
        from ops.kube_backup import KubeBackup

        return KubeBackup(resolved, _say)
    from ops.docker_backup import DockerBackup

    return DockerBackup(resolved, _say)


def restore_cmd(stack: str, services: list[str], snapshot: str | None, from_stack: str | None,
                force: bool, dry_run: bool, limit_download: int | None) -> None:
    """Restore a snapshot (default: the stack's latest) of the given services (default: all)
    and verify it: each database's tables and row counts, Redis's keys, every bucket's objects,
    each volume's files and checksums. A non-empty target is refused, nothing changed, unless
    --force; the services an item needs stopped are stopped, and started again afterwards. An
    interrupted restore can be run again (without --force) and leaves the repository as it
    was. Exit 0 restored and verified, 1 a step failed or something differs, 2 refused."""
    from ops.docker_backup import OpsError

    resolved = _resolved(stack)
    try:
        ops = _backup_ops(resolved)
        if limit_download and resolved.target == "kubernetes":
            raise OpsError("--limit-download: on Docker only", 2)
        code = ops.restore(services, snapshot, from_stack, force, dry_run,
                           *([limit_download] if limit_download else []))
    except OpsError as exc:
        raise _fail([f"restore: {exc}"], exc.code) from None
    if code:
        raise SystemExit(code)


def move_cmd(services: list[str], source: str, target: str, force: bool, dry_run: bool,
             carry_secrets: bool) -> None:
    """Move services' data (default: all) from a Docker stack to a Kubernetes stack, the
    Phase 1 move: check that the secrets the data needs match on both stacks and that the
    cluster's targets are empty (unless --force), stop the writers on Docker, take a final
    backup, restore it into the cluster and verify it; each step's time and the downtime are
    printed. The Docker side stays stopped with its volumes as they were. --carry-secrets sets
    the differing secrets in the target stack's Pulumi config (`pulumi up` deploys them).
    Exit 0 moved and verified, 1 a step failed, 2 refused (nothing stopped)."""
    from ops.docker_backup import OpsError
    from ops.move import Move

    try:
        move = Move(_resolved(source), _resolved(target), _say)
        code = move.carry_secrets(services, target) if carry_secrets else \
            move.run(services, force, dry_run)
    except OpsError as exc:
        raise _fail([f"move: {exc}"], exc.code) from None
    if code:
        raise SystemExit(code)


def _write(render: Callable[[Path], object], output: Path, force: bool, stage: str,
           stderr: bool = False) -> None:
    """Render into `output`, where manacore owns what it wrote: stale files of the last render
    of this kind (`stage` without "render") go, foreign files are refused."""
    option = "--images" if stage == "graph pictures" else "--out"
    with _reported(stage):
        usable_dir(output, option)  # before resolving: a wrong --out is reported first
        written, removed = write_managed(output, render, force=force, option=option,
                                         kind=stage.removeprefix("render ").replace(" ", "-"))
    for path in written:
        _say(f"wrote {path}", stderr)
    for path in removed:
        _say(f"removed {path} (no longer rendered)", stderr)


def render_cmd(kind: str, stack: str, output: Path, force: bool) -> None:
    _write(lambda d: renderer(kind)(_resolved(stack), d), output, force, f"render {kind}")


# --- the command line -----------------------------------------------------------------------

DEFAULT_STACK = "macmini"  # of the commands that are not about an export
STACK_HELP = "stack name (Pulumi.STACK.yaml)"
FORCE_HELP = "write even into a directory holding files manacore did not write (they are left " \
    "alone)"


class _Parser(argparse.ArgumentParser):
    """argparse with the text shown as written, and a usage error as one line and exit 2."""

    def __init__(self, **kwargs) -> None:
        super().__init__(formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        raise _fail([f"{self.prog}: {message}"], 2)


def _command(commands: argparse._SubParsersAction, name: str, run: Callable,
             doc: str | None) -> argparse.ArgumentParser:
    text = (doc or "").strip()
    parser = commands.add_parser(name, help=text.split("\n\n")[0].replace("\n", " "),
                                 description=text)
    parser.set_defaults(run=run)
    return parser


def _stack(parser: argparse.ArgumentParser, default: str = DEFAULT_STACK) -> None:
    parser.add_argument("--stack", "-s", default=default, metavar="STACK",
                        help=f"{STACK_HELP}; default: %(default)s")


def _out(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--out", dest="output", type=Path, default=Path(default), metavar="DIR",
                        help="directory to write into; default: %(default)s")
    _force(parser)


def _force(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help=FORCE_HELP)


def parser() -> argparse.ArgumentParser:
    """Every command and option, each calling its `*_cmd` function."""
    top = _Parser(prog="manacore", description=__doc__)
    commands = top.add_subparsers(metavar="COMMAND", title="commands", parser_class=_Parser)

    p = _command(commands, "validate", lambda a: validate_cmd(a.stack), validate_cmd.__doc__)
    p.add_argument("--stack", "-s", action="append", metavar="STACK",
                   help="stack to check (repeatable); default: every Pulumi.STACK.yaml")
    p = _command(commands, "ports", lambda a: ports_cmd(a.stack), ports_cmd.__doc__)
    _stack(p)
    p = _command(commands, "graph", lambda a: graph_cmd(a.stack, a.output, a.images, a.fmt,
                                                          a.force), graph_cmd.__doc__)
    _stack(p)
    p.add_argument("--out", dest="output", type=Path, metavar="FILE",
                   help="write the Mermaid here, and the pictures beside it")
    p.add_argument("--images", type=Path, metavar="DIR",
                   help="write the pictures (dependencies.<fmt>, ports.<fmt>) into this "
                   "directory; default: beside --out")
    p.add_argument("--format", dest="fmt", default="svg", metavar="FORMAT",
                   help="picture format: svg or png; default: %(default)s")
    _force(p)
    p = _command(commands, "budget", lambda a: budget_cmd(a.stack), budget_cmd.__doc__)
    _stack(p)
    p = _command(commands, "images", lambda a: images_cmd(a.today), images_cmd.__doc__)
    p.add_argument("--today", metavar="YYYY-MM-DD",
                   help="the day to measure the checks' age against; default: today")
    p = _command(commands, "migrate", lambda a: migrate_cmd(a.stack, a.output, a.force),
                 migrate_cmd.__doc__)
    _stack(p)
    _out(p, "migration")

    p = _command(commands, "backup", lambda a: backup_cmd(a.stack, a.init, a.snapshots,
                                                          a.limit_upload), backup_cmd.__doc__)
    _stack(p)
    p.add_argument("--init", action="store_true", help="create the repository (once)")
    p.add_argument("--snapshots", action="store_true", help="list the stack's snapshots")
    p.add_argument("--limit-upload", type=int, metavar="KIB", help="upload at most KiB/s")
    p = _command(commands, "restore", lambda a: restore_cmd(
        a.stack, a.services, a.snapshot, a.from_stack, a.force, a.dry_run, a.limit_download),
        restore_cmd.__doc__)
    _stack(p)
    p.add_argument("services", nargs="*", metavar="SERVICE",
                   help="services whose data to restore (postgres: the roles and every "
                   "database); default: all")
    p.add_argument("--snapshot", metavar="ID", help="restic snapshot id; default: the latest")
    p.add_argument("--from-stack", metavar="STACK", help="restore a snapshot another stack "
                   "took (the Phase 1 move); default: this stack's")
    p.add_argument("--force", action="store_true", help="replace what a target holds")
    p.add_argument("--dry-run", action="store_true", help="check the snapshot and the targets "
                   "only; stop and change nothing")
    p.add_argument("--limit-download", type=int, metavar="KIB", help="read at most KiB/s")
    p = _command(commands, "move", lambda a: move_cmd(
        a.services, a.source, a.target, a.force, a.dry_run, a.carry_secrets), move_cmd.__doc__)
    p.add_argument("services", nargs="*", metavar="SERVICE",
                   help="services whose data moves (postgres: the roles and every database); "
                   "default: all")
    p.add_argument("--from", dest="source", default="macmini", metavar="STACK",
                   help="the Docker stack the data leaves; default: %(default)s")
    p.add_argument("--to", dest="target", default="k3s", metavar="STACK",
                   help="the Kubernetes stack it moves to; default: %(default)s")
    p.add_argument("--force", action="store_true", help="replace what the cluster's targets "
                   "hold")
    p.add_argument("--dry-run", action="store_true", help="the checks only; stop nothing")
    p.add_argument("--carry-secrets", action="store_true", help="set the secrets the data "
                   "needs in the target stack's Pulumi config (from the Docker containers)")

    render = _command(commands, "render", None, "Write an export of the estate for a stack.")
    render.set_defaults(help_of=render)
    kinds = render.add_subparsers(metavar="KIND", title="exports", parser_class=_Parser)
    for kind, export in RENDERERS.items():
        p = _command(kinds, kind, lambda a, kind=kind: render_cmd(kind, a.stack, a.output,
                                                                  a.force),
                     f"Write {export.summary}.")
        _stack(p, export.stack)
        _out(p, "out")
    return top


def run(argv: list[str]) -> int:
    """Run one command line; its exit code (0 good, 1 a rule broken, 2 unusable input)."""
    top = parser()
    try:
        args = top.parse_args(argv)
        if getattr(args, "run", None) is None:  # no command (or `render` without a kind)
            getattr(args, "help_of", top).print_help(sys.stderr)
            return 2
        args.run(args)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
