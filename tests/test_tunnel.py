"""Cloudflare Tunnel: ingress rules from the catalogue, cloudflared's own rules, the Pulumi
resources on both stacks (under mocks), and the rendered config.yml agreeing with them."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

import components.program as program
import components.tunnel as tunnel_component
import exports.tunnel as tunnel_module
from catalog.load import load_estate, load_stack
from catalog.resolve import ResolvedEstate
from catalog.rules import EstateError
from catalog.settings import ROOT
from components.tunnel import CloudflareTunnel, TunnelError
from exports.tunnel import (
    CATCH_ALL,
    PLACEHOLDER_ID,
    IngressRule,
    check_rules,
    ingress_rules,
    render,
    to_cloudflared_config,
    violations,
)
from tests.cli_run import invoke
from tests.harness import Registration, Run, has_secret, run_program, unwrap

STACKS = ("macmini", "k3s")
ACCOUNT = "0123456789abcdef0123456789abcdef"
ZONE = "fedcba9876543210fedcba9876543210"
EMAILS = ["ops@mana.how", "admin@mana.how"]
MANAGED = {"cloudflareAccountId": ACCOUNT, "cloudflareZoneId": ZONE,
           "accessEmails": json.dumps(EMAILS)}
API_TOKEN = "test-cloudflare-api-token"
# every secret nobody can generate; TUNNEL_TOKEN only matters when the tunnel is not managed
REQUIRED = {s.name: f"test-{s.name.lower()}-value" for s in load_estate().secrets
            if not s.generate}
MANAGED_SECRETS = {**{k: v for k, v in REQUIRED.items() if k != "TUNNEL_TOKEN"},
                   "cloudflare:apiToken": API_TOKEN}
TUNNEL_TYPE = "cloudflare:index/zeroTrustTunnelCloudflared:ZeroTrustTunnelCloudflared"
CONFIG_TYPE = ("cloudflare:index/zeroTrustTunnelCloudflaredConfig:"
               "ZeroTrustTunnelCloudflaredConfig")
DNS_TYPE = "cloudflare:index/dnsRecord:DnsRecord"
APP_TYPE = "cloudflare:index/zeroTrustAccessApplication:ZeroTrustAccessApplication"
POLICY_TYPE = "cloudflare:index/zeroTrustAccessPolicy:ZeroTrustAccessPolicy"
COMPONENT = "manacore:stack:CloudflareTunnel"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pulumi_cloudflare")


@pytest.fixture(autouse=True)
def _no_ambient_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLOUDFLARE_API_TOKEN", raising=False)


def resolved(stack: str) -> ResolvedEstate:
    return load_stack(stack)[1]


# --- the rules, from the catalogue ---------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_one_rule_per_public_hostname_sorted_then_catch_all(stack: str) -> None:
    estate = resolved(stack)
    rules = ingress_rules(estate)
    public = sorted(s.public.hostname for s in estate.services if s.public)
    hosts = [r.hostname for r in rules[:-1] if r.service != CATCH_ALL]
    assert hosts == public
    assert rules[-1] == IngressRule(service=CATCH_ALL) and rules[-1].catch_all
    assert not any(r.catch_all for r in rules[:-1])
    assert violations(estate) == []


@pytest.mark.parametrize("stack", STACKS)
def test_every_service_url_is_the_resolved_address_on_that_stack(stack: str) -> None:
    estate = resolved(stack)
    for rule in ingress_rules(estate)[:-1]:
        if rule.service == CATCH_ALL:
            continue  # a closed path
        svc = estate[rule.source]
        port = svc.port(svc.public.port).container
        expected = (f"http://{svc.name}.{svc.namespace}.svc.cluster.local:{port}"
                    if stack == "k3s" else f"http://{svc.container_name}:{port}")
        assert rule.service == expected == svc.url(svc.public.port)


def test_admin_uis_are_behind_access_or_not_public() -> None:
    estate = resolved("macmini")
    for sid in ("grafana", "n8n", "s3", "umami", "victoriametrics"):
        public = estate[sid].public
        assert public is None or public.access, sid
    guarded = {r.source for r in ingress_rules(estate) if r.access}
    assert guarded == {"grafana", "n8n", "umami", "llm-playground"}
    # Garage has no web console: its admin API is never routed from outside
    assert estate["s3"].public is None


@pytest.mark.parametrize("stack", STACKS)
def test_synapse_admin_is_never_routed_from_outside(stack: str) -> None:
    rules = ingress_rules(resolved(stack))
    matrix = [r for r in rules if r.source == "synapse"]
    assert [(r.path, r.service) for r in matrix] == [
        ("^/_synapse/admin(/|$)", CATCH_ALL), (None, resolved(stack)["synapse"].url("http"))]
    assert rules.index(matrix[0]) < rules.index(matrix[1])  # the first match wins


AUD = {sid: f"{i:x}" * 64 for i, sid in enumerate(
    ("grafana", "n8n", "umami", "llm-playground"), start=1)}


def with_access(estate: ResolvedEstate, team: str | None = "manacore",
                aud: dict[str, str] | None = None) -> ResolvedEstate:
    settings = estate.settings.model_copy(update={
        "access_team_name": team, "access_aud_tags": AUD if aud is None else aud})
    return estate.model_copy(update={"settings": settings})


@pytest.mark.parametrize("stack", STACKS)
def test_config_yml_leaves_guarded_hosts_out_without_access_settings(
        stack: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    estate = resolved(stack)
    [path] = render(estate, tmp_path)
    text = path.read_text()
    routed = {e.get("hostname") for e in yaml.safe_load(text)["ingress"]}
    guarded = {r.hostname for r in ingress_rules(estate) if r.access}
    assert len(guarded) == 4 and not guarded & routed
    err = capsys.readouterr().err
    for host in guarded:
        assert f"# NOT ROUTED: {host}" in text and f"warning: {host}" in err
    assert "manacore:accessAudTags.grafana" in err


@pytest.mark.parametrize("stack", STACKS)
def test_config_yml_has_cloudflared_enforce_access_with_the_settings(stack: str,
                                                                    tmp_path: Path) -> None:
    estate = with_access(resolved(stack))
    [path] = render(estate, tmp_path)
    ingress = yaml.safe_load(path.read_text())["ingress"]
    assert "NOT ROUTED" not in path.read_text()
    for s in estate.services:
        if not (s.public and s.public.access):
            continue
        mine = [e for e in ingress if e.get("hostname") == s.public.hostname]
        *opened, host = mine
        assert host["originRequest"] == {"access": {
            "required": True, "teamName": "manacore", "audTag": [AUD[s.id]]}}
        assert [e["path"] for e in opened] == [f"^{re.escape(p)}(/|$)"
                                               for p in s.public.open_paths]
        assert all("originRequest" not in e for e in opened)
    unguarded = [e for e in ingress if e.get("hostname") == estate["chat-web"].public.hostname]
    assert unguarded and "originRequest" not in unguarded[0]


@pytest.mark.parametrize(("team", "aud", "fragment"), [
    (None, {"grafana": "a" * 64}, "needs manacore:accessTeamName"),
    ("manacore", {"chat-web": "a" * 64}, "names chat-web, which has no Access-guarded"),
])
def test_access_settings_must_fit_the_estate(team, aud, fragment, tmp_path: Path) -> None:
    estate = with_access(resolved("macmini"), team, aud)
    assert any(fragment in str(v) for v in violations(estate))
    with pytest.raises(EstateError):
        render(estate, tmp_path)


@pytest.mark.parametrize(("values", "fragment"), [
    ({"accessTeamName": "Mana Core"}, "Zero Trust team name"),
    ({"accessAudTags": {"grafana": "not-a-tag"}}, "AUD tags"),
])
def test_access_settings_are_validated(values, fragment) -> None:
    from catalog.settings import SettingsError, settings_from_values
    settings = load_stack("macmini")[1].settings
    base = settings.model_dump(by_alias=True, exclude={"stack"}, exclude_none=True)
    with pytest.raises(SettingsError) as exc:
        settings_from_values("macmini", {**base, **values})
    assert fragment in str(exc.value)


# --- cloudflared's rules: each one has a failing case ---------------------------------------

ZONE_NAME = "mana.how"


def ok(host: str = "app.mana.how", service: str = "http://web:3000", **kw: Any) -> IngressRule:
    return IngressRule(hostname=host, service=service, source=kw.pop("source", "web"), **kw)


END = IngressRule(service=CATCH_ALL)
BROKEN = [
    ("tunnel-rules", [], "tunnel", "at least the catch-all"),
    ("tunnel-catch-all", [ok()], "web", "last rule must match every request"),
    ("tunnel-catch-all", [ok(), IngressRule(service=CATCH_ALL, path="/x")], "tunnel",
     "last rule must match every request"),
    ("tunnel-catch-all", [IngressRule(service="http://web:3000", source="web"), ok(), END],
     "web", "rules after it are never used"),
    ("tunnel-catch-all", [IngressRule(hostname="*", service="http://web:3000", source="web"),
                          END], "web", "rules after it are never used"),
    ("tunnel-wildcard", [ok("app.*.mana.how"), END], "web", "leading label"),
    ("tunnel-wildcard", [ok("*app.mana.how"), END], "web", "leading label"),
    ("tunnel-wildcard", [ok("*.*.mana.how"), END], "web", "leading label"),
    ("tunnel-hostname", [ok("app.mana.how:443"), END], "web", "cannot carry a port"),
    ("tunnel-service", [ok(service="http://web:3000/api"), END], "web", "has a path"),
    ("tunnel-service", [ok(service="http://web:3000/"), END], "web", "has a path"),
    ("tunnel-service", [ok(service="web:3000"), END], "web", "needs a scheme and a host"),
    ("tunnel-service", [ok(service="http_status:teapot"), END], "web", "not an HTTP status"),
    ("tunnel-path", [ok(path="/api/(v1"), END], "web", "does not compile"),
    ("tunnel-path", [ok(path="^/(?!admin)"), END], "web", "not RE2"),
    ("tunnel-zone", [ok("app.example.com"), END], "web", "outside the zone mana.how"),
    ("tunnel-zone", [ok("evilmana.how"), END], "web", "outside the zone"),
    ("tunnel-unique", [ok(), ok(source="other"), END], "other", "routed twice"),
]


@pytest.mark.parametrize(("rule", "rules", "service", "fragment"), BROKEN,
                         ids=[f"{r}-{i}" for i, (r, *_) in enumerate(BROKEN)])
def test_each_cloudflared_rule_has_a_failing_case(rule, rules, service, fragment) -> None:
    found = check_rules(rules, ZONE_NAME)
    hits = [v for v in found if v.rule == rule and v.service == service and fragment in v.message]
    assert hits, f"expected {rule} for {service} containing {fragment!r}, got {found}"


def test_what_cloudflared_accepts_passes() -> None:
    rules = [ok("*.preview.mana.how"), ok("mana.how"), ok(path=r"^/api/.*\.json$"),
             ok(), ok("files.mana.how", service="unix:/run/files.sock"),
             ok("tls.mana.how", service="unix+tls:/run/tls.sock"),
             ok("old.mana.how", service="http_status:410"), END]
    assert check_rules(rules, ZONE_NAME) == []


def test_all_violations_come_at_once_naming_service_rule_and_fix() -> None:
    rules = [ok("app.mana.how:8443", source="chat-web"),
             ok("grafana.example.com", service="http://grafana:3000/login", source="grafana"),
             END, ok("x.mana.how", source="late")]
    found = check_rules(rules, ZONE_NAME)
    assert {(v.service, v.rule) for v in found} >= {
        ("chat-web", "tunnel-hostname"), ("grafana", "tunnel-zone"),
        ("grafana", "tunnel-service"), ("tunnel", "tunnel-catch-all"),
        ("late", "tunnel-catch-all")}
    line = next(str(v) for v in found if v.rule == "tunnel-hostname")
    assert line.startswith("chat-web: tunnel-hostname: rule #1 (app.mana.how:8443):")
    assert "service URL" in line  # what to do


# --- the rendered config.yml ------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_render_writes_cloudflared_config(stack: str, tmp_path: Path) -> None:
    estate = resolved(stack)
    [path] = render(estate, tmp_path)
    assert path == tmp_path / "config.yml"
    config = yaml.safe_load(path.read_text())
    assert config == to_cloudflared_config(estate, PLACEHOLDER_ID)
    assert config["tunnel"] == PLACEHOLDER_ID
    assert config["credentials-file"] == f"/etc/cloudflared/{PLACEHOLDER_ID}.json"
    assert config["ingress"][-1] == {"service": CATCH_ALL}
    # every public hostname not behind Access (the guarded ones need the Access settings)
    assert sorted({e["hostname"] for e in config["ingress"][:-1]}) == \
        sorted(s.public.hostname for s in estate.services if s.public and not s.public.access)


def test_render_refuses_broken_rules(tmp_path: Path) -> None:
    estate = resolved("macmini")
    grafana = estate["grafana"]
    broken = grafana.model_copy(update={"public": grafana.public.model_copy(
        update={"service_url": grafana.public.service_url + "/login"})})
    doctored = estate.model_copy(update={"services": tuple(
        broken if s.id == "grafana" else s for s in estate.services)})
    with pytest.raises(EstateError) as exc:
        render(doctored, tmp_path)
    assert [(v.service, v.rule) for v in exc.value.violations] == [("grafana", "tunnel-service")]
    assert not (tmp_path / "config.yml").exists()


# --- the component, with a fake adapter (the real ones are tested below) ----------------------


class FakeAdapter:
    """Deploys each service as one custom resource carrying its secrets (as the real adapters
    do, from the SecretStore), so the tests see parent, provider and the token's secrecy."""

    def __init__(self, estate: ResolvedEstate, secrets) -> None:
        self.secrets = secrets

    def prepare(self, parent: pulumi.Resource) -> None:
        pass

    def deploy(self, service, parent: pulumi.Resource) -> dict[str, Any]:
        env = {name: self.secrets.value(name) for name in service.secrets}
        pulumi.CustomResource("test:index:Workload", service.id, {"env": env},
                              opts=pulumi.ResourceOptions(parent=parent))
        return {"name": service.container_name}


