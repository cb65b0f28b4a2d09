"""The real-engine harness is product code too: its scripts pass shellcheck, and the image
builder picks the right recipe and the ports a stand-in must answer on (no engine needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from catalog.settings import ROOT
from harness.images import hard_hosts, listen_ports, probe_binaries, recipe_of
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
    ("pgvector/pgvector:0.8.0-pg16", "postgres"), ("postgres:17", "postgres"),
    ("redis:7.4.6-alpine", "redis"), ("busybox:1.37.0", "busybox"), ("alpine:3.20.3", "busybox"),
    ("ghcr.io/manacore/chat-backend:1", "standin"), ("grafana/grafana:11.3.1", "standin"),
    ("oliver006/redis_exporter:v1.66.0", "redis_exporter"),
    ("prom/node-exporter:v1.8.2", "node-exporter"),
])
def test_each_reference_gets_the_closest_real_image(ref: str, recipe: str) -> None:
    assert recipe_of(ref) == recipe


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
