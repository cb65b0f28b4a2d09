"""The real-engine harness is product code too: its scripts pass shellcheck, and the image
builder picks the right recipe and the ports a stand-in must answer on (no engine needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from catalog.settings import ROOT
from harness.images import (
    SERVERS,
    hard_hosts,
    listen_ports,
    probe_binaries,
    recipe_of,
    server_version,
    tag_version,
)
from tests.conftest import resolved

SHELLCHECK = Path(sys.executable).parent / "shellcheck"


def test_harness_scripts_pass_shellcheck() -> None:
    scripts = [*sorted((ROOT / "harness").glob("*.sh")),
               *sorted((ROOT / "harness" / "cluster").glob("*.sh")),
               *sorted((ROOT / "harness" / "images").glob("*/entrypoint.sh")),
               *sorted(p for p in (ROOT / "scripts").iterdir() if p.is_file()),
               ROOT / "test.sh", ROOT / "run.sh"]
    proc = subprocess.run([str(SHELLCHECK), "-x", *map(str, scripts)], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize(("ref", "recipe"), [
    ("pgvector/pgvector:0.8.6-pg16", "postgres"), ("postgres:17", "postgres"),
    ("redis:7.4.10-alpine", "redis"), ("busybox:1.38.0", "busybox"), ("alpine:3.24.1", "busybox"),
    ("ghcr.io/manacore/chat-backend:1", "standin"), ("grafana/grafana:13.2.3", "standin"),
    ("oliver006/redis_exporter:v1.97.0", "redis_exporter"),
    ("prom/node-exporter:v1.12.1", "node-exporter"), ("dxflrs/garage:v2.5.0", "garage"),
    ("rclone/rclone:1.76.0", "rclone"), ("minio/minio:RELEASE.2024-11-07T00-52-20Z", "minio"),
])
def test_each_reference_gets_the_closest_real_image(ref: str, recipe: str) -> None:
    assert recipe_of(ref) == recipe


def test_real_servers_run_the_pinned_release_wherever_a_registry_has_it() -> None:
    """Go servers from the module proxy, Garage from crates.io and Synapse from PyPI are built
    at the catalogue's tag; a server taken from Debian says why its pinned release cannot be
    built here."""
    refs = [s.image for s in resolved("macmini").containers
            if recipe_of(s.image) not in ("standin", "busybox")]
    pinned = {}
    for ref in refs:
        source, how = server_version(ref)
        pinned[recipe_of(ref)] = how
        if how == "pinned":
            assert source.endswith(tag_version(ref)), (ref, source)
        elif recipe_of(ref) in SERVERS:
            assert SERVERS[recipe_of(ref)].why, ref
    assert {k for k, v in pinned.items() if v == "pinned"} == {
        "garage", "node-exporter", "pushgateway", "redis_exporter", "synapse"}


def test_a_standin_listens_on_its_ports_health_check_and_command_addresses() -> None:
    service = {"ports": ["127.0.0.1:9110:8080"], "environment": {"PORT": "3001"},
               "healthcheck": {"test": ["CMD", "cloudflared", "tunnel", "--metrics",
                                        "127.0.0.1:2000", "ready"]},
               "command": ["tunnel", "--metrics", "0.0.0.0:2001", "run"]}
    assert listen_ports(service) == [2000, 2001, 3001, 8080]
    assert probe_binaries(service) == ["cloudflared"]
    shell = {"healthcheck": {"test": ["CMD-SHELL", "wget -qO /dev/null http://127.0.0.1:80/"]}}
    assert listen_ports(shell) == [80] and probe_binaries(shell) == []


def test_every_service_port_of_the_estate_is_answered() -> None:
    from exports.compose import to_compose
    estate = resolved("macmini")
    model = to_compose(estate)
    for s in estate.containers:
        want = {p.container for p in s.ports}
        assert want <= set(listen_ports(model["services"][s.id])), s.id


def test_a_standin_knows_its_hard_dependencies_by_container_and_kubernetes_name() -> None:
    """The same image plays a service on Docker (dependencies by container name) and on
    Kubernetes (by cluster DNS name, whose first label is the service id)."""
    from exports.compose import to_compose
    model = to_compose(resolved("macmini"))["services"]
    k3s = resolved("k3s")
    hosts = hard_hosts(model["auth"], model)
    for dep in ("postgres", "redis"):
        assert model[dep]["container_name"] in hosts
        assert k3s[dep].host.split(".")[0] in hosts


def test_a_server_without_entrypoint_gets_the_whole_argv_from_the_catalogue() -> None:
    """Garage's image has no ENTRYPOINT, only CMD [/garage, server]: the catalogue's command is
    the whole argv, and the harness's Garage must not put an entrypoint before it (the real
    engine showed `garage /garage server …`: "Found argument '/garage'")."""
    for s in resolved("macmini").containers:
        server = SERVERS.get(recipe_of(s.image))
        if server is not None and server.cmd:
            assert s.command is not None and s.command[0].plain == server.cmd[0], s.id
            assert [a.plain for a in s.command[:len(server.cmd)]] == list(server.cmd), s.id
