"""The `manacore` command on the real catalogue and on broken input."""

from __future__ import annotations

import re
import subprocess
import sys

import cli
from catalog.model import hard, image
from catalog.settings import ROOT
from tests.cli_run import invoke
from tests.estates import estate


def test_validate_passes_for_both_stacks() -> None:
    result = invoke("validate")
    assert result.exit_code == 0, result.output
    assert "stack macmini (docker)" in result.output
    assert "stack k3s (kubernetes)" in result.output


def test_validate_lists_every_violation_and_fails(monkeypatch) -> None:
    broken = estate(auth={"memory": None}, redis={"image": image("redis:latest")},
                    gateway={"needs": [hard("auth"), hard("billing")]})
    monkeypatch.setattr(cli, "load_estate", lambda: broken)
    result = invoke("validate", "--stack", "macmini")
    assert result.exit_code == 1
    assert "auth: memory-limit:" in result.output
    assert "redis: image-pinned:" in result.output
    assert "gateway: dependency-exists:" in result.output
    assert "Traceback" not in result.output


def test_a_services_file_that_does_not_import_is_reported_cleanly(monkeypatch) -> None:
    from catalog import load

    def broken_import(_name):
        raise NameError("name 'sevrice' is not defined")

    monkeypatch.setattr(load.importlib, "import_module", broken_import)
    result = invoke("validate")
    assert result.exit_code == 2
    assert "services.py could not be loaded: NameError" in result.output


def test_an_unknown_stack_is_reported(tmp_path) -> None:
    result = invoke("budget", "--stack", "nowhere")
    assert result.exit_code == 2
    assert "known stacks: k3s, macmini" in result.output


def test_bad_settings_are_all_reported(stack_dir) -> None:
    path = stack_dir / "Pulumi.macmini.yaml"
    text = path.read_text().replace("target: docker", "target: podman")
    path.write_text(text.replace("memoryBudget: 10Gi", "memoryBudget: plenty"))
    result = invoke("validate", "--stack", "macmini")
    assert result.exit_code == 1
    assert "settings: stack macmini: target:" in result.output
    assert "settings: stack macmini: memoryBudget:" in result.output


def test_ports_shows_new_legacy_reserved_and_free() -> None:
    result = invoke("ports")
    assert result.exit_code == 0, result.output
    text = result.output
    assert re.search(r"^3010 +gateway +http +3030$", text, re.M)
    assert re.search(r"^4000 +synapse +http +8008$", text, re.M)
    assert re.search(r"^4011 +\(reserved\)", text, re.M)
    assert "15 used, 0 reserved, 85 free" in text  # 3000-3099
    assert "watchtower" not in text  # publishes nothing


def test_graph_is_mermaid_with_hard_and_lazy_edges(tmp_path) -> None:
    result = invoke("graph")
    assert result.exit_code == 0
    assert result.output.startswith("flowchart LR")
    assert "gateway --> auth" in result.output
    assert "gateway -.-> search" in result.output
    out = tmp_path / "graph.mmd"
    assert invoke("graph", "--out", str(out)).exit_code == 0
    assert out.read_text() == result.output


def test_budget_fits_and_fails_when_the_host_is_too_small(stack_dir) -> None:
    ok = invoke("budget", "--stack", "macmini")
    assert ok.exit_code == 0, ok.output
    assert "infrastructure" in ok.output and "1.5 GB" in ok.output
    path = stack_dir / "Pulumi.macmini.yaml"
    path.write_text(path.read_text().replace("memoryBudget: 10Gi", "memoryBudget: 4Gi"))
    tight = invoke("budget", "--stack", "macmini")
    assert tight.exit_code == 1
    assert "more than the host budget 4Gi" in tight.output


def test_the_k3s_budget_counts_every_replica(stack_dir) -> None:
    """Issue 26: on Kubernetes every replica reserves its memory; the budget, validate and the
    program count pods, Docker one container per service. The backup's jobs (the servers'
    and one per copied claim) share one schedule: each counts."""
    from catalog.backup import files_copied
    from catalog.units import format_bytes
    from tests.conftest import resolved

    k3s = resolved("k3s")
    jobs = len(files_copied(k3s.services))
    assert jobs >= 7  # Synapse, three bots, Grafana, n8n, VictoriaMetrics
    pods = sum(s.replicas for s in k3s.containers) + jobs
    total = sum((s.memory or 0) * s.replicas for s in k3s.containers) + \
        (k3s["backup"].memory or 0) * jobs
    assert pods > len(k3s.containers)
    ok = invoke("budget", "--stack", "k3s")
    assert ok.exit_code == 0, ok.output
    assert re.search(rf"^total +{len(k3s.containers)} +{pods} +{re.escape(format_bytes(total))} ",
                     ok.output, re.M), ok.output
    path = stack_dir / "Pulumi.k3s.yaml"
    # room for one copy of each, not for the replicas: refused by budget and validate alike
    one_each = sum(s.memory or 0 for s in k3s.containers) // 2**20 + 1
    path.write_text(path.read_text().replace("memoryBudget: 24Gi", f"memoryBudget: {one_each}Mi"))
    for command in ("budget", "validate"):
        tight = invoke(command, "--stack", "k3s")
        assert tight.exit_code == 1 and "memory-budget" in tight.output, (command, tight.output)


def test_render_defaults_to_the_stack_of_its_export_and_refuses_the_other(tmp_path) -> None:
    helm = invoke("render", "helm", "--out", str(tmp_path / "h"))
    assert helm.exit_code == 0, helm.output
    assert (tmp_path / "h" / "manacore" / "Chart.yaml").exists()
    wrong = invoke("render", "helm", "--stack", "macmini", "--out", str(tmp_path / "x"))
    assert wrong.exit_code == 1 and "macmini: helm-target:" in wrong.output
    assert "Traceback" not in wrong.output
    wrong = invoke("render", "compose", "--stack", "k3s", "--out", str(tmp_path / "y"))
    assert wrong.exit_code == 1 and "k3s: compose-target:" in wrong.output


def test_the_console_script_flushes_everything_and_keeps_the_exit_code() -> None:
    """`manacore` leaves by os._exit: what it printed into a pipe must all be there."""
    ports = subprocess.run([sys.executable, "-m", "manacore", "ports"], capture_output=True,
                           text=True, cwd=ROOT, check=False)
    assert ports.returncode == 0, ports.stderr
    assert ports.stdout == invoke("ports").stdout  # every block, up to the last caption
    wrong = subprocess.run([sys.executable, "-m", "manacore", "validate", "--stack", "nope"],
                           capture_output=True, text=True, cwd=ROOT, check=False)
    assert wrong.returncode == 2
    assert wrong.stderr.startswith("✗ settings: stack nope: no ")
