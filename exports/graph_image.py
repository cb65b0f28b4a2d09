"""Pictures for people: the dependency graph and the port map, drawn by Graphviz.

Both come from the resolved estate, like the Mermaid text and the port table (`exports.reports`):
the graph from each service's category, tier and hard/lazy needs, the port map from
`reports.port_map`. Graphviz's `dot` lays them out; the `graphviz` package only writes its input.
"""

from __future__ import annotations

from html import escape
from itertools import pairwise
from pathlib import Path
from typing import Literal

import graphviz

from catalog.resolve import ResolvedEstate, ResolvedService
from exports import reports

Format = Literal["svg", "png"]
FORMATS: tuple[Format, ...] = ("svg", "png")
FONT = "Helvetica"
HARD_EDGE = {"style": "solid", "color": "#1f2937", "penwidth": "1.6", "arrowhead": "normal"}
LAZY_EDGE = {"style": "dashed", "color": "#6b7280", "penwidth": "1.1", "arrowhead": "empty"}
# One soft colour per category, so a group reads as one block.
FILL: dict[str, str] = {
    "infra": "#fde2e1", "core": "#fff1c7", "app": "#dcf3e0", "matrix": "#e3e6fd",
    "mon": "#f1e0fa", "tools": "#dff3f8", "native": "#ececec",
}
RANGE_FILL = ("#fde2e1", "#fff1c7", "#e3e6fd", "#dcf3e0", "#dff3f8", "#f1e0fa", "#fde2e1",
              "#ececec")


def _published(svc: ResolvedService) -> str:
    ports = [f":{p.published}" for p in svc.ports if p.published is not None]
    return " ".join(ports) if ports else "not published"


def dependency_graph(estate: ResolvedEstate) -> graphviz.Digraph:
    """Arrows from a service to what it needs, solid when it waits for health (hard), dashed
    when it only retries (lazy); one column per startup tier, colour by category."""
    s = estate.settings
    graph = graphviz.Digraph(
        "dependencies",
        graph_attr={"rankdir": "LR", "splines": "spline", "nodesep": "0.18", "ranksep": "1.1",
                    "fontname": FONT, "fontsize": "20", "labelloc": "t", "pad": "0.3",
                    "label": f"ManaCore dependencies · stack {s.stack} ({s.target})\n"
                             "solid arrow: hard, starts after the target is healthy · "
                             "dashed arrow: lazy, connects later and retries\n"
                             "columns: startup tiers, the last to start on the left",
                    "bgcolor": "white", "newrank": "true"},
        node_attr={"shape": "box", "style": "rounded,filled", "fontname": FONT,
                   "fontsize": "12", "margin": "0.12,0.05", "color": "#4b5563"},
        edge_attr={"fontname": FONT})
    present = {svc.id for svc in estate.services}
    for tier in sorted({svc.tier for svc in estate.services}, reverse=True):
        with graph.subgraph(name=f"tier_{tier}") as column:  # one column per startup tier
            column.attr(rank="same")
            for svc in estate.services:
                if svc.tier == tier:
                    column.node(svc.id, f"{svc.id}\n{svc.category} · tier {tier} · "
                                f"{_published(svc)}", fillcolor=FILL.get(svc.category,
                                                                          "#f5f5f5"))
    for svc in estate.services:
        for target in svc.hard:
            if target in present:
                graph.edge(svc.id, target, **HARD_EDGE)
        for target in svc.lazy:
            if target in present:
                graph.edge(svc.id, target, **LAZY_EDGE)
    return graph


def _block_label(block: reports.PortBlock, fill: str) -> str:
    """One range of the port map as an HTML-like Graphviz table."""
    rows = [f'<tr><td colspan="4" bgcolor="{fill}"><b>{block.first}-{block.last}</b>  '
            f"{escape(block.label)}</td></tr>",
            '<tr><td><b>port</b></td><td><b>service</b></td><td><b>name</b></td>'
            "<td><b>legacy</b></td></tr>"]
    for row in block.rows:
        reserved = row.service == "(reserved)"
        cells = [str(row.port), row.service, row.name, row.legacy]
        text = "".join(f'<td align="left">{"<i>" if reserved else ""}{escape(c)}'
                       f'{"</i>" if reserved else ""}</td>' for c in cells)
        rows.append(f'<tr>{text}</tr>')
    summary = f"{len(block.rows) - len(block.reserved)} used, {len(block.reserved)} reserved, " \
              f"{block.free} free"
    if block.next_free:
        summary += "; next free: " + ", ".join(map(str, block.next_free))
    rows.append(f'<tr><td colspan="4" align="left"><font point-size="10">{escape(summary)}'
                "</font></td></tr>")
    return ('<<table border="0" cellborder="1" cellspacing="0" cellpadding="4" '
            f'color="#9ca3af">{"".join(rows)}</table>>')


def port_map_graph(estate: ResolvedEstate, *, columns: int = 4) -> graphviz.Digraph:
    """The port map (`reports.port_map`): one table per range, `columns` tables a row."""
    s = estate.settings
    graph = graphviz.Digraph(
        "ports",
        graph_attr={"rankdir": "TB", "fontname": FONT, "fontsize": "20", "labelloc": "t",
                    "label": f"ManaCore port map · stack {s.stack} ({s.target})"
                             + (" · published on 127.0.0.1 only" if s.target == "docker"
                                else ""), "nodesep": "0.4", "ranksep": "0.4",
                    "pad": "0.3", "bgcolor": "white", "newrank": "true"},
        node_attr={"shape": "plain", "fontname": FONT, "fontsize": "11"})
    blocks = [b for b in reports.port_map(estate) if b.rows]
    names = [f"range_{b.first}" for b in blocks]
    for index, (name, block) in enumerate(zip(names, blocks, strict=True)):
        graph.node(name, _block_label(block, RANGE_FILL[index % len(RANGE_FILL)]))
    for start in range(0, len(names), columns):
        row = names[start:start + columns]
        with graph.subgraph() as same:
            same.attr(rank="same")
            for name in row:
                same.node(name)
        for left, right in pairwise(row):  # keep ranges in order
            graph.edge(left, right, style="invis")
        if start:  # stack the rows
            graph.edge(names[start - columns], row[0], style="invis")
    return graph


def write_images(estate: ResolvedEstate, out_dir: Path, fmt: Format = "svg") -> list[Path]:
    """`dependencies.<fmt>` and `ports.<fmt>` in `out_dir`; raises `graphviz.ExecutableNotFound`
    when Graphviz's `dot` is not installed."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: use one of {', '.join(FORMATS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, graph in (("dependencies", dependency_graph(estate)),
                        ("ports", port_map_graph(estate))):
        path = out_dir / f"{stem}.{fmt}"
        path.write_bytes(graph.pipe(format=fmt, engine="dot"))
        written.append(path)
    return written