def fake_run(stack: str, monkeypatch: pytest.MonkeyPatch, *, config: dict | None = None,
             secrets: dict | None = None, raise_errors: bool = True) -> Run:
    monkeypatch.setattr(program, "adapter_for", FakeAdapter)
    return run_program(stack, config=config, secrets=secrets, raise_errors=raise_errors)


def children_of(run: Run, parent: Registration) -> list[Registration]:
    return [r for r in run.registrations if r.parent == parent.urn]


@pytest.fixture(scope="module", params=STACKS)
def managed(request) -> tuple[str, Run]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CLOUDFLARE_API_TOKEN", raising=False)
        return request.param, fake_run(request.param, mp, config=MANAGED,
                                       secrets=MANAGED_SECRETS)


def test_managed_tunnel_resources(managed: tuple[str, Run]) -> None:
    stack, run = managed
    estate = resolved(stack)
    rules = ingress_rules(estate)
    [component] = run.of_type(COMPONENT)
    [tunnel] = run.of_type(TUNNEL_TYPE)
    tunnel_id = f"{tunnel.name}-id"  # the mock's id for it
    assert tunnel.plain()["accountId"] == ACCOUNT
    assert tunnel.plain()["name"] == f"manacore-{stack}"
    assert tunnel.plain()["configSrc"] == "cloudflare"
    assert has_secret(tunnel.inputs["tunnelSecret"])

    [config] = run.of_type(CONFIG_TYPE)
    ingresses = config.plain()["config"]["ingresses"]
    assert ingresses == [r.entry() for r in rules]
    closed = sum(len(s.public.closed_paths) for s in estate.services if s.public)
    assert closed == 1  # Synapse's admin API
    assert len(ingresses) == len([s for s in estate.services if s.public]) + closed + 1
    assert ingresses[-1] == {"service": CATCH_ALL}
    assert config.plain()["tunnelId"] == tunnel_id

    records = run.of_type(DNS_TYPE)
    assert sorted(r.plain()["name"] for r in records) == sorted({r.hostname for r in rules[:-1]})
    for record in records:
        assert {k: record.plain()[k] for k in ("type", "content", "proxied", "zoneId")} == {
            "type": "CNAME", "content": f"{tunnel_id}.cfargotunnel.com", "proxied": True,
            "zoneId": ZONE}

    [provider] = run.of_type("pulumi:providers:cloudflare")
    assert provider.plain()["apiToken"] == API_TOKEN and has_secret(provider.inputs["apiToken"])
    for reg in run.registrations:
        if reg.type.startswith("cloudflare:"):
            assert reg.parent == component.urn, reg.name
            assert reg.provider.startswith(provider.urn + "::"), reg.name


