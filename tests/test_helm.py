"""The Helm chart: real Helm (lint --strict, template), kubernetes-validate --strict for
1.31 and 1.32, checkov, the B2B install, and sameness with the k3s stack's objects."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from catalog.load import load_estate
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
    """What `helm install` applies (the `helm test` hooks apart: tests/test_helm.py checks
    them on their own)."""
    return docs(helm("template", RELEASE, str(chart), "--namespace", NAMESPACE, "--skip-tests",
                     *args).stdout)


def hooks(chart: Path, *args: str) -> list[dict[str, Any]]:
    """The `helm test` pods the chart renders with these arguments."""
    return [o for o in docs(helm("template", RELEASE, str(chart), "--namespace", NAMESPACE,
                                 *args).stdout)
            if (o["metadata"].get("annotations") or {}).get("helm.sh/hook") == "test"]


def test_helm_test_goes_the_estates_own_paths(chart, estate):
    """`helm test` pods: one for every public service, as the tunnel connector (its labels and
    namespace: the connector's NetworkPolicy and the service's ingress from it apply), and one
    per database role, as its consumer (its labels, namespace and Secret); restricted like the
    estate's pods, run once, none in what `helm install` applies."""
    pods = hooks(chart)
    connector = estate["cloudflared"]
    public = [s for s in estate.services if s.public and not s.native and s.id != connector.id]
    roles = [*estate.databases, *estate.monitors]
    assert len(pods) == 1 + len(roles)
    for pod in pods:
        labels, spec = pod["metadata"]["labels"], pod["spec"]
        assert pod["kind"] == "Pod" and spec["restartPolicy"] == "Never"
        assert spec["securityContext"]["runAsNonRoot"] is True
        c = spec["containers"][0]["securityContext"]
        assert c["allowPrivilegeEscalation"] is False and c["capabilities"]["drop"] == ["ALL"]
        script = spec["containers"][0]["command"][-1]
        if pod["metadata"]["name"].endswith("-test-public"):
            assert labels["app.kubernetes.io/name"] == connector.name
            assert pod["metadata"]["namespace"] == connector.namespace
            assert sorted(s.id for s in public if f"echo {s.id} answers;" in script) == \
                sorted(s.id for s in public)
        else:
            role = next(r for r in roles if f"-U {r.name} " in script)
            owner = estate[role.owner]
            assert labels["app.kubernetes.io/name"] == owner.name
            assert pod["metadata"]["namespace"] == owner.namespace
            ref = spec["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": f"{owner.name}-secrets", "key": role.password_secret}
    assert not [o for o in template(chart) if o["kind"] == "Pod"]


def test_helm_test_checks_each_installed_public_service_and_names_each_failure(
        chart, estate, tmp_path):
    """The public test pod's script, run by a real shell with `wget` answering for every host
    but two: it checks them all and fails naming exactly those two; a service the values turn
    off is not checked."""
    public = [s for s in estate.services if s.public and not s.native and s.id != "cloudflared"]
    down, off = public[0], public[1]
    script = next(p for p in hooks(chart, "--set", f"services.{key(off.id)}.enabled=false")
                  if p["metadata"]["name"].endswith("-test-public"))["spec"]["containers"][0][
        "command"][-1]
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    # wget fails for the one service that is down; sleep returns at once (no 30 s of retries)
    (bin_ / "wget").write_text(
        f'#!/bin/sh\ncase "$*" in *//{down.name}.*) exit 4;; esac\necho "  HTTP/1.1 200 OK" >&2\n')
    (bin_ / "sleep").write_text("#!/bin/sh\n")
    for f in bin_.iterdir():
        f.chmod(0o755)
    run = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60,
                         env={"PATH": f"{bin_}:/usr/bin:/bin"})
    assert run.returncode == 1, run
    assert run.stderr.splitlines()[-1] == f"FAILED: {down.id} does not answer"
    answered = {line.removesuffix(" answers") for line in run.stdout.splitlines()}
    assert answered == {s.id for s in public} - {down.id, off.id}


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
    pin = next(x.image for x in load_estate().valid_services if x.id == "postgres")
    assert pin is not None
    assert pg["image"] == {"repository": pin.repository, "tag": pin.tag}
    assert pg["persistence"]["postgres-data"]["size"] == "20Gi"
    assert values["storageClass"] == estate.settings.storage_class
    assert values["domain"] == estate.settings.domain
    assert values["services"]["chatWeb"]["hostnames"] == []  # <host>.<domain>
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
    spec = out.get("spec", {})
    job = spec.get("jobTemplate", {})  # a CronJob's Jobs and their pods are labelled too
    for meta in (out["metadata"], spec.get("template", {}).get("metadata", {}),
                 job.get("metadata", {}), job.get("spec", {}).get("template", {}).get(
                     "metadata", {})):
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
    assert web["ORIGIN"] == "https://talk.customer.example"
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


