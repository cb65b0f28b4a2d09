"""What a `pulumi` command spent its time on, from its `--otel-traces file://PATH` trace.

The CLI writes one JSON document of OpenTelemetry spans per line: the engine's gRPC calls to
the language host (the program registering resources) and to the provider (Check, Diff,
Create, Update, Delete), and its state writes (`gocloud.dev/blob.*`). The provider's own server
spans carry the request as text, so each provider call is attributed to the resource type of
its URN.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

URN_TYPES = re.compile(r"urn:pulumi:[^:]+::[^:]+::(.+?)::")  # parent$...$type
PROVIDER_CALLS = ("Check", "Diff", "Create", "Update", "Delete", "Read")


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    start: float
    end: float
    text: str  # the attributes' values, where the request is


def spans(path: Path) -> list[Span]:
    found = []
    for line in path.read_text().splitlines():
        for group in json.loads(line).get("resourceSpans", []):
            service = next((a["value"].get("stringValue", "") for a in
                            group["resource"].get("attributes", [])
                            if a["key"] == "service.name"), "")
            for scope in group.get("scopeSpans", []):
                for s in scope.get("spans", []):
                    text = " ".join(str(a["value"].get("stringValue", ""))
                                    for a in s.get("attributes", []))
                    found.append(Span(service, s["name"], int(s["startTimeUnixNano"]) / 1e9,
                                      int(s["endTimeUnixNano"]) / 1e9, text))
    return found


def summary(path: Path, top: int = 3) -> str:
    """One line: the program's registrations (first and last, from the command's start),
    provider time by call and resource type (the `top` largest), state writes."""
    found = spans(path)
    if not found:
        return "no trace"
    t0 = min(s.start for s in found)
    registers = sorted(s.start - t0 for s in found if s.service == "pulumi-cli"
                       and s.name.endswith("ResourceMonitor/RegisterResource"))
    by_call: dict[tuple[str, str], list[float]] = defaultdict(list)
    for s in found:
        call = s.name.rsplit("/", 1)[-1]
        if s.service != "pulumi-cli" and "ResourceProvider/" in s.name and call in \
                PROVIDER_CALLS:
            match = URN_TYPES.search(s.text)
            kind = match.group(1).rsplit("$", 1)[-1].rsplit(":", 1)[-1] if match else "?"
            by_call[(call, kind)].append(s.end - s.start)
    largest = sorted(by_call.items(), key=lambda kv: -sum(kv[1]))[:top]
    writes = [s.end - s.start for s in found if s.name == "gocloud.dev/blob.NewWriter"]
    program = (f"registrations {len(registers)} from {registers[0]:.1f} to {registers[-1]:.1f} s"
               if registers else "no registration")
    return (f"{program}; provider: " + ", ".join(
        f"{call} {kind} {sum(times):.1f} s ({len(times)}, max {max(times):.1f})"
        for (call, kind), times in largest) + f"; state writes {len(writes)} "
        f"({sum(writes):.1f} s)")