def test_access_guards_admin_uis_before_they_go_live(managed: tuple[str, Run]) -> None:
    stack, run = managed
    guarded = sorted(r.hostname for r in ingress_rules(resolved(stack)) if r.access)
    policies = {p.plain()["decision"]: p for p in run.of_type(POLICY_TYPE)}
    assert sorted(policies) == ["allow", "bypass"]
    policy, everyone = policies["allow"], policies["bypass"]
    assert policy.plain()["includes"] == [{"email": {"email": e}} for e in EMAILS]
    apps = {a.plain()["domain"]: a for a in run.of_type(APP_TYPE)
            if a.plain()["policies"][0]["id"] == f"{policy.name}-id"}
    assert sorted(apps) == guarded
    # Umami's tracker and n8n's webhooks stay reachable: more specific apps that bypass Access
    opened = {a.plain()["domain"]: a for a in run.of_type(APP_TYPE) if a not in apps.values()}
    domain = resolved(stack).settings.domain
    assert sorted(opened) == [f"n8n.{domain}/webhook", f"umami.{domain}/api/send",
                              f"umami.{domain}/script.js"]
    for app in opened.values():
        assert app.plain()["policies"] == [{"id": f"{everyone.name}-id", "precedence": 1}]
    assert everyone.plain()["includes"] == [{"everyone": {}}]
    for host, app in apps.items():
        assert app.plain()["type"] == "self_hosted"
        assert app.plain()["policies"] == [{"id": f"{policy.name}-id", "precedence": 1}]
        [record] = [r for r in run.of_type(DNS_TYPE) if r.plain()["name"] == host]
        assert app.urn in record.dependencies  # the CNAME waits for Access
    [config] = run.of_type(CONFIG_TYPE)
    assert {a.urn for a in apps.values()} <= set(config.dependencies)
    assert sorted(run.exports["accessHostnames"]) == guarded


