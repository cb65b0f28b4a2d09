"""The Cloudflare Tunnel of a stack: the tunnel, its ingress rules, one proxied CNAME per public
hostname, Cloudflare Access in front of the admin UIs, and the cloudflared connector deployed
through the stack's adapter.

With `manacore:cloudflareAccountId` and `manacore:cloudflareZoneId` set, the tunnel is managed
here and its token comes from Cloudflare as a secret Output; without them only the connector is
deployed and runs with the `TUNNEL_TOKEN` config secret of a tunnel managed elsewhere.
"""

from __future__ import annotations

import os
from typing import Any

import pulumi

from catalog.resolve import ResolvedEstate
from catalog.rules import Violation
from components.base import Adapter
from exports.tunnel import (
    CONNECTOR,
    TUNNEL,
    IngressRule,
    check_rules,
    ingress_rules,
    settings_violations,
    tunnel_name,
)

SESSION = "24h"  # how long an Access login lasts on the admin UIs


class TunnelError(pulumi.RunError):
    """The tunnel cannot be set up; `violations` lists every reason. Raised before any
    resource is registered."""

    def __init__(self, violations: list[Violation]):
        self.violations = violations
        super().__init__("the Cloudflare tunnel cannot be set up (nothing was created):\n" +
                         "\n".join(f"  {v}" for v in violations))


def preflight(estate: ResolvedEstate, rules: list[IngressRule], *,
              have_token: bool) -> list[Violation]:
    """Everything that would make the tunnel fail, found before anything is created."""
    s = estate.settings
    found = check_rules(rules, s.domain) + settings_violations(estate, rules)
    if s.cloudflare_account_id and s.cloudflare_zone_id and not have_token:
        found.append(Violation(TUNNEL, "tunnel-settings", "no Cloudflare API token: pulumi "
                               "config set --secret cloudflare:apiToken <token> (or export "
                               "CLOUDFLARE_API_TOKEN)"))
    return found


