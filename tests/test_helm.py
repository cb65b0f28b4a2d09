"""The Helm chart: real Helm (lint --strict, template), kubernetes-validate --strict for
1.31 and 1.32, checkov, the B2B install, and sameness with the k3s stack's objects."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from catalog.model import ED25519_KEY_ID
from catalog.resolve import ResolvedEstate
from catalog.settings import ROOT
from exports import renderer
from exports.helm import B2B_VALUES, b2b_values
from exports.helm.values import key
from exports.kubernetes import concrete_objects

HELM = ROOT / ".venv" / "bin" / "helm"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
RELEASE, NAMESPACE = "manacore-k3s", "manacore"


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert HELM.exists(), "helm is missing: run bash scripts/setup.sh"
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, check=check,
                          timeout=300)


def docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.fixture(scope="module")
def estate(stack_estate) -> ResolvedEstate:
    return stack_estate("k3s")


@pytest.fixture(scope="module")
def chart(estate, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("helm")
    written = renderer("helm")(estate, out)
    assert out / "manacore" / "Chart.yaml" in written
    return out / "manacore"


def template(chart: Path, *args: str) -> list[dict[str, Any]]:
    return docs(helm("template", RELEASE, str(chart), "--namespace", NAMESPACE, *args).stdout)


@pytest.fixture(scope="module")
def default(chart) -> list[dict[str, Any]]:
    return template(chart)


@pytest.fixture(scope="module")
def b2b(chart) -> list[dict[str, Any]]:
    return template(chart, "-f", str(chart / B2B_VALUES))


def by_key(objs: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o
            for o in objs}


def test_chart_files(chart, estate):
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    assert meta["apiVersion"] == "v2" and meta["name"] == "manacore"
    assert meta["appVersion"] == estate.settings.tag
    for name in ("values.yaml", "values.schema.json", "templates/_helpers.tpl",
                 "templates/NOTES.txt", "README.md", B2B_VALUES):
        assert (chart / name).exists(), name
    values = yaml.safe_load((chart / "values.yaml").read_text())
    pg = values["services"]["postgres"]
    assert pg["image"] == {"repository": "pgvector/pgvector", "tag": "0.8.0-pg16"}
    assert pg["persistence"]["postgres-data"]["size"] == "20Gi"
    assert values["storageClass"] == estate.settings.storage_class
    assert values["services"]["chatWeb"]["hostnames"] == [estate["chat-web"].public.hostname]
    assert set(values["secrets"]) == {s.name for s in estate.secrets}
    assert not any(values["secrets"].values())


@pytest.mark.parametrize("values", [None, B2B_VALUES])
def test_helm_lint_strict(chart, values):
    args = ["lint", "--strict", str(chart)] + (["-f", str(chart / values)] if values else [])
    result = helm(*args, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("version", ["1.31.0", "1.32.0"])
def test_rendered_objects_are_valid_kubernetes(default, b2b, version):
    for obj in (*default, *b2b):
        kubernetes_validate.validate(obj, version, strict=True)


def _comparable(obj: dict[str, Any]) -> dict[str, Any]:
    """An object without what differs by design between the forms: who manages it, the chart
    label, and secret values (Pulumi Outputs vs generated in the chart)."""
    text = json.dumps(obj, sort_keys=True)
    for label in ('"app.kubernetes.io/managed-by": "Helm"', '"app.kubernetes.io/managed-by": '
                  '"pulumi"'):
        text = text.replace(label, '"app.kubernetes.io/managed-by": "-"')
    out = json.loads(text)
    for meta in (out["metadata"], out.get("spec", {}).get("template", {}).get("metadata", {})):
        meta.get("labels", {}).pop("helm.sh/chart", None)
    if out["kind"] == "Secret":
        out.pop("data", None), out.pop("stringData", None)
    if out["kind"] == "ConfigMap" and out.get("data") is None:
        out["data"] = {}
    return out


def test_chart_and_stack_are_one_mapping(default, estate):
    """Default values render exactly the objects the k3s stack creates."""
    stack = [o.manifest for o in concrete_objects(estate, lambda n: "x")]
    for o in stack:  # the stack's instance label is its stack name; the chart's the release
        text = json.dumps(o).replace(f'"manacore-{estate.settings.stack}"', f'"{RELEASE}"')
        o.clear(), o.update(json.loads(text))
    chart, pulumi = by_key(default), by_key(stack)
    assert set(chart) == set(pulumi)
    for k in chart:
        assert _comparable(chart[k]) == _comparable(pulumi[k]), k


def test_b2b_subset_with_external_postgres(b2b, estate):
    values = b2b_values(estate)
    chosen = {s.id for s in estate.services if values["services"][key(s.id)]["enabled"]}
    objs = by_key(b2b)
    workloads = {name for (kind, _, name) in objs if kind in ("Deployment", "StatefulSet",
                                                              "DaemonSet")}
    assert workloads == {estate[i].name for i in chosen if not estate[i].native}
    assert {o["metadata"].get("namespace") for o in b2b} == {NAMESPACE}
    assert not [o for o in b2b if o["kind"] in ("Namespace", "Secret")]  # existingSecret
    backend = objs[("Deployment", NAMESPACE, "chat-backend")]["spec"]["template"]["spec"]
    env = {e["name"]: e for e in backend["containers"][0]["env"]}
    assert env["DATABASE_URL"]["value"] == \
        "postgresql://chat:$(CHAT_DB_PASSWORD)@db.customer.example:5433/chat"
    assert env["CHAT_DB_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "manacore-secrets"
    wait = next(c for c in backend["initContainers"] if c["name"] == "wait-postgres")
    assert "db.customer.example 5433" in wait["command"][-1]
    config = objs[("ConfigMap", NAMESPACE, "chat-backend-env")]["data"]
    assert config["AUTH_URL"] == f"http://auth.{NAMESPACE}.svc.cluster.local:3001"
    web = objs[("ConfigMap", NAMESPACE, "chat-web-env")]["data"]
    assert web["ORIGIN"] == "https://chat.customer.example"
    ollama = objs[("Service", NAMESPACE, "ollama")]["spec"]
    assert ollama == {"type": "ExternalName", "externalName": "ollama.customer.example",
                      "ports": ollama["ports"]}
    egress = objs[("NetworkPolicy", NAMESPACE, "chat-backend-external-postgres")]["spec"]
    assert egress["egress"][0]["ports"] == [{"protocol": "TCP", "port": 5433}]


def test_missing_hard_dependency_fails_the_install(chart):
    result = helm("template", RELEASE, str(chart), "-f", str(chart / B2B_VALUES),
                  "--set", "services.auth.enabled=false", check=False)
    assert result.returncode != 0
    assert "services.chatBackend needs auth" in result.stderr


def test_schema_rejects_unknown_values(chart):
    result = helm("template", RELEASE, str(chart), "--set", "services.nope.enabled=true",
                  check=False)
    assert result.returncode != 0 and "nope" in result.stderr


def test_single_namespace_mode(chart):
    objs = template(chart, "--set", "namespaces.mode=single")
    assert {o["metadata"].get("namespace") for o in objs} == {NAMESPACE}
    assert not [o for o in objs if o["kind"] == "Namespace"]
    assert len([o for o in objs if o["metadata"]["name"] == "default-deny"]) == 1


def test_secrets_from_values_or_generated_once(chart, estate, test_secrets, tmp_path):
    names = {x.name for x in estate.secrets}
    given = tmp_path / "secrets.yaml"
    given.write_text(yaml.safe_dump({"secrets": {k: v for k, v in test_secrets.items()
                                                 if k in names}}))
    objs = template(chart, "-f", str(given))
    secrets = {o["metadata"]["name"]: {k: base64.b64decode(v).decode()
                                       for k, v in o.get("data", {}).items()}
               for o in objs if o["kind"] == "Secret"}
    assert secrets["nutriphi-backend-secrets"]["GEMINI_API_KEY"] == test_secrets["GEMINI_API_KEY"]
    # a generated password is the same in every Secret that holds it
    assert secrets["postgres-secrets"]["POSTGRES_PASSWORD"] == \
        secrets["postgres-exporter-secrets"]["POSTGRES_PASSWORD"]
    assert len(secrets["postgres-secrets"]["CHAT_DB_PASSWORD"]) == 32
    assert secrets["postgres-secrets"]["CHAT_DB_PASSWORD"] == \
        secrets["chat-backend-secrets"]["CHAT_DB_PASSWORD"]
    plain = json.dumps([o for o in objs if o["kind"] != "Secret"])
    assert not [v for v in test_secrets.values() if v in plain]
    assert not [v for s in secrets.values() for v in s.values() if v and v in plain]


def test_no_secret_value_in_the_chart(chart, test_secrets, default):
    text = "".join(p.read_text() for p in chart.rglob("*") if p.is_file())
    assert not [v for v in test_secrets.values() if v in text]
    assert not [v for v in test_secrets.values() if v in json.dumps(default)]


def test_checkov_passes(default, b2b, tmp_path):
    assert CHECKOV.exists(), "checkov is missing: run bash scripts/setup.sh"
    (tmp_path / "default.yaml").write_text(yaml.safe_dump_all(default))
    (tmp_path / "b2b.yaml").write_text(yaml.safe_dump_all(b2b))
    result = subprocess.run(
        [str(CHECKOV), "-d", str(tmp_path), "--framework", "kubernetes", "--skip-download",
         "--quiet", "--compact", "-o", "json"], capture_output=True, text=True, timeout=600)
    report = json.loads(result.stdout)
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == []
    assert report["summary"]["passed"] > 1000


def test_a_generated_synapse_signing_key_is_a_key_synapse_reads(default):
    """Synapse only generates a missing signing key in the image's generate modes: the chart
    generates the key file's line itself, 32 random bytes as Synapse's ed25519 seed."""
    files = next(o for o in default if o["kind"] == "Secret"
                 and "config_signing.key" in o.get("data", {}))
    line = base64.b64decode(files["data"]["config_signing.key"]).decode()
    algorithm, key_id, seed = line.split()
    assert (algorithm, key_id) == ("ed25519", ED25519_KEY_ID) and line.endswith("\n")
    assert len(base64.b64decode(seed)) == 32