def test_connector_runs_under_the_tunnel_with_the_token_as_secret(
        managed: tuple[str, Run]) -> None:
    _, run = managed
    [component] = run.of_type(COMPONENT)
    [tunnel] = run.of_type(TUNNEL_TYPE)
    [connector] = [r for r in run.of_type("test:index:Workload") if r.name == "cloudflared"]
    assert connector.parent == component.urn
    env = connector.inputs["env"]
    assert has_secret(env) and unwrap(env)["TUNNEL_TOKEN"] == f"token-of-{tunnel.name}-id"
    workloads = {r.name for r in run.of_type("test:index:Workload")}
    assert "cloudflared" in workloads  # deployed once, by the tunnel, not by plan()
    assert sum(r.name == "cloudflared" for r in run.of_type("test:index:Workload")) == 1


def test_exports_name_tunnel_and_hostnames_never_the_token(managed: tuple[str, Run]) -> None:
    stack, run = managed
    [tunnel] = run.of_type(TUNNEL_TYPE)
    assert run.exports["tunnelId"] == f"{tunnel.name}-id"
    assert run.exports["hostnames"] == sorted({r.hostname for r in
                                               ingress_rules(resolved(stack))[:-1]})
    text = json.dumps(run.exports, default=str)
    for secret in (f"token-of-{tunnel.name}-id", API_TOKEN, *MANAGED_SECRETS.values()):
        assert secret not in text


