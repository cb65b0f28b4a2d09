"""Reading the estate's pods on the suite's real nodes: which pod plays a service, running a
command in it, what its stand-in reports, when it became Ready, and a server standing for the
internet on the nodes' network.

Names, ports and hosts come from the resolved model (`catalog.resolve`), never retyped."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

from catalog.resolve import ResolvedService
from catalog.settings import ROOT
from tests.realengine.conftest import Cluster

T = TypeVar("T")


def until(what: str, check: Callable[[], T], timeout: float = 120, every: float = 1) -> T:
    """Polls `check()` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(every)


def when(stamp: str) -> float:
    """A Kubernetes timestamp (RFC 3339, seconds) as a POSIX time."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def instance_pods(cluster: Cluster, instance: str) -> list[dict[str, Any]]:
    """Every pod of an install of the estate (its `app.kubernetes.io/instance`)."""
    return cluster.items("pods", "-A", "-l", f"app.kubernetes.io/instance={instance}")


def pods_of(cluster: Cluster, s: ResolvedService, instance: str,
            namespace: str | None = None) -> list[dict[str, Any]]:
    """The pods playing service `s` (its selector labels), Ready ones first."""
    items = cluster.items("pods", "-n", namespace or s.namespace, "-l",
                          f"app.kubernetes.io/name={s.name},app.kubernetes.io/instance={instance}")
    return sorted(items, key=lambda p: not ready(p))


def ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in pod["status"].get("conditions", []))


def ready_since(pod: dict[str, Any]) -> float:
    """When the pod last became Ready."""
    return when(next(c["lastTransitionTime"] for c in pod["status"]["conditions"]
                     if c["type"] == "Ready" and c["status"] == "True"))


def restarts(pod: dict[str, Any]) -> int:
    return sum(c.get("restartCount", 0) for c in pod["status"].get("containerStatuses", []))


def restarted(pods: list[dict[str, Any]]) -> list[str]:
    """Each container that restarted, with how its last run ended (an assertion's message)."""
    return [f"{key(p)}/{c['name']}: {c['restartCount']}x, last "
            f"{json.dumps(c.get('lastState', {}).get('terminated', {}))[:300]}"
            for p in pods for c in p["status"].get("containerStatuses", [])
            if c.get("restartCount")]


def key(pod: dict[str, Any]) -> str:
    return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"


def exec_in(cluster: Cluster, pod: dict[str, Any], *command: str, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`kubectl exec` in the pod's main container (the first)."""
    container = pod["spec"]["containers"][0]["name"]
    return cluster.kubectl("exec", "-n", pod["metadata"]["namespace"], pod["metadata"]["name"],
                           "-c", container, "--", *command, check=check, timeout=timeout)


def can_connect(cluster: Cluster, pod: dict[str, Any], host: str, port: int,
                seconds: int = 4) -> bool:
    """Whether a TCP connection from the pod to host:port opens: bash's /dev/tcp (the
    harness's images have bash; BusyBox's nc in Debian's builds lacks -z). A refused, reset
    or silently dropped connection is False; a missing tool fails the test."""
    proc = exec_in(cluster, pod, "timeout", str(seconds), "bash", "-c",
                   f"exec 3<>/dev/tcp/{host}/{port}", check=False, timeout=seconds + 30)
    if proc.returncode not in (0, 1, 124):  # 124: timed out (dropped packets)
        raise AssertionError(f"connecting from {key(pod)} exited {proc.returncode}: "
                             f"{proc.stderr}")
    return proc.returncode == 0


def standin_report(cluster: Cluster, pod: dict[str, Any]) -> dict[str, Any]:
    return json.loads(exec_in(cluster, pod, "standin", "report").stdout)


def main_container_started(pod: dict[str, Any]) -> float:
    status = pod["status"]["containerStatuses"][0]
    state = status["state"].get("running") or status.get("lastState", {}).get("terminated")
    return when(state["startedAt"])


def node_of(pod: dict[str, Any]) -> str:
    return pod["spec"]["nodeName"]


def cluster_fact(name: str) -> str:
    """A fact of the test cluster's network (harness/cluster/env.sh), e.g. BRIDGE."""
    return subprocess.run(["bash", "-c", f'source harness/cluster/env.sh; echo "${name}"'],
                          cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


INTERNET_NS = "manacore-internet"
INTERNET_IP = "203.0.113.10"  # TEST-NET-3 (RFC 5737): public to the estate's rules, never routed


@contextmanager
def internet_server() -> Iterator[str]:
    """A web server standing for "the internet": in a network namespace of its own on the
    nodes' bridge, at a TEST-NET-3 address, which the estate's rules treat as public (nothing
    outside this host is ever contacted). Yields its URL."""
    bridge, veth = cluster_fact("BRIDGE"), "mcinet0"

    def ip(*args: str, check: bool = True) -> None:
        subprocess.run(["ip", *args], check=check, capture_output=True)

    ip("netns", "delete", INTERNET_NS, check=False)
    ip("netns", "add", INTERNET_NS)
    server = None
    try:
        ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", INTERNET_NS)
        ip("link", "set", veth, "master", bridge, "up")
        for args in (("link", "set", "lo", "up"), ("addr", "add", f"{INTERNET_IP}/24", "dev",
                                                   "eth0"),
                     ("link", "set", "eth0", "up"), ("route", "add", "default", "dev", "eth0")):
            ip("-n", INTERNET_NS, *args)
        server = subprocess.Popen(["ip", "netns", "exec", INTERNET_NS, "python3", "-m",
                                   "http.server", "80", "--bind", INTERNET_IP],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        until("the internet server listening", lambda: subprocess.run(
            ["ip", "netns", "exec", INTERNET_NS, "python3", "-c",
             f"import socket; socket.create_connection(('{INTERNET_IP}', 80), 1)"],
            capture_output=True).returncode == 0, timeout=20)
        yield f"http://{INTERNET_IP}/"
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        ip("link", "delete", veth, check=False)
        ip("netns", "delete", INTERNET_NS, check=False)