def test_replicas_budgets_and_failover_are_values(chart, estate, default):
    """Issue 26: replicas, each budget and the failover time are values the schema checks; a
    budget exists only while its service has two replicas or more; a service that must run
    once cannot be given a second pod."""
    values = yaml.safe_load((chart / "values.yaml").read_text())
    schema = json.loads((chart / "values.schema.json").read_text())
    assert values["failoverSeconds"] == 5
    budgets = {o["metadata"]["name"] for o in default if o["kind"] == "PodDisruptionBudget"}
    assert budgets == {s.name for s in estate.containers if s.replicas > 1}
    for s in estate.containers:
        v = values["services"][key(s.id)]
        assert v.get("replicas") == (None if s.workload == "daemon" or s.role == "backup"
                                     else s.replicas), s.id
        assert ("podDisruptionBudget" in v) == (s.availability.copies == "many" and
                                                not s.stateful and s.workload == "service")
    assert "podDisruptionBudget" in schema["$defs"]["Scalable"]["properties"]
    assert schema["$defs"]["Single"]["properties"]["replicas"]["maximum"] == 1
    one = template(chart, "--set", "services.chatWeb.replicas=1", "--set", "failoverSeconds=30",
                   "--set", "services.auth.replicas=3",
                   "--set", "services.auth.podDisruptionBudget.maxUnavailable=2")
    objs = by_key(one)
    assert ("PodDisruptionBudget", "manacore-apps", "chat-web") not in objs
    assert objs[("Deployment", "manacore-apps", "chat-web")]["spec"]["replicas"] == 1
    assert objs[("Deployment", "manacore-core", "auth")]["spec"]["replicas"] == 3
    assert objs[("PodDisruptionBudget", "manacore-core", "auth")]["spec"]["maxUnavailable"] == 2
    tolerations = objs[("Deployment", "manacore-apps", "chat-web")]["spec"]["template"][
        "spec"]["tolerations"]
    assert {t["tolerationSeconds"] for t in tolerations} == {30}
    for wrong, word in (("services.postgres.replicas=2", "replicas"),
                        ("services.auth.podDisruptionBudget.maxUnavailable=0", "maxUnavailable"),
                        ("failoverSeconds=-1", "failoverSeconds")):
        result = helm("template", RELEASE, str(chart), "--set", wrong, check=False)
        assert result.returncode != 0 and word in result.stderr, (wrong, result.stderr)


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
    assert secrets["postgres-secrets"]["POSTGRES_EXPORTER_DB_PASSWORD"] == \
        secrets["postgres-exporter-secrets"]["POSTGRES_EXPORTER_DB_PASSWORD"]
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


def test_a_generated_synapse_signing_key_is_a_key_synapse_reads(default, tmp_path):
    """Synapse only generates a missing signing key in the image's generate modes: the chart
    generates the key file's line itself, 32 random bytes as Synapse's ed25519 seed."""
    line = assemble(default, "synapse", tmp_path)["config_signing.key"]
    algorithm, key_id, seed = line.split()
    assert (algorithm, key_id) == ("ed25519", ED25519_KEY_ID) and line.endswith("\n")
    assert len(base64.b64decode(seed)) == 32


# --- files that embed secrets, assembled in the pod ------------------------------------------


def secret_data(objs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, str]]:
    """Every rendered Secret's values, decoded: (namespace, name) → key → value."""
    return {(o["metadata"]["namespace"], o["metadata"]["name"]):
            {k: base64.b64decode(v).decode() for k, v in (o.get("data") or {}).items()}
            for o in objs if o["kind"] == "Secret"}