class CloudflareTunnel(pulumi.ComponentResource):
    """One tunnel per stack. `token` (secret) feeds the connector; `connect(adapter)` deploys it.

    Created before the other components, so a broken ingress rule stops the program before
    anything exists; call `connect` once the adapter (which needs the token) is ready.
    """

    TYPE = "manacore:stack:CloudflareTunnel"

    def __init__(self, name: str, estate: ResolvedEstate,
                 opts: pulumi.ResourceOptions | None = None):
        settings = estate.settings
        rules = ingress_rules(estate)
        api_token = pulumi.Config("cloudflare").get_secret("apiToken")
        have_token = api_token is not None or bool(os.environ.get("CLOUDFLARE_API_TOKEN"))
        problems = preflight(estate, rules, have_token=have_token)
        if problems:
            raise TunnelError(problems)
        super().__init__(self.TYPE, name, None, opts)
        self._name, self._estate = name, estate
        self.rules = rules
        self.hostnames = sorted({r.hostname for r in rules if r.hostname})
        guarded = sorted({r.hostname for r in rules if r.hostname and r.access})
        self.managed = bool(settings.cloudflare_account_id and settings.cloudflare_zone_id)
        # the truth in both modes: only a managed tunnel's hostnames are guarded by Access
        # applications of this stack; a tunnel managed elsewhere must guard them itself
        self.access_hostnames = guarded if self.managed else []
        self.unguarded_hostnames = [] if self.managed else guarded
        self.tunnel_id: pulumi.Output[str] | None = None
        self.token: pulumi.Output[str] | None = None
        self.connector: dict[str, Any] | None = None
        if self.managed:
            self._cloudflare(api_token)
        elif guarded:
            pulumi.log.warn(f"the tunnel of stack {settings.stack} is managed elsewhere: this "
                            "stack creates no Cloudflare Access application, so "
                            f"{', '.join(guarded)} must be guarded there (see the stack output "
                            "accessUnguardedHostnames)", resource=self)

    def _cloudflare(self, api_token: pulumi.Output[str] | None) -> None:
        # imported here: 1.4 s that an unmanaged stack's preview need not pay
        import pulumi_cloudflare as cloudflare
        import pulumi_random as random

        name, s = self._name, self._estate.settings
        account, zone = s.cloudflare_account_id, s.cloudflare_zone_id
        mine = pulumi.ResourceOptions(parent=self)
        provider = cloudflare.Provider(f"{name}-cloudflare", api_token=api_token, opts=mine)
        via = pulumi.ResourceOptions(parent=self, provider=provider)
        secret = random.RandomBytes(f"{name}-secret", length=32, opts=pulumi.ResourceOptions(
            parent=self, provider=random.Provider(f"{name}-random", opts=mine)))
        tunnel = cloudflare.ZeroTrustTunnelCloudflared(
            name, account_id=account, name=tunnel_name(self._estate), config_src="cloudflare",
            tunnel_secret=secret.base64, opts=via)

        # Access first: a hostname goes live (route, DNS) only once Access guards it
        guards: dict[str, pulumi.Resource] = {}
        guarded = [r for r in self.rules if r.access and r.hostname]
        if guarded:
            admins = cloudflare.ZeroTrustAccessPolicy(
                f"{name}-admins", account_id=account, name=f"manacore {s.stack}: admins",
                decision="allow", includes=[{"email": {"email": e}} for e in s.access_emails],
                opts=via)
            for r in guarded:
                guards[r.hostname] = cloudflare.ZeroTrustAccessApplication(
                    f"{name}-access-{r.source}", account_id=account, type="self_hosted",
                    name=f"manacore {s.stack}: {r.source}", domain=r.hostname,
                    destinations=[{"type": "public", "uri": r.hostname}],
                    policies=[{"id": admins.id, "precedence": 1}], session_duration=SESSION,
                    opts=via)
            opened = [(s.id, s.public.hostname + path) for s in self._estate.services
                      if s.public and s.public.access for path in s.public.open_paths]
            if opened:  # a more specific application wins over the host's own
                everyone = cloudflare.ZeroTrustAccessPolicy(
                    f"{name}-open", account_id=account, name=f"manacore {s.stack}: open paths",
                    decision="bypass", includes=[{"everyone": {}}], opts=via)
            for sid, uri in opened:
                host = uri.split("/", 1)[0]
                slug = uri.split("/", 1)[1].replace("/", "-").replace(".", "-")
                guards[f"{host}/{slug}"] = cloudflare.ZeroTrustAccessApplication(
                    f"{name}-open-{sid}-{slug}", account_id=account, type="self_hosted",
                    name=f"manacore {s.stack}: {sid} /{uri.split('/', 1)[1]} (open)",
                    domain=uri, destinations=[{"type": "public", "uri": uri}],
                    policies=[{"id": everyone.id, "precedence": 1}], opts=via)

        cloudflare.ZeroTrustTunnelCloudflaredConfig(
            f"{name}-config", account_id=account, tunnel_id=tunnel.id, source="cloudflare",
            config={"ingresses": [r.entry() for r in self.rules]},
            opts=pulumi.ResourceOptions.merge(via, pulumi.ResourceOptions(
                depends_on=list(guards.values()))))
        target = tunnel.id.apply(lambda tid: f"{tid}.cfargotunnel.com")
        routed: dict[str, IngressRule] = {}
        for r in self.rules:
            if r.hostname:
                routed.setdefault(r.hostname, r)
        for host, r in routed.items():
            cloudflare.DnsRecord(
                f"{name}-dns-{r.source}", zone_id=zone, name=host, type="CNAME", content=target,
                proxied=True, ttl=1, comment=f"manacore {s.stack}: tunnel route to {r.source}",
                opts=pulumi.ResourceOptions.merge(via, pulumi.ResourceOptions(
                    depends_on=[guards[host]] if host in guards else [])))

        token = cloudflare.get_zero_trust_tunnel_cloudflared_token_output(
            account_id=account, tunnel_id=tunnel.id,
            opts=pulumi.InvokeOutputOptions(parent=self, provider=provider))
        self.tunnel_id = tunnel.id
        self.token = pulumi.Output.secret(token.token)

    def connect(self, adapter: Adapter) -> dict[str, Any] | None:
        """Deploy the cloudflared connector through the stack's adapter, under this component."""
        connector = next((s for s in self._estate.services if s.id == CONNECTOR), None)
        if connector is None:
            pulumi.log.warn(f"the catalogue has no {CONNECTOR} service on stack "
                            f"{self._estate.settings.stack}: the tunnel has no connector",
                            resource=self)
        else:
            self.connector = adapter.deploy(connector, self)
        self.register_outputs({
            "tunnelId": self.tunnel_id, "hostnames": self.hostnames,
            "accessHostnames": self.access_hostnames,
            "accessUnguardedHostnames": self.unguarded_hostnames, "connector": self.connector,
        })
        return self.connector
