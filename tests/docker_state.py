"""What the docker provider keeps in its state for a container, and what its next plan makes of it.

Stack macmini's containers are `docker:index/container:Container` resources of pulumi-docker 5.2,
bridged from kreuzwerker/terraform-provider-docker v4.5.0 (the commit pulumi-docker's `upstream`
submodule pins). Its Read (`resourceDockerContainerRead` in
internal/provider/resource_docker_container_funcs.go) refreshes the state from `docker inspect`
after every create and on `pulumi refresh`; the next plan compares that state with the program's
inputs, and a difference in a ForceNew field replaces the container (the schema in
internal/provider/resource_docker_container.go; pulumi-docker marks containers
delete-before-replace). Mirrored here, in Pulumi's property names, for what the docker adapter
sets and the defaults it relies on:

- `reported(inspect)`: the state Read makes of a container's `docker inspect`;
- `engine_inspect(inputs)`: what Docker Engine 26 stores for the provider's create request
  (capabilities, memory+swap, durations …), so the mock tests refresh a state without an engine;
  the real-engine suite checks this model against the engine itself;
- `differences(state, inputs)` and `plan(...)`: "same", "update" or "replace", and why.

The real-engine suite applies `reported` to the containers Compose started from the same
catalogue (tests/realengine/test_compose_estate.py, test_fresh_install.py): what the engine
reports must be what the adapter registers, field by field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MIB = 2**20
SECOND = 10**9  # the engine keeps durations in nanoseconds


@dataclass(frozen=True)
class Field:
    """How the provider treats one container property."""

    force_new: bool  # a change replaces the container
    kind: str = "scalar"  # "scalar" | "list" (ordered) | "set" (order-free) | "object"
    computed: bool = False  # an absent input keeps whatever the state holds
    default: Any = None  # what the provider assumes for an absent input


# Read refreshes these from the engine (resource_docker_container.go / _funcs.go, v4.5.0)
READ_BACK: dict[str, Field] = {
    "name": Field(True),
    "image": Field(True),
    "command": Field(True, "list", computed=True),
    "ports": Field(True, "list"),  # read back in the engine's order (by internal port)
    "healthcheck": Field(False, "object", computed=True),  # durations as Go prints them
    "restart": Field(False, default="no"),
    "maxRetryCount": Field(False, default=0),
    "stopTimeout": Field(True, computed=True),
    "securityOpts": Field(True, "set", computed=True),
    "capabilities": Field(True, "object"),  # the engine's spelling: CAP_CHOWN
    "memory": Field(False, default=0),
    "memorySwap": Field(False, default=0),  # what the engine picked when left unset
    "memoryReservation": Field(False, default=0),
    "mounts": Field(True, "set"),
    "hosts": Field(True, "set"),
    "networkMode": Field(True, default="bridge"),
    "readOnly": Field(True, default=False),
    "privileged": Field(True, default=False),
    "publishAllPorts": Field(True, default=False),
    "rm": Field(False, default=False),
    "tty": Field(True, default=False),
    "stdinOpen": Field(True, default=False),
    "domainname": Field(True, default=""),
    "dns": Field(True, "set"),
    "dnsOpts": Field(True, "set"),
    "dnsSearches": Field(True, "set"),
    "groupAdds": Field(True, "set"),
    "sysctls": Field(True, "object"),
    "tmpfs": Field(False, "object"),
    "storageOpts": Field(True, "object"),
    "usernsMode": Field(True, default=""),
}
# Never read back: the state keeps the program's inputs (env and labels merge the image's own;
# uploads, networks and the wait settings are the provider's to remember). The real-engine
# suite checks them against the engine separately.
KEPT = ("envs", "labels", "uploads", "networksAdvanced", "wait", "waitTimeout", "attach",
        "mustRun", "destroyGraceSeconds")


# --- the provider's Read ------------------------------------------------------------------


def go_duration(nanoseconds: int) -> str:
    """Go's `time.Duration.String()` for whole seconds, as Read writes every health duration."""
    if nanoseconds % SECOND:
        raise ValueError(f"not whole seconds: {nanoseconds} ns")
    hours, rest = divmod(nanoseconds // SECOND, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    return f"{minutes}m{seconds}s" if minutes else f"{seconds}s"


def parse_duration(text: str) -> int:
    """Nanoseconds of a Go duration ("90s", "1m30s", "2s"): what the provider sends."""
    total, number, units = 0, "", {"h": 3600, "m": 60, "s": 1}
    for char in text:
        if char.isdigit():
            number += char
        elif char in units and number:
            total, number = total + int(number) * units[char] * SECOND, ""
        else:
            raise ValueError(f"not a whole-second Go duration: {text!r}")
    if number:
        raise ValueError(f"a duration without a unit: {text!r}")
    return total


def _host_entry(line: str) -> dict[str, str]:
    """One ExtraHosts line. The provider writes and reads `host:ip`; Compose writes `host=ip`
    (Engine >= 25 reads both), which the provider's Read would split on ':' alone."""
    host, _, ip = line.partition("=") if "=" in line else line.partition(":")
    return {"host": host, "ip": ip}


def reported(inspect: dict[str, Any]) -> dict[str, Any]:
    """The state the provider's Read makes of `docker inspect <container>` (READ_BACK)."""
    config, host = inspect["Config"], inspect["HostConfig"]
    ports = (inspect.get("NetworkSettings") or {}).get("Ports") or {}
    check = config.get("Healthcheck")
    swap = host.get("MemorySwap") or 0
    state: dict[str, Any] = {
        "name": inspect["Name"].lstrip("/"),
        "image": inspect["Image"],
        "command": config.get("Cmd"),
        "ports": [{"internal": int(key.split("/")[0]), "external": int(b["HostPort"]),
                   "ip": b["HostIp"], "protocol": key.split("/")[1]}
                  for key in sorted(ports, key=lambda k: int(k.split("/")[0]))
                  for b in ports[key] or []],
        "healthcheck": check and {
            "tests": check.get("Test"), "retries": check.get("Retries", 0),
            **{name: go_duration(check.get(key, 0)) for name, key in (
                ("interval", "Interval"), ("timeout", "Timeout"),
                ("startPeriod", "StartPeriod"), ("startInterval", "StartInterval"))}},
        "restart": host["RestartPolicy"]["Name"],
        "maxRetryCount": host["RestartPolicy"].get("MaximumRetryCount", 0),
        "stopTimeout": config.get("StopTimeout"),
        "securityOpts": host.get("SecurityOpt") or [],
        "capabilities": {"adds": host.get("CapAdd") or [], "drops": host.get("CapDrop") or []}
        if host.get("CapAdd") or host.get("CapDrop") else None,
        "memory": (host.get("Memory") or 0) // MIB,
        "memorySwap": swap // MIB if swap > 0 else swap,
        "memoryReservation": (host.get("MemoryReservation") or 0) // MIB,
        "mounts": [_mount(m) for m in host.get("Mounts") or []],
        "hosts": [_host_entry(h) for h in host.get("ExtraHosts") or []],
        "networkMode": host.get("NetworkMode"),
        "readOnly": host.get("ReadonlyRootfs", False),
        "privileged": host.get("Privileged", False),
        "publishAllPorts": host.get("PublishAllPorts", False),
        "rm": host.get("AutoRemove", False),
        "tty": config.get("Tty", False),
        "stdinOpen": config.get("OpenStdin", False),
        "domainname": config.get("Domainname", ""),
        "dns": host.get("Dns") or [],
        "dnsOpts": host.get("DnsOptions") or [],
        "dnsSearches": host.get("DnsSearch") or [],
        "groupAdds": host.get("GroupAdd") or [],
        "sysctls": host.get("Sysctls") or {},
        "tmpfs": host.get("Tmpfs") or {},
        "storageOpts": host.get("StorageOpt") or {},
        "usernsMode": host.get("UsernsMode", ""),
    }
    return state


def _mount(m: dict[str, Any]) -> dict[str, Any]:
    """getDockerContainerMounts: type, source, target, read-only and the options given."""
    out: dict[str, Any] = {"type": m["Type"], "source": m.get("Source", ""),
                           "target": m["Target"], "readOnly": m.get("ReadOnly", False)}
    if m.get("BindOptions") is not None:
        out["bindOptions"] = {"propagation": m["BindOptions"].get("Propagation", "")}
    if m.get("VolumeOptions") is not None:
        options = m["VolumeOptions"]
        out["volumeOptions"] = {"noCopy": options.get("NoCopy", False),
                                "labels": [{"label": k, "value": v} for k, v in
                                           (options.get("Labels") or {}).items()],
                                "subpath": options.get("Subpath", "")}
    return out


# --- Docker Engine 26 storing the provider's create request --------------------------------


def capability(name: str) -> str:
    """moby's `caps.NormalizeLegacyCapabilities`: upper case, `CAP_` prefix, `ALL` as it is."""
    name = name.upper()
    return name if name == "ALL" or name.startswith("CAP_") else f"CAP_{name}"


def engine_inspect(inputs: dict[str, Any], *, swap_accounting: bool = True) -> dict[str, Any]:
    """What `docker inspect` shows for a container the provider created from `inputs` (Pulumi
    property names, plain values): the request as the provider's Create builds it, as the
    engine stores it. The engine's own rewrites: capabilities spelled `CAP_…`; memory+swap
    twice the memory when unset (moby daemon_unix.go adaptContainerSettings), -1 on a host
    without swap accounting; durations in nanoseconds; published ports keyed `port/proto`."""
    memory = int(inputs.get("memory") or 0) * MIB
    swap = int(inputs.get("memorySwap") or 0)
    swap = swap * MIB if swap > 0 else swap
    if memory and not swap:
        swap = 2 * memory
    if swap and not swap_accounting:
        swap = -1
    caps = inputs.get("capabilities") or {}
    check = inputs.get("healthcheck")
    ports: dict[str, list[dict[str, str]]] = {}
    for p in inputs.get("ports") or []:
        ports.setdefault(f"{int(p['internal'])}/{p.get('protocol', 'tcp')}", []).append(
            {"HostIp": p.get("ip", "0.0.0.0"), "HostPort": str(int(p["external"]))})
    config = {
        "Cmd": list(inputs["command"]) if inputs.get("command") else None,
        "Healthcheck": check and {
            "Test": list(check["tests"]), "Retries": int(check.get("retries", 0)),
            **{key: parse_duration(check.get(name, "0s")) for name, key in (
                ("interval", "Interval"), ("timeout", "Timeout"),
                ("startPeriod", "StartPeriod"), ("startInterval", "StartInterval"))}},
        "StopTimeout": int(inputs["stopTimeout"]) if inputs.get("stopTimeout") else None,
        "Tty": False, "OpenStdin": False, "Domainname": "",
    }
    host = {
        "RestartPolicy": {"Name": inputs.get("restart", "no"), "MaximumRetryCount": 0},
        "SecurityOpt": list(inputs.get("securityOpts") or []) or None,
        "CapAdd": [capability(c) for c in caps.get("adds") or []] or None,
        "CapDrop": [capability(c) for c in caps.get("drops") or []] or None,
        "Memory": memory, "MemorySwap": swap, "MemoryReservation": 0,
        "Mounts": [_engine_mount(m) for m in inputs.get("mounts") or []],
        "ExtraHosts": [f"{h['host']}:{h['ip']}" for h in inputs.get("hosts") or []] or None,
        "NetworkMode": inputs.get("networkMode", "bridge"),
        "ReadonlyRootfs": False, "Privileged": False, "PublishAllPorts": False,
        "AutoRemove": False, "UsernsMode": "",
    }
    return {"Name": "/" + inputs["name"], "Image": inputs["image"], "Config": config,
            "HostConfig": host, "NetworkSettings": {"Ports": ports}}


def _engine_mount(m: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"Type": m["type"], "Source": m.get("source", ""),
                           "Target": m["target"], "ReadOnly": bool(m.get("readOnly"))}
    if m["type"] == "volume" and m.get("volumeOptions"):
        options = m["volumeOptions"]
        out["VolumeOptions"] = {"NoCopy": bool(options.get("noCopy")), "Labels": {},
                                "Subpath": options.get("subpath", "")}
    if m["type"] == "bind" and m.get("bindOptions"):
        out["BindOptions"] = {"Propagation": m["bindOptions"].get("propagation", "")}
    return out


# --- the plan ----------------------------------------------------------------------------


def _zero(value: Any) -> bool:
    return value in (None, False, 0, "", [], {})


def canonical(value: Any, kind: str = "scalar") -> Any:
    """A value as the provider compares it: numbers whole, zero values (false, 0, "", empty)
    the same as absent (Terraform's SDK), set elements in any order."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, dict):
        out = {k: canonical(v, "set" if isinstance(v, list) and k in _NESTED_SETS else "list")
               for k, v in value.items()}
        return {k: v for k, v in sorted(out.items()) if not _zero(v)} or None
    if isinstance(value, list):
        items = [canonical(v) for v in value]
        if kind == "set":
            items = sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
        return items or None
    return None if _zero(value) else value


_NESTED_SETS = {"adds", "drops", "labels"}  # capabilities.add/drop, volume labels: TypeSet


def differences(state: dict[str, Any], inputs: dict[str, Any]
                ) -> dict[str, tuple[Any, Any]]:
    """Field → (registered, in the state) for every READ_BACK field the next plan sees
    changed. An absent Computed input keeps the state's value; an absent plain one means the
    provider's default."""
    found = {}
    for name, field in READ_BACK.items():
        if name not in inputs and field.computed:
            continue
        want = canonical(inputs.get(name, field.default), field.kind)
        have = canonical(state.get(name), field.kind)
        if want != have:
            found[name] = (want, have)
    return found


def plan(state: dict[str, Any], inputs: dict[str, Any]) -> tuple[str, list[str]]:
    """("same" | "update" | "replace", the fields that differ)."""
    changed = differences(state, inputs)
    if any(READ_BACK[name].force_new for name in changed):
        return "replace", sorted(changed)
    return ("update" if changed else "same"), sorted(changed)