def test_rendered_config_equals_what_pulumi_sends(managed: tuple[str, Run],
                                                  tmp_path: Path) -> None:
    stack, run = managed
    [config] = run.of_type(CONFIG_TYPE)
    [path] = render(with_access(resolved(stack)), tmp_path)
    text = path.read_text()
    # the same rules; the local file adds cloudflared's own Access check (and its open paths)
    # where the managed tunnel has Access applications at the edge
    local = [{k: v for k, v in e.items() if k != "originRequest"}
             for e in yaml.safe_load(text)["ingress"]]
    opened = {(s.public.hostname, f"^{re.escape(p)}(/|$)") for s in resolved(stack).services
              if s.public for p in s.public.open_paths}
    assert [e for e in local if (e.get("hostname"), e.get("path")) not in opened] == \
        config.plain()["config"]["ingresses"]
    [tunnel] = run.of_type(TUNNEL_TYPE)
    for secret in (f"token-of-{tunnel.name}-id", API_TOKEN, *REQUIRED.values(),
                   "generated-"):
        assert secret not in text


@pytest.mark.parametrize("stack", STACKS)
def test_unmanaged_stack_deploys_only_the_connector(stack: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    run = fake_run(stack, monkeypatch, secrets=REQUIRED)
    assert not [r for r in run.registrations if r.type.startswith(("cloudflare:",
                                                                   "pulumi:providers:cloudflare"))]
    [component] = run.of_type(COMPONENT)
    [connector] = children_of(run, component)
    assert connector.name == "cloudflared"
    env = connector.inputs["env"]
    assert has_secret(env) and unwrap(env)["TUNNEL_TOKEN"] == REQUIRED["TUNNEL_TOKEN"]
    assert run.exports["tunnelId"] is None
    rules = ingress_rules(resolved(stack))
    assert run.exports["hostnames"] == sorted({r.hostname for r in rules[:-1]})
    # nothing of this stack guards them: the outputs say so instead of listing them as guarded
    assert run.exports["accessHostnames"] == []
    assert run.exports["accessUnguardedHostnames"] == sorted(r.hostname for r in rules
                                                             if r.access)
    assert any("creates no Cloudflare Access application" in line for line in run.logs)


# --- checked before anything is created --------------------------------------------------------


def failing(stack: str, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> TunnelError:
    run = fake_run(stack, monkeypatch, raise_errors=False, **kw)
    assert isinstance(run.error, TunnelError), run.error
    assert run.registrations == []  # nothing at all was registered
    return run.error


@pytest.mark.parametrize(("config", "secrets", "fragment"), [
    ({"cloudflareAccountId": ACCOUNT}, REQUIRED, "set both"),
    (MANAGED, REQUIRED, "cloudflare:apiToken"),
    ({**MANAGED, "accessEmails": "[]"}, MANAGED_SECRETS, "manacore:accessEmails"),
], ids=["zone-missing", "api-token-missing", "access-emails-missing"])
def test_settings_problems_stop_the_program(config, secrets, fragment,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    error = failing("macmini", monkeypatch, config=config, secrets=secrets)
    assert any(fragment in str(v) for v in error.violations), error.violations


def test_a_domain_with_a_port_stops_the_program_before_any_resource(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # a port in manacore:domain would put a port into every public hostname: a bad setting
    run = fake_run("k3s", monkeypatch, raise_errors=False,
                   config={**MANAGED, "domain": "mana.how:8443"}, secrets=MANAGED_SECRETS)
    assert run.registrations == []
    assert "domain: 'mana.how:8443' is not a lowercase DNS domain" in str(run.error)


def test_a_broken_rule_stops_the_program_before_any_resource(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # a tunnel rule cloudflared refuses (a port in the hostname) stops the tunnel component
    monkeypatch.setattr(tunnel_component, "ingress_rules", lambda estate: [
        r.model_copy(update={"hostname": f"{r.hostname}:8443"}) if r.hostname else r
        for r in ingress_rules(estate)])
    error = failing("k3s", monkeypatch, config=MANAGED, secrets=MANAGED_SECRETS)
    public = {s.id for s in resolved("k3s").services if s.public}
    assert {v.service for v in error.violations if v.rule == "tunnel-hostname"} == public
    assert "n8n: tunnel-hostname: rule #" in str(error)
    assert "nothing was created" in str(error)


@pytest.fixture
def stack_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for stack in STACKS:
        shutil.copy(ROOT / f"Pulumi.{stack}.yaml", tmp_path / f"Pulumi.{stack}.yaml")
    monkeypatch.setenv("MANACORE_STACK_DIR", str(tmp_path))
    return tmp_path


def test_cli_renders_and_validate_reports_broken_rules(stack_dir: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    done = invoke("render", "tunnel", "--stack", "k3s", "--out", str(out))
    assert done.exit_code == 0, done.output
    assert yaml.safe_load((out / "config.yml").read_text())["ingress"][-1] == {
        "service": CATCH_ALL}
    path = stack_dir / "Pulumi.macmini.yaml"
    path.write_text(path.read_text().replace("domain: mana.how", "domain: mana.how:8443"))
    checked = invoke("validate")  # a port in the domain: a bad setting
    assert checked.exit_code == 1
    assert "settings: stack macmini: domain: 'mana.how:8443' is not" in checked.output
    path.write_text(path.read_text().replace("domain: mana.how:8443", "domain: mana.how"))
    # rules cloudflared refuses (a port in each hostname) on the macmini stack only
    real = tunnel_module.ingress_rules
    monkeypatch.setattr(tunnel_module, "ingress_rules", lambda estate: [
        r.model_copy(update={"hostname": f"{r.hostname}:8443"})
        if r.hostname and estate.settings.stack == "macmini" else r for r in real(estate)])
    checked = invoke("validate")
    assert checked.exit_code == 1
    assert "grafana: tunnel-hostname: rule #" in checked.output
    assert "stack k3s (kubernetes)" in checked.output  # the other stack is still checked
    refused = invoke("render", "tunnel", "--stack", "macmini", "--out", str(tmp_path / "refused"))
    assert refused.exit_code == 1 and "tunnel-hostname" in refused.output
    assert "Traceback" not in refused.output
    assert not (tmp_path / "refused" / "config.yml").exists()


def test_component_alone_registers_outputs_without_a_connector_service(
        monkeypatch: pytest.MonkeyPatch) -> None:
    estate = resolved("macmini")
    without = estate.model_copy(update={"services": tuple(
        s for s in estate.services if s.id != "cloudflared")})

    def build() -> None:
        tunnel = CloudflareTunnel("cloudflare-tunnel", without)
        assert tunnel.connect(FakeAdapter(without, None)) is None

    run = run_program("macmini", program=build)
    [component] = run.of_type(COMPONENT)
    assert children_of(run, component) == []
    assert any("no cloudflared service" in line for line in run.logs)


# --- the whole program on both stacks, with the real docker and kubernetes adapters ----------


@pytest.fixture(scope="module", params=STACKS)
def full(request) -> tuple[str, Run]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CLOUDFLARE_API_TOKEN", raising=False)
        return request.param, run_program(request.param, config=MANAGED,
                                          secrets=MANAGED_SECRETS)


def descends_from(run: Run, reg: Registration, ancestor: Registration) -> bool:
    by_urn = run.by_urn()
    while reg.parent:
        if reg.parent == ancestor.urn:
            return True
        reg = by_urn[reg.parent]
    return False


def test_full_stack_creates_tunnel_rules_dns_and_access(full: tuple[str, Run]) -> None:
    stack, run = full
    estate = resolved(stack)
    public = [s for s in estate.services if s.public]
    [component] = run.of_type(COMPONENT)
    [tunnel] = run.of_type(TUNNEL_TYPE)
    [config] = run.of_type(CONFIG_TYPE)
    ingresses = config.plain()["config"]["ingresses"]
    closed = [{"hostname": s.public.hostname, "path": f"^{re.escape(p)}(/|$)",
               "service": CATCH_ALL} for s in public for p in s.public.closed_paths]
    assert closed and all(c in ingresses for c in closed)
    assert len(ingresses) == len(public) + len(closed) + 1
    assert ingresses[-1] == {"service": CATCH_ALL}
    assert {e["hostname"]: e["service"] for e in ingresses[:-1]} == {
        s.public.hostname: s.public.service_url for s in public}
    assert sorted(r.plain()["name"] for r in run.of_type(DNS_TYPE)) == \
        sorted(s.public.hostname for s in public)
    assert {r.plain()["content"] for r in run.of_type(DNS_TYPE)} == {
        f"{tunnel.name}-id.cfargotunnel.com"}
    assert sorted(a.plain()["domain"] for a in run.of_type(APP_TYPE)) == sorted(
        [s.public.hostname for s in public if s.public.access] +
        [s.public.hostname + p for s in public for p in s.public.open_paths])
    assert all(r.parent == component.urn for r in run.registrations
               if r.type.startswith("cloudflare:"))


def test_full_stack_service_urls_point_at_what_the_stack_creates(full: tuple[str, Run]) -> None:
    """Each rule's origin is a container on the shared network (macmini) or a Service in the
    service's namespace (k3s) that this very run creates, on the port it listens on."""
    stack, run = full
    estate = resolved(stack)
    [config] = run.of_type(CONFIG_TYPE)
    for entry in config.plain()["config"]["ingresses"][:-1]:
        if entry["service"] == CATCH_ALL:
            continue  # a closed path
        svc = next(s for s in estate.services if s.public and
                   s.public.hostname == entry["hostname"])
        port = svc.port(svc.public.port).container
        if stack == "macmini":
            assert entry["service"] == f"http://{svc.container_name}:{port}"
            [container] = [r for r in run.of_type("docker:index/container:Container")
                           if r.plain().get("name") == svc.container_name]
            # the connector reaches it on the edge network
            assert {n["name"] for n in container.plain()["networksAdvanced"]} == {
                estate.settings.network, estate.settings.edge_network}
        else:
            assert entry["service"] == \
                f"http://{svc.name}.{svc.namespace}.svc.cluster.local:{port}"
            [k8s_service] = [r for r in run.of_type("kubernetes:core/v1:Service")
                             if r.plain()["metadata"].get("name") == svc.name and
                             r.plain()["metadata"].get("namespace") == svc.namespace]
            assert port in {p["port"] for p in k8s_service.plain()["spec"]["ports"]}


def test_full_stack_connector(full: tuple[str, Run]) -> None:
    stack, run = full
    [component] = run.of_type(COMPONENT)
    [tunnel] = run.of_type(TUNNEL_TYPE)
    token = f"token-of-{tunnel.name}-id"
    if stack == "macmini":
        [container] = [r for r in run.of_type("docker:index/container:Container")
                       if r.plain().get("name") == "manacore-infra-cloudflared"]
        assert descends_from(run, container, component)
        assert f"TUNNEL_TOKEN={token}" in container.plain()["envs"]
        assert has_secret(container.inputs["envs"])
        assert container.plain()["healthcheck"]["tests"][1:] == [
            "cloudflared", "tunnel", "--metrics", "127.0.0.1:2000", "ready"]
        return
    [deployment] = [r for r in run.of_type("kubernetes:apps/v1:Deployment")
                    if r.plain()["metadata"].get("name") == "cloudflared"]
    assert descends_from(run, deployment, component)
    spec = deployment.plain()["spec"]
    assert spec["replicas"] == 2
    [container] = spec["template"]["spec"]["containers"]
    assert container["readinessProbe"]
    # the token reaches the pods only through a Secret, which holds it as a secret
    holders = [r for r in run.of_type("kubernetes:core/v1:Secret")
               if token in json.dumps(r.plain())]
    assert holders and all(has_secret(r.inputs) for r in holders)
    assert token not in json.dumps(deployment.plain())
