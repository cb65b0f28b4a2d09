"""The pull-request workflow (.github/workflows/): valid for GitHub by two validators that run
offline (the vendored workflow JSON schema of check-jsonschema, and actionlint), and wired the
way the repository relies on: both stacks previewed with the policy pack, least privilege,
every secret it reads documented, every command it runs a real one."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from catalog.settings import ROOT, known_stacks
from tests.cli_run import invoke

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
PREVIEW = ROOT / ".github" / "workflows" / "preview.yml"
BIN = Path(sys.executable).parent
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@(v\d+(\.\d+){0,2}|[0-9a-f]{40})$")


def schema_check(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema",
                           "vendor.github-workflows", *map(str, files)],
                          capture_output=True, text=True, timeout=120)


def actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    # shellcheck/pyflakes off: the result must not depend on what else is on PATH
    return subprocess.run([str(BIN / "actionlint"), "-no-color", "-oneline", "-shellcheck=",
                           "-pyflakes=", *map(str, files)],
                          capture_output=True, text=True, timeout=120)


def workflow() -> dict[Any, Any]:
    return yaml.safe_load(PREVIEW.read_text())


def steps(job: str) -> list[dict[str, Any]]:
    return workflow()["jobs"][job]["steps"]


def pulumi_step() -> dict[str, Any]:
    [step] = [s for s in steps("preview") if s.get("uses", "").startswith("pulumi/actions@")]
    return step


def test_there_is_a_workflow():
    assert PREVIEW in WORKFLOWS


def test_the_workflows_match_the_github_workflow_schema():
    result = schema_check(*WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_finds_nothing():
    result = actionlint(*WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def broken(tmp_path: Path, *replacements: tuple[str, str]) -> Path:
    text = PREVIEW.read_text()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / ".github" / "workflows" / "preview.yml"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return path


def test_both_validators_reject_a_job_without_a_runner(tmp_path):
    path = broken(tmp_path, ("runs-on: ubuntu-24.04\n    timeout-minutes: 60",
                             "timeout-minutes: 60"))
    schema = schema_check(path)
    assert schema.returncode != 0 and "'runs-on' is a required property" in schema.stdout
    lint = actionlint(path)
    assert lint.returncode != 0 and '"runs-on" section is missing' in lint.stdout


def test_actionlint_rejects_what_the_schema_cannot_see(tmp_path):
    """A misspelt input of Pulumi's action and a matrix key that does not exist are valid
    YAML of the right shape; only actionlint knows the action's inputs and the matrix."""
    path = broken(tmp_path, ("comment-on-pr: true", "comment-on-pull-request: true"),
                  ("stack-name: ${{ matrix.stack }}", "stack-name: ${{ matrix.stacks }}"))
    assert schema_check(path).returncode == 0
    lint = actionlint(path)
    assert lint.returncode != 0
    assert 'input "comment-on-pull-request" is not defined in action "pulumi/actions' \
        in lint.stdout
    assert 'property "stacks" is not defined' in lint.stdout


