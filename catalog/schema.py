"""The estate's conventions as data: port ranges per role, namespaces, startup classes."""

from __future__ import annotations

from typing import NamedTuple

from catalog.model import Category, Role


class PortRange(NamedTuple):
    key: str
    label: str
    first: int
    last: int
    roles: frozenset[str]

    def __contains__(self, number: object) -> bool:
        return isinstance(number, int) and self.first <= number <= self.last


PORT_RANGES: tuple[PortRange, ...] = (
    PortRange("3000", "core services, AI services and app backends", 3000, 3099,
              frozenset({"core", "gateway", "ai", "backend"})),
    PortRange("4000", "Matrix stack", 4000, 4099, frozenset({"matrix"})),
    PortRange("5000", "web frontends", 5000, 5099, frozenset({"frontend"})),
    PortRange("6000", "automation and workflows", 6000, 6099, frozenset({"automation"})),
    PortRange("8000", "monitoring dashboards", 8000, 8099, frozenset({"dashboard"})),
    PortRange("9000", "infrastructure and exporters", 9000, 9199,
              frozenset({"infra", "exporter"})),
    PortRange("11000", "native services", 11000, 65535, frozenset({"llm"})),
)

# PostgreSQL and Redis keep their well-known ports and are published on loopback only.
WELL_KNOWN_PORTS: dict[Role, tuple[int, ...]] = {"datastore": (5432, 6379)}


def allowed_ports(role: Role) -> str:
    """How the rule explains where a role's published ports belong."""
    if role in WELL_KNOWN_PORTS:
        return "one of " + ", ".join(map(str, WELL_KNOWN_PORTS[role]))
    ranges = [r for r in PORT_RANGES if role in r.roles]
    if not ranges:
        return "nothing (this role publishes no port)"
    return " or ".join(f"{r.first}-{r.last} ({r.label})" for r in ranges)


def port_allowed(role: Role, number: int) -> bool:
    if role in WELL_KNOWN_PORTS:
        return number in WELL_KNOWN_PORTS[role]
    return any(number in r for r in PORT_RANGES if role in r.roles)


def range_of(number: int) -> PortRange | None:
    return next((r for r in PORT_RANGES if number in r), None)


NAMESPACES: dict[Category, str] = {
    "infra": "manacore-infra",
    "core": "manacore-core",
    "app": "manacore-apps",
    "matrix": "manacore-matrix",
    "mon": "manacore-monitoring",
    "tools": "manacore-tools",
    "native": "manacore-core",  # selector-less Services next to the core services that use them
}

# Startup classes: a service may depend only on its own class or an earlier one, so that
# infra starts before core, core before the gateway, the gateway before backends, and
# backends before frontends. Roles outside these classes (Matrix, monitoring, tools, native)
# are ordered by the graph alone.
STARTUP_CLASSES: dict[Role, tuple[int, str]] = {
    "datastore": (1, "infra"),
    "infra": (1, "infra"),
    "core": (2, "core"),
    "gateway": (3, "gateway"),
    "backend": (4, "backends"),
    "frontend": (5, "frontends"),
}

# Retry settings every service with lazy dependencies gets (SPEC: Dependencies).
LAZY_RETRY_ENV: dict[str, str] = {"DB_RETRY_ATTEMPTS": "5", "DB_RETRY_DELAY": "3000"}
