"""The Compose export: checked by the real Compose v2 binary, against the resolved estate, and
service by service against what the Pulumi program registers for the same stack."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from catalog.resolve import ResolvedEstate, ResolvedFile, SecretRef, Template
from catalog.settings import ROOT
from components.program import deploy
from exports import RENDERERS
from exports.compose import env_example, render, to_compose
from tests.cli_run import invoke
from tests.conftest import known_secrets, resolved, secret_values
from tests.harness import Registration, Run, run_program
from tests.test_macmini import CONTAINER, containers, env_of, image_of


def compose(binary: Path, workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), "-f", "compose.yaml", *args], cwd=workdir,
                          capture_output=True, text=True, timeout=120)


def env_file(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in sorted(values.items())))
    return path


def normalized(binary: Path, workdir: Path, values: dict[str, str]) -> dict[str, Any]:
    """The model Compose itself derives from the file, secrets interpolated from `values`."""
    env = env_file(workdir / "values.env", values)
    done = compose(binary, workdir, "--env-file", str(env), "config", "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def unescape(text: str) -> str:
    """What the container sees of a Compose string (`$$` is a literal dollar)."""
    return text.replace("$$", "$")


def with_files(estate: ResolvedEstate) -> ResolvedEstate:
    """The estate with generated files: one embedding a secret and a literal `$`, one plain."""
    script = ResolvedFile(path="/docker-entrypoint-initdb.d/10-roles.sh", mode=0o755,
                          content=Template(parts=("#!/bin/sh\necho \"$PGDATA\"\nPASS='",
                                                  SecretRef(secret="CHAT_DB_PASSWORD"), "'\n")))
    motd = ResolvedFile(path="/etc/motd", content=Template(parts=("hello\n",)))
    files = {"postgres": (script,), "redis": (motd,)}
    return estate.model_copy(update={"services": tuple(
        s.model_copy(update={"files": files[s.id]}) if s.id in files else s
        for s in estate.services)})


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory,
             macmini_estate: ResolvedEstate) -> Path:
    out = tmp_path_factory.mktemp("compose")
    assert render(macmini_estate, out) == [out / "compose.yaml", out / ".env.example"]
    return out


@pytest.fixture(scope="module", params=["now", "migrated"])
def stage(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          compose_binary: Path) -> tuple[ResolvedEstate, Run, Path, dict[str, Any]]:
    """Before the volume migration (legacy volumes adopted) and after it: the estate, its
    Pulumi run, the rendered directory and the model Compose derives from it."""
    prefix = "macmini" if request.param == "now" else "migrated"
    estate: ResolvedEstate = request.getfixturevalue(f"{prefix}_estate")
    run: Run = request.getfixturevalue(f"{prefix}_run")
    out = tmp_path_factory.mktemp(f"compose-{request.param}")
    render(estate, out)
    return estate, run, out, normalized(compose_binary, out, secret_values(estate))


@pytest.fixture(scope="module")
def model(rendered: Path) -> dict[str, Any]:
    return yaml.safe_load((rendered / "compose.yaml").read_text())


# --- the real Compose binary -------------------------------------------------------------


def test_compose_v2_accepts_the_file(compose_binary: Path, stage) -> None:
    estate, _, out, _ = stage
    env = env_file(out / "dummy.env", {s.name: "dummy" for s in estate.secrets})
    done = compose(compose_binary, out, "--env-file", str(env), "--profile", "*",
                   "config", "-q")
    assert done.returncode == 0, done.stderr


BROKEN = {
    "an undefined dependency": lambda m: m["services"].pop("postgres"),
    "a health interval that is no duration": lambda m: m["services"]["redis"]["healthcheck"]
    .update(interval="soon"),
    "an unknown dependency condition": lambda m: m["services"]["auth"]["depends_on"]["redis"]
    .update(condition="service_ready"),
    "an undeclared volume": lambda m: m.pop("volumes"),
}


@pytest.mark.parametrize("break_it", BROKEN.values(), ids=BROKEN.keys())
def test_compose_v2_rejects_a_broken_variant(compose_binary: Path, rendered: Path,
                                             model: dict[str, Any], macmini_estate:
                                             ResolvedEstate, tmp_path: Path, break_it) -> None:
    broken = json.loads(json.dumps(model))
    break_it(broken)
    (tmp_path / "compose.yaml").write_text(yaml.safe_dump(broken))
    env = env_file(tmp_path / "dummy.env", {s.name: "dummy" for s in macmini_estate.secrets})
    done = compose(compose_binary, tmp_path, "--env-file", str(env), "--profile", "*",
                   "config", "-q")
    assert done.returncode != 0


def test_compose_refuses_to_run_with_a_secret_left_empty(
        compose_binary: Path, rendered: Path, macmini_estate: ResolvedEstate) -> None:
    values = {s.name: "dummy" for s in macmini_estate.secrets} | {"POSTGRES_PASSWORD": ""}
    env = env_file(rendered / "one-empty.env", values)
    done = compose(compose_binary, rendered, "--env-file", str(env), "config", "-q")
    assert done.returncode != 0
    assert "set POSTGRES_PASSWORD in .env" in done.stderr


# --- the file's content ------------------------------------------------------------------


def test_a_modern_file_for_project_manacore(model: dict[str, Any]) -> None:
    assert "version" not in model
    assert model["name"] == "manacore"
    assert model["networks"] == {"manacore": {"name": "manacore", "external": False},
                                 "manacore-edge": {"name": "manacore-edge", "external": False}}


def test_one_service_per_container_as_resolved(model: dict[str, Any],
                                               macmini_estate: ResolvedEstate) -> None:
    services = {k: v for k, v in model["services"].items() if "manacore.service" in
                v.get("labels", {})}
    assert list(services) == [s.id for s in macmini_estate.containers]
    for svc in macmini_estate.containers:
        entry = services[svc.id]
        assert entry["container_name"] == svc.container_name
        assert entry["image"] == svc.image and ":" in svc.image.rsplit("/", 1)[-1]
        assert entry.get("ports", []) == [f"127.0.0.1:{p.published}:{p.container}"
                                          for p in svc.ports if p.published]
        assert entry["restart"] == "unless-stopped"
        assert entry["deploy"]["resources"]["limits"]["memory"] == f"{svc.memory // 2**20}m"
        # the tunnel connector alone on the edge network, with exactly the services it routes
        # to and VictoriaMetrics (it scrapes the connector); the rest only on the internal one
        edge = svc.public is not None or svc.id == "victoriametrics"
        assert entry["networks"] == (["manacore-edge"] if svc.id == "cloudflared" else
                                     ["manacore", "manacore-edge"] if edge else ["manacore"])
        assert entry["labels"] == svc.labels
        deps = entry.get("depends_on", {})
        natives = {s.id for s in macmini_estate.services if s.native}
        for dep in svc.hard:
            if dep not in natives:
                assert deps[dep] == {"condition": "service_healthy", "required": True}
        assert not set(svc.lazy) & set(deps), "lazy dependencies never hold a start back"
    assert "ports" not in services["cloudflared"]


def test_native_services_through_extra_hosts(model: dict[str, Any],
                                             macmini_estate: ResolvedEstate) -> None:
    natives = {s.id for s in macmini_estate.services if s.native}
    assert not natives & set(model["services"])
    for svc in macmini_estate.containers:
        uses = bool(natives & {*svc.hard, *svc.lazy})
        assert model["services"][svc.id].get("extra_hosts") == (
            ["host.docker.internal:host-gateway"] if uses else None), svc.id


def test_named_volumes_with_explicit_names_legacy_ones_external(stage) -> None:
    estate, _, out, seen = stage
    model = yaml.safe_load((out / "compose.yaml").read_text())
    volumes = {v.name: v for s in estate.containers for v in s.volumes}
    assert model["volumes"] == {n: {"name": n, **({} if v.migrated else {"external": True})}
                                for n, v in sorted(volumes.items())}
    assert seen["volumes"].keys() == volumes.keys()
    assert all(m["read_only"] for m in model["services"]["cadvisor"]["volumes"])


def test_shared_volume_declared_once_its_subdirectories_made_first(
        compose_binary: Path, migrated_estate: ResolvedEstate, tmp_path: Path) -> None:
    model = to_compose(migrated_estate)
    assert list(model["volumes"]).count("manacore-matrix-bots-data") == 1
    bots = [m for s in model["services"].values() for m in s.get("volumes", [])
            if m["source"] == "manacore-matrix-bots-data" and not m.get("read_only")]
    assert sorted(m["volume"]["subpath"] for m in bots if "volume" in m) == [
        "mana-bot", "project-doc-bot", "stats-bot"]
    init = model["services"]["matrix-bots-data-init"]
    assert init["command"] == ["mkdir", "-p", "/volume/mana-bot", "/volume/project-doc-bot",
                               "/volume/stats-bot"]
    assert init["restart"] == "no" and init["network_mode"] == "none"
    for sid in ("mana-bot", "stats-bot", "project-doc-bot"):
        assert model["services"][sid]["depends_on"]["matrix-bots-data-init"] == {
            "condition": "service_completed_successfully", "required": True}
    now = resolved("macmini")
    if not any(v.subpath for s in now.containers for v in s.volumes):  # legacy volumes adopted
        assert "matrix-bots-data-init" not in to_compose(now)["services"]


def test_secrets_are_interpolated_and_listed_without_values(
        rendered: Path, macmini_estate: ResolvedEstate) -> None:
    text = (rendered / "compose.yaml").read_text()
    example = (rendered / ".env.example").read_text()
    referenced = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    listed = dict(line.split("=", 1) for line in example.splitlines()
                  if line and not line.startswith("#"))
    assert referenced == set(listed) == {s.name for s in macmini_estate.secrets}
    assert set(listed.values()) == {""}
    for secret in macmini_estate.secrets:
        assert f"# {secret.description}" in example
    for name, value in secret_values(macmini_estate).items():
        assert value not in text and value not in example, name


def test_no_secret_value_even_when_the_pulumi_stack_has_them(
        rendered: Path, macmini_run: Run, macmini_estate: ResolvedEstate) -> None:
    """The known config secrets and the generated values never reach either file."""
    files = (rendered / "compose.yaml").read_text() + (rendered / ".env.example").read_text()
    values = [*known_secrets().values(), *secret_values(macmini_estate).values()]
    assert values and not [v for v in values if v in files]


# --- parity with the Pulumi program ------------------------------------------------------


def pulumi_view(run: Run, reg: Registration) -> dict[str, Any]:
    inputs = reg.plain()
    check = inputs.get("healthcheck")
    return {
        "name": inputs["name"],
        "image": image_of(run, reg).plain()["name"],
        "command": inputs.get("command"),
        "ports": [(p["ip"], int(p["external"]), int(p["internal"]))  # in the engine's order
                  for p in inputs.get("ports", [])],
        "env": env_of(reg),
        "health": check and [check["tests"], check["interval"], check["timeout"],
                             int(check["retries"]), check["startPeriod"],
                             check["startInterval"]],
        "memory": int(inputs["memory"]),
        "memory_swap": int(inputs["memorySwap"]),
        "stop_grace": inputs.get("stopTimeout"),
        "volumes": sorted([(m["type"], m["source"], m["target"],
                            (m.get("volumeOptions") or {}).get("subpath"),
                            bool(m.get("readOnly"))) for m in inputs.get("mounts", [])] +
                          [("bind", b["hostPath"], b["containerPath"], None,  # made if missing
                            bool(b.get("readOnly"))) for b in inputs.get("volumes", [])]),
        "hosts": sorted(f"{h['host']}={h['ip']}" for h in inputs.get("hosts", [])),
        "labels": {x["label"]: x["value"] for x in inputs["labels"]},
        "restart": inputs["restart"],
        "privileges": (inputs.get("securityOpts", []),
                       sorted((inputs.get("capabilities") or {}).get("drops") or []),
                       sorted((inputs.get("capabilities") or {}).get("adds") or [])),
    }


def compose_view(entry: dict[str, Any]) -> dict[str, Any]:
    check = entry.get("healthcheck")
    return {
        "name": entry["container_name"],
        "image": entry["image"],
        "command": entry["command"] and [unescape(c) for c in entry["command"]],
        "ports": [(p["host_ip"], int(p["published"]), p["target"])
                  for p in entry.get("ports", [])],
        "env": {k: unescape(v) for k, v in (entry.get("environment") or {}).items()},
        "health": check and [[unescape(t) for t in check["test"]], check["interval"],
                             check["timeout"], check["retries"], check["start_period"],
                             check["start_interval"]],
        "memory": int(entry["deploy"]["resources"]["limits"]["memory"]) // 2**20,
        "memory_swap": int(entry["memswap_limit"]) // 2**20,
        "stop_grace": entry.get("stop_grace_period") and seconds(entry["stop_grace_period"]),
        "volumes": sorted((m["type"], m["source"], m["target"],
                           (m.get("volume") or {}).get("subpath"), bool(m.get("read_only")))
                          for m in entry.get("volumes", [])),
        "hosts": sorted(entry.get("extra_hosts", [])),
        "labels": entry["labels"],
        "restart": entry["restart"],
        "privileges": (entry.get("security_opt", []), sorted(entry.get("cap_drop", [])),
                       sorted(entry.get("cap_add", []))),
    }


def seconds(text: str) -> int:
    """A Go duration Compose normalised ("1m0s") in seconds."""
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    assert parts and text, text
    h, m, s = (int(x or 0) for x in parts.groups())
    return h * 3600 + m * 60 + s


def test_every_service_agrees_with_its_pulumi_container(stage) -> None:
    """Name, image, command, ports (in order), env (keys and, with the same secret values,
    every value), health check, memory and memory+swap, stop grace, volumes, hosts, labels and
    restart policy; init containers too."""
    estate, run, _, seen = stage
    found = containers(run)
    assert estate.containers
    for svc in estate.containers:
        assert pulumi_view(run, found[svc.id]) == compose_view(seen["services"][svc.id]), svc.id
    inits = {r.name: r for r in run.of_type(CONTAINER) if "manacore.volume-init" in str(r.inputs)}
    composed = {e["container_name"]: e for e in seen["services"].values()
                if "manacore.volume-init" in e["labels"]}
    assert inits.keys() == composed.keys()
    for name, reg in inits.items():
        ours, theirs = pulumi_view(run, reg), compose_view(composed[name])
        for key in ("image", "command", "memory", "memory_swap", "volumes", "labels", "restart",
                    "privileges"):
            assert ours[key] == theirs[key], (name, key)


def test_generated_files_agree_and_stay_references(
        compose_binary: Path, macmini_estate: ResolvedEstate, tmp_path: Path) -> None:
    estate = with_files(macmini_estate)
    render(estate, tmp_path)
    text = (tmp_path / "compose.yaml").read_text()
    raw = yaml.safe_load(text)
    key = "postgres-docker-entrypoint-initdb.d-10-roles.sh"
    assert raw["configs"][key]["content"] == ("#!/bin/sh\necho \"$$PGDATA\"\nPASS='${"
                                              "CHAT_DB_PASSWORD:?set CHAT_DB_PASSWORD in .env}'\n")
    assert raw["services"]["postgres"]["configs"] == [
        {"source": key, "target": "/docker-entrypoint-initdb.d/10-roles.sh", "mode": "0755"}]
    values = secret_values(estate)
    assert values["CHAT_DB_PASSWORD"] not in text
    seen = normalized(compose_binary, tmp_path, values)
    run = run_program("macmini", secrets=known_secrets(), program=lambda: deploy(estate))
    for sid in ("postgres", "redis"):
        uploads = {u["file"]: (u["content"], u["permissions"])
                   for u in containers(run)[sid].plain()["uploads"]}
        configs = {c["target"]: (unescape(seen["configs"][c["source"]]["content"]),
                                 f"{int(c['mode']):04o}" if isinstance(c["mode"], int)
                                 else c["mode"])
                   for c in seen["services"][sid]["configs"]}
        assert uploads == configs, sid


# --- determinism, CLI --------------------------------------------------------------------

_RENDER = """
import sys
from pathlib import Path
from catalog.load import load_stack
from exports.compose import render
render(load_stack("macmini")[1], Path(sys.argv[1]))
"""


def test_two_renders_are_byte_identical(macmini_estate: ResolvedEstate, rendered: Path,
                                        tmp_path: Path) -> None:
    again = render(macmini_estate, tmp_path / "again")
    for path in again:
        assert path.read_bytes() == (rendered / path.name).read_bytes()
    for seed in ("1", "2"):  # another process, another hash seed: still the same bytes
        out = tmp_path / f"seed{seed}"
        subprocess.run([sys.executable, "-c", _RENDER, str(out)], cwd=ROOT, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}, timeout=120)
        for path in again:
            assert (out / path.name).read_bytes() == path.read_bytes()


def test_cli_renders_compose_for_macmini(tmp_path: Path) -> None:
    assert "compose" in RENDERERS
    result = invoke("render", "compose", "--stack", "macmini", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "compose.yaml" in result.output and ".env.example" in result.output
    model = yaml.safe_load((tmp_path / "compose.yaml").read_text())
    assert model["services"]["postgres"]["container_name"] == "manacore-infra-postgres"
    assert (tmp_path / ".env.example").read_text().count("POSTGRES_PASSWORD=") == 1


def test_cli_refuses_compose_for_a_kubernetes_stack(tmp_path: Path) -> None:
    result = invoke("render", "compose", "--stack", "k3s", "--out", str(tmp_path))
    assert result.exit_code == 1
    assert "compose-target" in result.output
    assert not (tmp_path / "compose.yaml").exists()


def test_env_example_names_generated_and_provided_secrets(
        macmini_estate: ResolvedEstate) -> None:
    text = env_example(macmini_estate)
    assert "# Google Gemini API key (NutriPhi) (from its service)\nGEMINI_API_KEY=\n" in text
    assert "# PostgreSQL superuser password (generate)\nPOSTGRES_PASSWORD=\n" in text


def test_a_fresh_volume_is_handed_to_the_user_its_image_steps_down_to() -> None:
    """Synapse's entrypoint runs it as 991:991 and never chowns /data in run mode: a managed
    volume is handed over by its init first; an adopted legacy one is never touched."""
    from catalog.load import load_estate
    from catalog.resolve import resolve
    from catalog.settings import load_settings

    fresh = resolve(load_estate(), load_settings("macmini").model_copy(
        update={"adopt_legacy": False}))
    model = to_compose(fresh)
    init = model["services"]["synapse-data-init"]
    assert init["command"] == ["chown", "991:991", "/volume"]
    assert model["services"]["synapse"]["depends_on"]["synapse-data-init"] == {
        "condition": "service_completed_successfully", "required": True}
    adopted = to_compose(resolve(load_estate(), load_settings("macmini")))
    assert "synapse-data-init" not in adopted["services"]


def test_least_privilege_every_container_drops_every_capability_it_does_not_need(
        model: dict[str, Any], macmini_estate: ResolvedEstate,
        migrated_estate: ResolvedEstate) -> None:
    """no-new-privileges everywhere; all capabilities dropped and only the image's entrypoint
    needs added back (checked on the real engine: tests/realengine); cAdvisor is the declared
    exception; a volume's init may only chown."""
    services = model["services"]
    for svc in macmini_estate.containers:
        entry = services[svc.id]
        assert entry["security_opt"] == ["no-new-privileges:true"], svc.id
        if svc.id == "cadvisor":
            assert svc.default_caps and "cap_drop" not in entry and "cap_add" not in entry
            continue
        assert not svc.default_caps, svc.id
        assert entry["cap_drop"] == ["ALL"], svc.id
        # spelled as the engine reports them back (issue 25): CAP_CHOWN, not CHOWN
        assert entry.get("cap_add", []) == sorted(f"CAP_{c}" for c in svc.caps), svc.id
    caps = {sid: services[sid].get("cap_add") for sid in ("postgres", "redis", "synapse",
                                                          "grafana", "cloudflared")}
    assert caps == {"postgres": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_SETGID",
                                 "CAP_SETUID"],
                    "redis": ["CAP_CHOWN", "CAP_DAC_READ_SEARCH", "CAP_SETGID", "CAP_SETUID"],
                    "synapse": ["CAP_SETGID", "CAP_SETUID"], "grafana": None, "cloudflared": None}
    inits = [e for e in to_compose(migrated_estate)["services"].values()
             if "manacore.volume-init" in e["labels"]]
    assert inits and all(e["cap_drop"] == ["ALL"] and e["cap_add"] == ["CAP_CHOWN"] and
                         e["security_opt"] == ["no-new-privileges:true"] for e in inits)


def test_postgres_and_redis_are_out_of_the_tunnel_connectors_reach(model: dict[str, Any]) -> None:
    """Issue 14, item 8c: cloudflared shares a network only with the services it routes to."""
    services = model["services"]
    edge = set(services["cloudflared"]["networks"])
    assert edge == {"manacore-edge"}
    beside = {sid for sid, e in services.items() if edge & set(e.get("networks", []))}
    assert {"postgres", "redis", "searxng", "mana-bot"}.isdisjoint(beside)
    assert {"grafana", "synapse", "chat-web", "victoriametrics"} <= beside