def assemble(objs: list[dict[str, Any]], name: str, tmp: Path,
             cluster: dict[tuple[str, str], dict[str, str]] | None = None) -> dict[str, str]:
    """Run a pod's render-files init container as the kubelet would, with BusyBox: its
    templates from the ConfigMap, its env from the Secrets (the rendered ones, and `cluster`,
    Secrets a user created). Returns file key → content as the service reads it."""
    found = by_key(objs)
    pod = next(o for o in objs if o["kind"] in ("Deployment", "StatefulSet")
               and o["metadata"]["name"] == name)
    ns, spec = pod["metadata"]["namespace"], pod["spec"]["template"]["spec"]
    init = next(c for c in spec["initContainers"] if c["name"] == "render-files")
    stored = {**secret_data(objs), **(cluster or {})}
    env = {}
    for e in init["env"]:
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        env[e["name"]] = stored[(ns, ref["name"])][ref["key"]] if ref else e["value"]
    templates, rendered = tmp / f"{name}-templates", tmp / f"{name}-rendered"
    templates.mkdir(), rendered.mkdir()
    for k, v in found[("ConfigMap", ns, f"{name}-files")]["data"].items():
        (templates / k).write_text(v)
    script = init["command"][-1].replace("/templates/", f"{templates}/").replace(
        "/rendered/", f"{rendered}/")
    subprocess.run(["busybox", "sh", "-c", script], env=env, check=True, timeout=30)
    return {p.name: p.read_text() for p in rendered.iterdir()}


def test_secret_files_are_templates_filled_in_the_pod(default, tmp_path):
    """homeserver.yaml ships as a template (no secret in any ConfigMap); the pod fills in the
    values of its Secret literally, whatever characters they hold."""
    objs = json.loads(json.dumps(default))
    synapse = next(o for o in objs if o["kind"] == "Secret"
                   and o["metadata"]["name"] == "synapse-secrets")
    nasty = "p@ss: #word 'q' \"dq\" \\ & $x {y} @@ |-"
    synapse["data"]["SYNAPSE_DB_PASSWORD"] = base64.b64encode(nasty.encode()).decode()
    files = assemble(objs, "synapse", tmp_path)
    config = yaml.safe_load(files["config_homeserver.yaml"])
    assert config["database"]["args"]["password"].rstrip("\n") == nasty
    stored = secret_data(objs)[("manacore-matrix", "synapse-secrets")]
    assert config["registration_shared_secret"].rstrip("\n") == \
        stored["SYNAPSE_REGISTRATION_SHARED_SECRET"]
    assert "@@secret:" not in json.dumps(files)


