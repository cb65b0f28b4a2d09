"""Reports for people: the port map, the dependency graph, the memory budget."""

from __future__ import annotations

import re
from typing import NamedTuple

from catalog.backup import pods
from catalog.resolve import ResolvedEstate, ResolvedService
from catalog.rules import Violation
from catalog.schema import PORT_RANGES, WELL_KNOWN_PORTS
from catalog.units import format_bytes

# The seed's estimates after the consolidation (GB), by the seed's own grouping.
SEED_ESTIMATE_GB: dict[str, float] = {
    "infrastructure": 1.5, "core": 0.8, "backends": 2.0, "frontends": 1.1, "matrix": 1.4,
    "monitoring": 1.5,
}


def budget_group(category: str, role: str) -> str:
    """The seed's grouping: apps split into backends and frontends; tools count as monitoring."""
    if category == "app":
        return "frontends" if role == "frontend" else "backends"
    return {"infra": "infrastructure", "core": "core", "matrix": "matrix",
            "mon": "monitoring", "tools": "monitoring"}[category]


class PortRow(NamedTuple):
    port: int
    service: str
    name: str
    legacy: str  # legacy ports of the service, or a note for reserved slots


class PortBlock(NamedTuple):
    label: str
    first: int
    last: int
    rows: list[PortRow]
    reserved: list[int]
    free: int
    next_free: list[int]


def port_map(estate: ResolvedEstate, *, show_free: int = 5) -> list[PortBlock]:
    """Published ports grouped by range, with reserved slots and the next free ones."""
    reserved = estate.reserved_ports
    blocks: list[PortBlock] = []
    well_known = sorted({p for ports in WELL_KNOWN_PORTS.values() for p in ports})
    spans = [("well-known (loopback only)", well_known[0], well_known[-1], well_known)]
    spans += [(r.label, r.first, r.last, None) for r in PORT_RANGES]
    for label, first, last, only in spans:
        rows = sorted(
            PortRow(p.published, s.id, p.name, legacy_ports(s, p.name))
            for s in estate.services for p in s.ports
            if p.published is not None and first <= p.published <= last
            and (only is None or p.published in only))
        used = {r.port for r in rows}
        res = sorted(p for p in reserved if first <= p <= last)
        rows += [PortRow(p, "(reserved)", "-", reserved[p]) for p in res]
        candidates = only if only is not None else range(first, last + 1)
        free = [p for p in candidates if p not in used and p not in reserved]
        blocks.append(PortBlock(label, first, last, sorted(rows), res, len(free),
                                free[:show_free]))
    return blocks


def legacy_ports(svc: ResolvedService, port_name: str) -> str:
    """Legacy port(s) of one port: paired in order when the counts match (synapse 8008, 9002),
    all of them on the first port when services were merged (mana-bot)."""
    index = [p.name for p in svc.ports].index(port_name)
    legacy = svc.legacy.ports
    if len(legacy) == len(svc.ports):
        return str(legacy[index])
    return ", ".join(map(str, legacy)) if index == 0 and legacy else "-"


def _node(sid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", sid)


def mermaid(estate: ResolvedEstate) -> str:
    """A Mermaid flowchart: solid arrows wait for health (hard), dotted ones retry (lazy)."""
    lines = ["flowchart LR"]
    categories = sorted({s.category for s in estate.services})
    for category in categories:
        title = "native: macOS host" if category == "native" else category
        lines.append(f'  subgraph {category}["{title}"]')
        for s in estate.services:
            if s.category == category:
                lines.append(f'    {_node(s.id)}["{s.id}<br/>tier {s.tier}"]')
        lines.append("  end")
    for s in estate.services:
        lines += [f"  {_node(s.id)} --> {_node(d)}" for d in s.hard]
        lines += [f"  {_node(s.id)} -.-> {_node(d)}" for d in s.lazy]
    return "\n".join(lines) + "\n"


class BudgetLine(NamedTuple):
    group: str
    containers: int  # services
    pods: int  # what runs: every replica on Kubernetes, one container each on Docker
    limit_bytes: int  # the memory limits of all of them
    seed_gb: float


def budget(estate: ResolvedEstate) -> list[BudgetLine]:
    """Memory limits per seed group on this stack, against the seed's estimates. Every replica
    counts (Kubernetes reserves each pod's limit: requests = limits), and each of the backup's
    jobs, which run at once; a per-node daemon counts once, as on one node."""
    lines = []
    for group, seed_gb in SEED_ESTIMATE_GB.items():
        members = [s for s in estate.containers if budget_group(s.category, s.role) == group]
        running = [pods(s, estate.services, estate.target) for s in members]
        lines.append(BudgetLine(group, len(members), sum(running),
                                sum((s.memory or 0) * n for s, n in zip(members, running,
                                                                        strict=True)),
                                seed_gb))
    return lines


def budget_violations(estate: ResolvedEstate) -> list[Violation]:
    """The estate's memory limits against the stack's `memoryBudget`."""
    total = sum(line.limit_bytes for line in budget(estate))
    allowed = estate.settings.memory_budget_bytes
    if total <= allowed:
        return []
    return [Violation("settings", "memory-budget", f"stack {estate.settings.stack}: the estate "
                      f"needs {format_bytes(total)}, more than the host budget "
                      f"{estate.settings.memory_budget} ({format_bytes(allowed)}); raise "
                      "manacore:memoryBudget or lower memory limits")]