def test_previews_every_stack_with_the_policy_pack_and_comments_on_the_pr():
    preview = workflow()["jobs"]["preview"]
    assert sorted(preview["strategy"]["matrix"]["stack"]) == known_stacks()
    assert preview["strategy"]["fail-fast"] is False  # one stack's failure hides no other
    step = pulumi_step()
    assert re.fullmatch(r"pulumi/actions@v\d+", step["uses"])
    assert step["with"]["command"] == "preview"
    assert step["with"]["stack-name"] == "${{ matrix.stack }}"
    assert step["with"]["comment-on-pr"] is True and step["with"]["diff"] is True
    assert step["with"]["cloud-url"] == "${{ secrets.PULUMI_BACKEND_URL }}"
    assert step["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"
    pack = ROOT / step["with"]["policyPacks"]
    assert (pack / "PulumiPolicy.yaml").is_file() and (pack / "__main__.py").is_file()
    # the program and the pack run in the venv scripts/setup.sh creates
    assert any(s.get("run") == "bash scripts/setup.sh" for s in steps("preview"))


def test_the_preview_can_reach_each_target():
    names = " ".join(s.get("name", "") + s.get("run", "") for s in steps("preview"))
    assert "~/.ssh" in names and "~/.kube/config" in names
    assert "manacore:dockerHost" in names  # the Docker host the stack file names is local
    assert pulumi_step()["with"]["config-map"] == "${{ env.PULUMI_CONFIG_MAP }}"


def test_least_privilege():
    wf = workflow()
    assert wf["permissions"] == {"contents": "read"}
    assert list(wf[True]) == ["pull_request"]  # YAML 1.1 reads the key `on` as True
    for name, job in wf["jobs"].items():
        granted = job.get("permissions", wf["permissions"])
        writes = {k for k, v in granted.items() if v == "write"}
        assert writes <= ({"pull-requests"} if name == "preview" else set()), name
    assert wf["concurrency"]["cancel-in-progress"] is True
    # forks get no secrets: never run the preview for them
    assert "head.repo.full_name == github.repository" in wf["jobs"]["preview"]["if"]


def test_every_action_is_pinned():
    uses = [s["uses"] for job in workflow()["jobs"].values() for s in job["steps"] if "uses" in s]
    assert uses and all(PINNED.match(u) for u in uses), uses


def test_every_secret_used_is_documented_at_the_top():
    text = PREVIEW.read_text()
    header = text.split("\nname:", 1)[0]
    documented = set(re.findall(r"^#   ([A-Z][A-Z0-9_]+)\s{2,}", header, re.M))  # the list
    used = set(re.findall(r"secrets\.([A-Z][A-Z0-9_]+)", text))
    variables = set(re.findall(r"vars\.([A-Z][A-Z0-9_]+)", text))
    assert used and used | variables == documented


def test_the_tests_run_the_way_the_readme_says():
    """The README's test command, less the real-engine suite (it needs a root host without a
    Docker engine of its own: the project's CI runs it), exactly as the README spells it."""
    runs = [s.get("run", "") for s in steps("test")]
    assert "bash test.sh -m 'not docker_engine'" in runs and (ROOT / "test.sh").is_file()
    assert "-m 'not docker_engine" in (ROOT / "README.md").read_text()


def test_the_render_step_writes_every_export(tmp_path):
    """The step as the runner executes it (bash -e, from a checkout with .venv)."""
    script = next(s["run"] for s in steps("test") if "manacore" in s.get("run", ""))
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    result = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = tmp_path / "exports-out"
    for name in ("macmini/compose.yaml", "macmini/.env.example", "macmini/config.yml",
                 "macmini/dependencies.svg", "macmini/ports.svg", "k3s/config.yml",
                 "k3s/manacore/Chart.yaml", "k3s/dependencies.svg", "migration/MIGRATION.md",
                 "migration/PORTS.md"):
        assert (out / name).is_file(), name
    upload = next(s for s in steps("test") if s.get("uses", "").startswith(
        "actions/upload-artifact@"))
    assert upload["with"]["path"].rstrip("/") == "exports-out"
    assert upload["with"]["include-hidden-files"] is True  # .env.example


def test_every_manacore_command_it_runs_exists():
    script = next(s["run"] for s in steps("test") if "manacore" in s.get("run", ""))
    calls = [shlex.split(line)[1:] for line in script.splitlines() if line.startswith("$M ")]
    assert {c[0] for c in calls} >= {"render", "migrate", "graph"}
    rendered = {(c[1], c[c.index("--stack") + 1]) for c in calls if c[0] == "render"}
    assert rendered == {("compose", "macmini"), ("tunnel", "macmini"), ("helm", "k3s"),
                        ("tunnel", "k3s")}
    for call in calls:
        words = [w for w in call if not w.startswith("-")][:2]
        command = words if call[0] == "render" else words[:1]
        result = invoke(*command, "--help")
        assert result.exit_code == 0, f"manacore {' '.join(command)}: {result.output}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_no_secret_is_echoed(path):
    for line in path.read_text().splitlines():
        if "secrets." in line:
            assert not re.search(r"\b(echo|printf)\b.*secrets\.", line), line