def test_a_secret_missing_from_the_pod_stops_it(default, tmp_path):
    """Never a homeserver.yaml with an empty password: the init container fails instead."""
    pod = by_key(default)[("StatefulSet", "manacore-matrix", "synapse")]["spec"]["template"]
    init = next(c for c in pod["spec"]["initContainers"] if c["name"] == "render-files")
    files = by_key(default)[("ConfigMap", "manacore-matrix", "synapse-files")]["data"]
    (tmp_path / "t").mkdir(), (tmp_path / "r").mkdir()
    for k, v in files.items():
        (tmp_path / "t" / k).write_text(v)
    script = init["command"][-1].replace("/templates/", f"{tmp_path}/t/").replace(
        "/rendered/", f"{tmp_path}/r/")
    env = {e["name"]: e["value"] for e in init["env"] if "value" in e}
    done = subprocess.run(["busybox", "sh", "-c", script], env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode != 0 and "is not set" in done.stderr


# --- upgrades: `lookup` simulated with the Secrets of the previous render ----------------------

LOOKUP_CALL = '{{- toJson (lookup "v1" "Secret" (index . 1) (index . 2)) -}}'
# Helm's lookup, faithfully: the whole object (base64 `data`) when it exists, else an empty map
FAKE_LOOKUP = ('{{- $cluster := (index . 0).Files.Get "cluster.json" | fromJson -}}'
               '{{- toJson (index (index $cluster (index . 1) | default dict) (index . 2) '
               '| default dict) -}}')


def release(chart: Path, tmp: Path, reverse: bool) -> Any:
    """A copy of the chart whose lookup answers from `cluster.json`, with its templates renamed
    so that Helm renders them in the given or the reversed order. Returns render(cluster)."""
    copy = tmp / ("reversed" if reverse else "natural") / "manacore"
    shutil.copytree(chart, copy)
    helpers = copy / "templates" / "_helpers.tpl"
    text = helpers.read_text()
    assert text.count(LOOKUP_CALL) == 1
    assert sum(p.read_text().count("lookup ") for p in copy.rglob("*") if p.is_file()) == 1
    helpers.write_text(text.replace(LOOKUP_CALL, FAKE_LOOKUP))
    names = sorted(p.name for p in (copy / "templates").glob("*.yaml"))
    for i, n in enumerate(reversed(names) if reverse else names):
        (copy / "templates" / n).rename(copy / "templates" / f"{i:03d}-{n}")

    def render(cluster: list[dict[str, Any]], *args: str) -> list[dict[str, Any]]:
        stored: dict[str, dict[str, Any]] = {}
        for o in cluster:
            if o["kind"] == "Secret":
                stored.setdefault(o["metadata"]["namespace"], {})[o["metadata"]["name"]] = o
        (copy / "cluster.json").write_text(json.dumps(stored))
        return template(copy, *args)
    return render


@pytest.mark.parametrize("first", ["natural", "reversed"])
def test_upgrades_keep_every_secret_whatever_the_render_order(chart, estate, tmp_path, first):
    """install, upgrade, upgrade again (each in another template order): no Secret changes, and
    so no object at all; on install every secret has one value wherever it is stored."""
    natural, reversed_ = release(chart, tmp_path, False), release(chart, tmp_path, True)
    a, b = (natural, reversed_) if first == "natural" else (reversed_, natural)
    install = a([])
    upgrade = b(install)
    again = a(upgrade)
    assert secret_data(upgrade) == secret_data(install)
    assert secret_data(again) == secret_data(install)
    assert by_key(upgrade) == by_key(install) == by_key(again)
    values: dict[str, set[str]] = {}
    for data in secret_data(install).values():
        for k, v in data.items():
            values.setdefault(k, set()).add(v)
    generated = {x.name for x in estate.secrets if x.generate}
    assert generated <= set(values)
    assert all(len(v) == 1 for v in values.values()), values
    db = secret_data(install)
    assert db[("manacore-infra", "postgres-secrets")]["SYNAPSE_DB_PASSWORD"] == \
        db[("manacore-matrix", "synapse-secrets")]["SYNAPSE_DB_PASSWORD"]


def test_an_existing_secret_feeds_every_file_that_embeds_it(chart, tmp_path):
    """With the user's Secret, Synapse's files take every value from it (nothing generated:
    two renders are the same), and the pod assembles them from that Secret."""
    args = ("--set", "existingSecret=customer", "--set",
            "services.synapse.existingSecret=customer-synapse")
    first, second = template(chart, *args), template(chart, *args)
    assert first == second
    assert secret_data(first) == {}
    customer = {"SYNAPSE_DB_PASSWORD": "customer-db", "SYNAPSE_MACAROON_SECRET_KEY": "mac",
                "SYNAPSE_REGISTRATION_SHARED_SECRET": "reg",
                "SYNAPSE_SIGNING_KEY": "ed25519 a_customer c2VlZA"}
    files = assemble(first, "synapse", tmp_path,
                     {("manacore-matrix", "customer-synapse"): customer})
    config = yaml.safe_load(files["config_homeserver.yaml"])
    assert config["database"]["args"]["password"].strip() == "customer-db"
    assert config["macaroon_secret_key"].strip() == "mac"
    assert config["registration_shared_secret"].strip() == "reg"
    assert files["config_signing.key"] == "ed25519 a_customer c2VlZA\n"


# --- one source per secret ----------------------------------------------------------------------


@pytest.mark.parametrize(("args", "message"), [
    (("--set", "services.postgres.existingSecret=customer-pg"),
     "AUTH_DB_PASSWORD must have one source, but services.postgres (Secret customer-pg) get it "
     "from your Secret and services.auth from the chart's generated one"),
    (("--set", "services.synapse.existingSecret=customer-synapse"),
     "SYNAPSE_DB_PASSWORD must have one source, but services.synapse (Secret customer-synapse)"),
    (("-f", B2B_VALUES, "--set", "existingSecret="),
     "AUTH_DB_PASSWORD belongs to services.postgres, which runs outside the chart "
     "(external.host): the chart cannot generate it for services.auth"),
])
def test_an_incoherent_secret_source_fails_the_install(chart, args, message):
    args = tuple(str(chart / a) if a == B2B_VALUES else a for a in args)
    result = helm("template", RELEASE, str(chart), *args, check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_one_source_for_each_database_password(chart, estate):
    """PostgreSQL and its consumers read a database password from the user's Secrets together
    (coherent: it renders), and the README says which keys each Secret must hold."""
    objs = template(chart, "--set", "existingSecret=customer",
                    "--set", "services.postgres.existingSecret=customer-pg")
    pg = next(o for o in objs if o["metadata"]["name"] == "postgres" and o["kind"] ==
              "StatefulSet")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in pg} == {"customer-pg"}
    passwords = {d.password_secret for d in estate.databases}
    assert not [k for k, data in secret_data(objs).items() if passwords & set(data)]
    readme = (chart / "README.md").read_text()
    row = next(line for line in readme.splitlines()
               if line.startswith("| `services.postgres` |") and "_PASSWORD" in line)
    assert {d.password_secret for d in (*estate.databases, *estate.monitors)} | \
        {"POSTGRES_PASSWORD"} == \
        set(row.split("|")[2].replace("`", "").replace(",", " ").split())


# --- public URLs follow the domain and the hostnames ------------------------------------------


def test_every_public_url_follows_the_domain_and_hostnames(chart, b2b, estate):
    """The B2B example sets its domain and one hostname: every URL browsers are sent to, and
    Matrix's server name, follow — nothing points at the catalogue's domain any more."""
    objs = by_key(b2b)
    chat = objs[("ConfigMap", NAMESPACE, "chat-web-env")]["data"]
    assert (chat["ORIGIN"], chat["PUBLIC_BACKEND_URL"], chat["PUBLIC_AUTH_URL"]) == \
        ("https://talk.customer.example", "https://chat-api.customer.example",
         "https://auth.customer.example")
    assert objs[("ConfigMap", NAMESPACE, "todo-web-env")]["data"]["ORIGIN"] == \
        "https://todo.customer.example"
    assert estate.settings.domain not in json.dumps(b2b)

    every = template(chart, "--set", "domain=example.org",
                     "--set", "services.chatBackend.hostnames={api.chat.example}")
    assert estate.settings.domain not in json.dumps(every)
    found = by_key(every)
    web = found[("ConfigMap", "manacore-apps", "chat-web-env")]["data"]
    assert web["PUBLIC_BACKEND_URL"] == "https://api.chat.example"
    assert web["ORIGIN"] == "https://chat.example.org"
    files = found[("ConfigMap", "manacore-matrix", "synapse-files")]["data"]
    homeserver = yaml.safe_load(files["config_homeserver.yaml"])
    assert (homeserver["server_name"], homeserver["public_baseurl"]) == \
        ("example.org", "https://matrix.example.org/")


# --- Pod Security in single-namespace mode --------------------------------------------------------


def notes(chart: Path, *args: str) -> str:
    """NOTES.txt as `helm install` prints it (a client-side dry run: no cluster)."""
    result = subprocess.run([str(HELM), "install", RELEASE, str(chart), "--namespace", NAMESPACE,
                             "--dry-run=client", *args], capture_output=True, text=True,
                            check=True, timeout=300, env={"KUBECONFIG": "/nonexistent",
                                                          "HOME": "/nonexistent"})
    return result.stdout.split("\nNOTES:\n", 1)[1]


def test_single_namespace_mode_asks_for_pod_security_labels(chart):
    label = (f"kubectl label namespace {NAMESPACE} pod-security.kubernetes.io/enforce=restricted"
             " \\\n    pod-security.kubernetes.io/warn=restricted")
    single = notes(chart, "--set", "namespaces.mode=single")
    assert "WARNING: namespaces.mode is single" in single and label in single
    assert "namespaces.mode is single" not in notes(chart)
    assert label.replace(" \\\n    ", " \\\n  ") in (chart / "README.md").read_text()


def test_only_declared_services_reach_the_internet(default, chart, estate):
    """The chart's policies are the stack's (one mapping): no namespace-wide internet, and the
    README names every service that gets it, with the reason."""
    assert not [o for o in default if o["metadata"]["name"] == "allow-internet"]
    pg = by_key(default)[("NetworkPolicy", "manacore-infra", "postgres")]["spec"]
    assert "ipBlock" not in json.dumps(pg)
    readme = (chart / "README.md").read_text()
    for s in estate.containers:
        assert (f"| `services.{key(s.id)}` | {s.internet} |" in readme) == bool(s.internet)
