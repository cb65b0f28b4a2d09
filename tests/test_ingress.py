"""The Ingress (issue 28): the chart's `ingress` values and the k3s stack's `manacore:ingress`
setting render one mapping, routed from the same catalogue facts as the tunnel — every public
hostname to its service, closed paths to a backend that answers 404, admin UIs never routed
unprotected — with NetworkPolicies that admit the controller to exactly the routed services.
Real Helm (template, lint, install --dry-run for NOTES), kubernetes-validate and checkov; the
routing itself is replayed the way Traefik v3 builds and orders its routers."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from catalog.load import load_estate
from catalog.resolve import ResolvedEstate, resolve
from catalog.settings import IngressSettings, SettingsError, settings_from_values
from exports import renderer
from exports.helm import B2B_TLS_SECRET, B2B_VALUES
from exports.kubernetes import concrete_objects
from exports.tunnel import CATCH_ALL, ingress_rules
from tests.test_helm import CHECKOV, NAMESPACE, RELEASE, _comparable, by_key, docs, helm

BASIC = {"enabled": True, "protect": "basicAuth", "basicAuth": {"secret": "admins"},
         "tls": {"clusterIssuer": "letsencrypt"}}
FORWARD = {"enabled": True, "protect": "forwardAuth", "className": "edge",
           "annotations": {"traefik.ingress.kubernetes.io/router.entrypoints": "websecure"},
           "forwardAuth": {"address": "http://oauth2-proxy.sso.svc:4180/oauth2/auth",
                           "authResponseHeaders": ["X-Auth-Request-Email"]},
           "controller": {"namespace": "traefik", "podLabels": {"app": "edge"}}}
OMIT = {"enabled": True, "tls": {"secretName": "wildcard"}}


@pytest.fixture(scope="module")
def estate(stack_estate) -> ResolvedEstate:
    return stack_estate("k3s")


def with_ingress(estate: ResolvedEstate, ingress: dict[str, Any]) -> ResolvedEstate:
    settings = estate.settings.model_copy(update={"ingress": IngressSettings.model_validate(
        ingress)})
    return resolve(load_estate(), settings)


@pytest.fixture(scope="module")
def chart(estate, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("helm-ingress")
    renderer("helm")(estate, out)
    return out / "manacore"


def render(chart: Path, ingress: dict[str, Any], *args: str) -> list[dict[str, Any]]:
    return docs(helm("template", RELEASE, str(chart), "--namespace", NAMESPACE, "--skip-tests",
                     "--set-json", f"ingress={json.dumps(ingress)}", *args).stdout)


def of_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def hosts_of(ingress: dict[str, Any]) -> set[str]:
    return {r["host"] for r in ingress["spec"]["rules"]}


# --- Traefik v3's view of the Ingresses ---------------------------------------------------
# pkg/provider/kubernetes/ingress/kubernetes.go (v3.7): one router per path, rule
# `Host("h") && Path("/p")` for Exact, `PathPrefix("/p")` otherwise (character-wise; with
# strictPrefixMatching `(Path("/p") || PathPrefix("/p/"))`, buildStrictPrefixMatchingRule);
# pkg/muxer/http/mux.go: priority = len(rule), the highest matching router wins, none: 404.


def traefik_routers(ingresses: list[dict[str, Any]], strict: bool) -> list[tuple[str, Any]]:
    routers = []
    for ing in ingresses:
        for rule in ing["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                path, kind = p["path"], p["pathType"]
                if kind == "Exact":
                    match = f'Path("{path}")'
                elif strict and path != "/":
                    bare = path.rstrip("/")
                    match = f'(Path("{bare}") || PathPrefix("{bare}/"))'
                else:
                    match = f'PathPrefix("{path}")'
                routers.append((f'Host("{rule["host"]}") && {match}',
                                (ing, p["backend"]["service"]["name"])))
    return routers


def traefik_route(routers: list[tuple[str, Any]], host: str, path: str) -> Any:
    def matches(rule: str) -> bool:
        if f'Host("{host}")' not in rule:
            return False
        exact = re.findall(r'Path\("([^"]*)"\)', rule)
        prefixes = re.findall(r'PathPrefix\("([^"]*)"\)', rule)
        return path in exact or any(path.startswith(p) for p in prefixes)

    found = sorted((r for r in routers if matches(r[0])), key=lambda r: -len(r[0]))
    return found[0][1] if found else None


def tunnel_route(estate: ResolvedEstate, host: str, path: str) -> str:
    """cloudflared: the first rule whose hostname and path pattern match."""
    for rule in ingress_rules(estate):
        if rule.catch_all or (rule.hostname == host and
                              (rule.path is None or re.search(rule.path, path))):
            return rule.service
    raise AssertionError("no catch-all")


PROBES = ("/", "/health", "/_synapse/admin", "/_synapse/admin/", "/_synapse/admin/v1/users",
          "/_synapse/administrator", "/_matrix/client/versions", "/webhook", "/webhook/",
          "/webhook/abc", "/webhook-test/abc", "/webhooks", "/script.js", "/script.jsx",
          "/api/send", "/api/sendx", "/api/send/1", "/login")


@pytest.mark.parametrize("strict", [False, True], ids=["character-prefix", "strict-prefix"])
@pytest.mark.parametrize("ingress", [OMIT, BASIC], ids=["omit", "basicAuth"])
def test_traefik_routes_every_request_as_the_tunnel_does(chart, estate, ingress, strict):
    """Every public hostname and path goes where cloudflared sends it: the service (through
    the Middleware on a guarded host, except its open paths), a closed path to the 404
    backend; a guarded host under `omit` is not routed at all (Traefik's 404)."""
    objs = render(chart, ingress)
    routers = traefik_routers(of_kind(objs, "Ingress"), strict)
    for s in estate.services:
        if s.public is None:
            continue
        host = s.public.hostname
        for path in PROBES:
            tunnel = tunnel_route(estate, host, path)
            got = traefik_route(routers, host, path)
            where = (host, path)
            if s.public.access and ingress.get("protect", "omit") == "omit":
                assert got is None, where
                continue
            ing, backend = got
            if tunnel == CATCH_ALL:
                assert backend == f"{s.name}-not-found", where
                continue
            assert tunnel == s.public.service_url and backend == s.name, where
            guarded = "traefik.ingress.kubernetes.io/router.middlewares" in ing["metadata"][
                "annotations"]
            is_open = any(re.match(rf"^{re.escape(p)}(/|$)", path)
                          for p in s.public.open_paths)
            assert guarded == (s.public.access and not is_open), where


def test_chart_and_stack_are_one_mapping_with_ingress(chart, estate):
    """With the same ingress settings, the chart renders exactly what the k3s stack creates."""
    for ingress in (OMIT, BASIC, FORWARD):
        stack = [o.manifest for o in concrete_objects(with_ingress(estate, ingress),
                                                      lambda n: "x")]
        for o in stack:
            text = json.dumps(o).replace(f'"manacore-{estate.settings.stack}"', f'"{RELEASE}"')
            o.clear(), o.update(json.loads(text))
        rendered, pulumi = by_key(render(chart, ingress)), by_key(stack)
        assert set(rendered) == set(pulumi), ingress
        for k in rendered:
            assert _comparable(rendered[k]) == _comparable(pulumi[k]), k
        assert of_kind(stack, "Ingress")


def test_ingress_is_off_by_default(chart):
    values = helm("show", "values", str(chart)).stdout
    assert "ingress:\n  enabled: false\n  className: traefik" in values
    objs = docs(helm("template", RELEASE, str(chart), "--skip-tests").stdout)
    assert not of_kind(objs, "Ingress") and not of_kind(objs, "Middleware")


def test_hostnames_and_tls_follow_the_values(chart, estate):
    objs = by_key(render(chart, OMIT, "--set-json",
                         'services.chatWeb.hostnames=["talk.customer.example","chat.customer.example"]'))
    web = objs[("Ingress", "manacore-apps", "chat-web")]
    assert [r["host"] for r in web["spec"]["rules"]] == ["talk.customer.example",
                                                          "chat.customer.example"]
    assert web["spec"]["tls"] == [{"hosts": ["talk.customer.example", "chat.customer.example"],
                                   "secretName": "wildcard"}]
    assert web["spec"]["ingressClassName"] == "traefik"
    auth = objs[("Ingress", "manacore-core", "auth")]
    assert auth["spec"]["tls"] == [{"hosts": [estate["auth"].public.hostname],
                                    "secretName": "wildcard"}]
    assert auth["metadata"]["annotations"] == {}
    issued = by_key(render(chart, BASIC))
    for (kind, _, name), o in issued.items():
        if kind == "Ingress":
            assert o["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == \
                "letsencrypt"
            assert o["spec"]["tls"][0]["secretName"] == \
                f"{name.removesuffix('-open')}-tls"
    plain = render(chart, {"enabled": True, "tls": {"enabled": False,
                                                    "clusterIssuer": "letsencrypt"}})
    for o in of_kind(plain, "Ingress"):
        assert o["spec"]["tls"] == [] and o["metadata"]["annotations"] == {}
    custom = by_key(render(chart, FORWARD))[("Ingress", "manacore-core", "auth")]
    assert custom["spec"]["ingressClassName"] == "edge"
    assert custom["metadata"]["annotations"] == FORWARD["annotations"]


def test_guarded_hosts_are_left_out_and_named_in_the_notes(chart, estate):
    """`protect: omit` (the default): no Ingress, no Middleware and no controller peer for an
    admin UI; NOTES.txt names each one as NOT ROUTED."""
    objs = render(chart, OMIT)
    guarded = [s for s in estate.services if s.public and s.public.access]
    assert {s.id for s in guarded} == {"grafana", "n8n", "umami", "llm-playground"}
    routed = {h for o in of_kind(objs, "Ingress") for h in hosts_of(o)}
    assert routed == {s.public.hostname for s in estate.services
                      if s.public and not s.public.access}
    assert not of_kind(objs, "Middleware")
    notes = helm("install", RELEASE, str(chart), "-n", NAMESPACE, "--dry-run=client",
                 "--set-json", f"ingress={json.dumps(OMIT)}").stdout
    for s in guarded:
        assert f"WARNING: {s.public.hostname} ({s.id}) is NOT ROUTED" in notes
    assert "Closed: /_synapse/admin on matrix." in notes
    assert "TLS: the Secret wildcard" in notes
    protected = helm("install", RELEASE, str(chart), "-n", NAMESPACE, "--dry-run=client",
                     "--set-json", f"ingress={json.dumps(BASIC)}").stdout
    assert "NOT ROUTED" not in protected
    assert "Guarded: n8n." in protected and "open without it: /webhook." in protected
    assert "It reads the Secret admins in manacore-tools" in protected


@pytest.mark.parametrize("ingress", [BASIC, FORWARD], ids=["basicAuth", "forwardAuth"])
def test_protected_admin_uis_sit_behind_a_traefik_middleware(chart, estate, ingress):
    objs = by_key(render(chart, ingress))
    for s in (s for s in estate.services if s.public and s.public.access):
        ns = s.namespace
        middleware = objs[("Middleware", ns, f"{s.name}-auth")]
        assert middleware["apiVersion"] == "traefik.io/v1alpha1"
        if ingress is BASIC:
            assert middleware["spec"] == {"basicAuth": {"secret": "admins"}}
        else:
            assert middleware["spec"] == {"forwardAuth": {
                "address": FORWARD["forwardAuth"]["address"], "trustForwardHeader": False,
                "authResponseHeaders": ["X-Auth-Request-Email"]}}
        main = objs[("Ingress", ns, s.name)]
        assert main["metadata"]["annotations"][
            "traefik.ingress.kubernetes.io/router.middlewares"] == \
            f"{ns}-{s.name}-auth@kubernetescrd"
        opened = objs.get(("Ingress", ns, f"{s.name}-open"))
        if not s.public.open_paths:
            assert opened is None
            continue
        assert "traefik.ingress.kubernetes.io/router.middlewares" not in \
            opened["metadata"]["annotations"]
        paths = [(p["path"], p["pathType"]) for p in opened["spec"]["rules"][0]["http"]["paths"]]
        assert paths == [x for p in s.public.open_paths
                         for x in ((p, "Exact"), (f"{p}/", "Prefix"))]


def test_closed_paths_answer_404_from_a_backend_of_their_own(chart, estate):
    """Synapse's admin API: `Exact /_synapse/admin` and `Prefix /_synapse/admin/` to
    `synapse-not-found`, BusyBox's httpd on an empty directory (404 to everything), whose
    Service Traefik reaches by its ClusterIP (nativelb): a route that never disappears, so a
    request can never fall through to Synapse's own `/`."""
    objs = by_key(render(chart, OMIT))
    synapse = estate["synapse"]
    assert synapse.public.closed_paths == ("/_synapse/admin",)
    ns, name = synapse.namespace, "synapse-not-found"
    paths = objs[("Ingress", ns, "synapse")]["spec"]["rules"][0]["http"]["paths"]
    assert [(p["path"], p["pathType"], p["backend"]["service"]["name"]) for p in paths] == [
        ("/_synapse/admin", "Exact", name), ("/_synapse/admin/", "Prefix", name),
        ("/", "Prefix", "synapse")]
    service = objs[("Service", ns, name)]
    assert service["metadata"]["annotations"] == {
        "traefik.ingress.kubernetes.io/service.nativelb": "true"}
    deployment = objs[("Deployment", ns, name)]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["command"] == ["httpd", "-f", "-v", "-p", "8080", "-h", "/www"]
    assert pod["containers"][0]["image"].startswith("busybox:")
    assert pod["volumes"] == [{"name": "www", "emptyDir": {"sizeLimit": "1Mi"}}]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert ("PodDisruptionBudget", ns, name) in objs
    # only where there are closed paths, only with the Ingress on
    assert {k for k in objs if k[2].endswith("-not-found")} == {
        ("Service", ns, name), ("Deployment", ns, name), ("PodDisruptionBudget", ns, name),
        ("NetworkPolicy", ns, name)}


def _controller_ports(objs: dict[tuple[str, str, str], dict[str, Any]],
                      peer: dict[str, Any]) -> dict[tuple[str, str], list[int]]:
    """(namespace, pod name label) → ports the controller's pods are admitted to."""
    out: dict[tuple[str, str], list[int]] = {}
    for (kind, ns, _), o in objs.items():
        if kind != "NetworkPolicy":
            continue
        for rule in o["spec"].get("ingress", []):
            if peer in rule.get("from", []):
                pod = o["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
                out.setdefault((ns, pod), []).extend(p["port"] for p in rule["ports"])
    return out


@pytest.mark.parametrize("ingress", [OMIT, FORWARD], ids=["omit", "forwardAuth"])
def test_network_policies_admit_the_controller_to_exactly_the_routed_services(
        chart, estate, ingress):
    objs = by_key(render(chart, ingress))
    controller = IngressSettings.model_validate(ingress).controller
    peer = {"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": controller.namespace}},
        "podSelector": {"matchLabels": controller.pods}}
    routed = {(s.namespace, s.name): [s.port(s.public.port).container]
              for s in estate.containers if s.public and
              (not s.public.access or ingress.get("protect", "omit") != "omit")}
    routed[("manacore-matrix", "synapse-not-found")] = [8080]
    assert _controller_ports(objs, peer) == routed
    off = by_key(docs(helm("template", RELEASE, str(chart), "--skip-tests").stdout))
    assert _controller_ports(off, peer) == {}


@pytest.mark.parametrize(("value", "word"), [
    ('{"enabled":true,"protect":"basicAuth"}', "basicAuth/secret"),
    ('{"enabled":true,"protect":"forwardAuth"}', "forwardAuth/address"),
    ('{"enabled":true,"protect":"open"}', "protect"),
    ('{"enabled":true,"protect":"forwardAuth","forwardAuth":{"address":"ftp://sso"}}',
     "address"),
    ('{"enabled":true,"annotations":{"bad key":"x"}}', "bad key"),
    ('{"enabled":true,"tls":{"secretName":"Not_A_Name"}}', "secretName"),
    ('{"enabled":true,"controller":{"namespace":""}}', "namespace"),
    ('{"enabled":true,"nope":1}', "nope"),
])
def test_schema_rejects_bad_ingress_values(chart, value, word):
    result = helm("template", RELEASE, str(chart), "--set-json", f"ingress={value}",
                  check=False)
    assert result.returncode != 0 and word in result.stderr, (value, result.stderr)


def test_stack_setting_is_checked_like_the_values():
    base = {"target": "kubernetes", "domain": "mana.how", "registry": "ghcr.io/manacore",
            "tag": "1", "memoryBudget": "24Gi"}
    ok = settings_from_values("k3s", {**base, "ingress": BASIC})
    assert ok.ingress.protect == "basicAuth" and ok.ingress.basic_auth.secret == "admins"
    for wrong, word in (({"protect": "basicAuth"}, "basicAuth.secret"),
                        ({"nope": 1}, "unknown setting; known: enabled, className"),
                        ({"tls": {"secretName": "Bad"}}, "ingress.tls.secretName")):
        with pytest.raises(SettingsError) as err:
            settings_from_values("k3s", {**base, "ingress": wrong})
        assert word in "; ".join(err.value.problems), err.value.problems
    with pytest.raises(SettingsError) as err:
        settings_from_values("macmini", {**base, "target": "docker",
                                         "ingress": {"enabled": True}})
    assert "Kubernetes object" in "; ".join(err.value.problems)


@pytest.fixture(scope="module")
def protected(chart) -> list[dict[str, Any]]:
    return render(chart, BASIC)


@pytest.mark.parametrize("version", ["1.31.0", "1.32.0"])
def test_ingress_objects_are_valid_kubernetes(protected, version):
    for obj in protected:
        if obj["apiVersion"] != "traefik.io/v1alpha1":  # Traefik's CRD: the cluster's
            kubernetes_validate.validate(obj, version, strict=True)


def test_helm_lint_with_ingress(chart, tmp_path):
    values = tmp_path / "ingress.yaml"
    values.write_text(json.dumps({"ingress": FORWARD}))
    result = helm("lint", "--strict", str(chart), "-f", str(values), check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_checkov_passes_with_ingress(protected, tmp_path):
    assert CHECKOV.exists(), "checkov is missing: run bash scripts/setup.sh"
    (tmp_path / "ingress.yaml").write_text(yaml.safe_dump_all(protected))
    result = subprocess.run(
        [str(CHECKOV), "-d", str(tmp_path), "--framework", "kubernetes", "--skip-download",
         "--quiet", "--compact", "-o", "json"], capture_output=True, text=True, timeout=600)
    report = json.loads(result.stdout)
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == []


def test_the_b2b_example_is_reached_through_its_ingress(chart, estate):
    objs = by_key(docs(helm("template", RELEASE, str(chart), "--namespace", NAMESPACE,
                            "--skip-tests", "-f", str(chart / B2B_VALUES)).stdout))
    ingresses = {k[2]: o for k, o in objs.items() if k[0] == "Ingress"}
    assert set(ingresses) == {"auth", "chat-backend", "chat-web", "todo-backend", "todo-web"}
    assert hosts_of(ingresses["chat-web"]) == {"talk.customer.example"}
    assert hosts_of(ingresses["todo-web"]) == {"todo.customer.example"}
    assert {o["spec"]["tls"][0]["secretName"] for o in ingresses.values()} == {B2B_TLS_SECRET}
    assert all(k[1] == NAMESPACE for k in objs)


def test_the_k3s_stack_creates_what_its_setting_says(stack_run, test_secrets, estate):
    """`manacore:ingress` on the stack: the Ingresses, the Middlewares (custom resources) and
    the 404 backend, on the stack's provider; Synapse's dependents still wait for Synapse's
    StatefulSet, not its 404 backend; `up` warns about nothing when the admin UIs are
    protected, and names them when they are left out."""
    from tests.harness import run_program
    from tests.test_policy import check_registrations

    run = run_program("k3s", secrets=test_secrets, config={"ingress": json.dumps(BASIC)})
    ingresses = run.of_type("kubernetes:networking.k8s.io/v1:Ingress")
    middlewares = run.of_type("kubernetes:traefik.io/v1alpha1:Middleware")
    expected = [o for o in concrete_objects(with_ingress(estate, BASIC), lambda n: "x")]
    assert len(ingresses) == len(of_kind([o.manifest for o in expected], "Ingress"))
    assert {m.inputs["metadata"]["name"] for m in middlewares} == {
        f"{s.name}-auth" for s in estate.services if s.public and s.public.access}
    for r in (*ingresses, *middlewares):
        assert r.provider and r.parent
    assert all(r.inputs["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
               for r in ingresses)
    assert not [line for line in run.logs if "leaves out the admin UIs" in line]
    assert check_registrations(run.registrations) == {}  # the policy pack, 404 backend too
    by_urn = run.by_urn()
    statefulset = next(r for r in run.of_type("kubernetes:apps/v1:StatefulSet")
                       if r.inputs["metadata"]["name"] == "synapse")
    not_found = next(r for r in run.of_type("kubernetes:apps/v1:Deployment")
                     if r.inputs["metadata"]["name"] == "synapse-not-found")
    dependents = [r for r in run.registrations if statefulset.urn in r.dependencies]
    assert dependents and not [r for r in run.registrations
                               if not_found.urn in r.dependencies]
    assert by_urn[not_found.parent] == by_urn[statefulset.parent]
    omitted = run_program("k3s", secrets=test_secrets, config={"ingress": json.dumps(OMIT)})
    warning = [line for line in omitted.logs if "leaves out the admin UIs" in line]
    assert warning and all(estate[s].public.hostname in warning[0]
                           for s in ("grafana", "n8n", "umami", "llm-playground"))
    assert not stack_run("k3s").of_type("kubernetes:networking.k8s.io/v1:Ingress")


@pytest.mark.parametrize("where", ["chart", "project"])
def test_the_readmes_three_command_install_renders(chart, where):
    """The B2B install with Ingress and TLS as both READMEs spell it: its `helm install`
    renders an Ingress per public hostname of the customer's domain under the one Secret the
    second command creates, and no tunnel connector; every ingress value is documented."""
    from catalog.settings import ROOT

    text = ((chart / "README.md") if where == "chart" else ROOT / "README.md").read_text()
    lines = text.splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith("kubectl create namespace "
                                                                   "manacore && kubectl label"))
    create, secret, install = lines[i:i + 3]
    assert "pod-security.kubernetes.io/enforce=restricted" in create  # single mode: NOTES
    assert secret.startswith("kubectl create secret tls manacore-tls -n manacore ")
    assert install.startswith("helm install manacore ") and lines[i + 3] == "```"
    args = [str(chart) if a.endswith("/manacore") and "=" not in a else a
            for a in install.split()[2:]]
    objs = docs(helm("template", *args, "--skip-tests").stdout)
    ingresses = of_kind(objs, "Ingress")
    assert ingresses and {o["metadata"]["namespace"] for o in objs} == {"manacore"}
    assert all(h.endswith(".customer.example") for o in ingresses for h in hosts_of(o))
    assert {o["spec"]["tls"][0]["secretName"] for o in ingresses} == {"manacore-tls"}
    assert not [o for o in objs if o["metadata"]["name"] == "cloudflared"]
    if where == "chart":
        for name, field in IngressSettings.model_fields.items():
            assert f"`ingress.{field.alias or name}" in text, name
