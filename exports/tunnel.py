"""Cloudflare Tunnel ingress: the rules cloudflared routes by, from the catalogue's public
hostnames, checked the way cloudflared checks them, and written as a locally-managed
`config.yml`. The Pulumi component (`components.tunnel`) sends the very same rules to the
Cloudflare API, so the two can never disagree.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from catalog import yamltext
from catalog.resolve import ResolvedEstate
from catalog.rules import EstateError, Violation

CATCH_ALL = "http_status:404"
CONNECTOR = "cloudflared"  # the catalogue's connector service
TUNNEL = "tunnel"  # names violations that belong to no single service
PLACEHOLDER_ID = "TUNNEL-UUID"  # stands for `cloudflared tunnel create`'s id in a rendered file
CREDENTIALS_DIR = "/etc/cloudflared"
_URL_SCHEMES = ("http", "https", "tcp", "ssh", "rdp", "smb")
_NOT_RE2 = re.compile(r"\(\?<?[=!]|\\[1-9]|\(\?P=")  # lookaround and backreferences


class IngressRule(BaseModel):
    """One cloudflared ingress rule; `source` is the catalogue service it routes to (None for
    the catch-all), kept for error messages and outputs, never sent to Cloudflare."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service: str
    hostname: str | None = None
    path: str | None = None
    source: str | None = None
    access: bool = False  # the host needs Cloudflare Access
    # cloudflared itself checks the Access JWT (locally-managed config.yml only): the Zero
    # Trust team name and the AUD tags of the host's Access application
    team_name: str | None = None
    aud_tags: tuple[str, ...] = ()

    @property
    def catch_all(self) -> bool:
        """What cloudflared treats as matching every request."""
        return self.hostname in (None, "", "*") and not self.path

    def entry(self) -> dict[str, Any]:
        """The rule in cloudflared's own keys (identical in config.yml and the API).

        `originRequest.access` must sit on the rule itself: cloudflared ignores a top-level
        access block (cloudflare/cloudflared#784, cloudflare/cloudflare-docs#32006)."""
        out: dict[str, Any] = {"hostname": self.hostname, "path": self.path,
                               "service": self.service}
        if self.team_name:
            out["originRequest"] = {"access": {"required": True, "teamName": self.team_name,
                                               "audTag": list(self.aud_tags)}}
        return {k: v for k, v in out.items() if v}


def path_pattern(path: str) -> str:
    """The RE2 pattern matching a plain catalogue path and everything below it."""
    return f"^{re.escape(path)}(/|$)"


def ingress_rules(estate: ResolvedEstate) -> list[IngressRule]:
    """Per public hostname of the stack, sorted by hostname: its closed paths (404, never
    routed), then the host's own rule; the catch-all last."""
    routed = sorted((s for s in estate.services if s.public), key=lambda s: s.public.hostname)
    rules: list[IngressRule] = []
    for s in routed:
        rules += [IngressRule(hostname=s.public.hostname, path=path_pattern(p), service=CATCH_ALL,
                              source=s.id) for p in s.public.closed_paths]
        rules.append(IngressRule(hostname=s.public.hostname, service=s.public.service_url,
                                 source=s.id, access=s.public.access))
    return [*rules, IngressRule(service=CATCH_ALL)]


def local_rules(estate: ResolvedEstate) -> tuple[list[IngressRule], list[str]]:
    """The rules of a locally-managed config.yml and a warning per host left out.

    Nothing outside this stack guards a locally-managed tunnel, so cloudflared enforces Access
    on every guarded host itself (`accessTeamName`, `accessAudTags[<service>]`); an open path of
    such a host gets a rule of its own before the host's, without the check. A guarded host
    without both settings is left out (requests to it get the catch-all's 404)."""
    s = estate.settings
    public = {svc.id: svc.public for svc in estate.services if svc.public}
    rules: list[IngressRule] = []
    left_out: list[str] = []
    for rule in ingress_rules(estate):
        pub = public.get(rule.source or "")
        if not rule.access or pub is None:
            rules.append(rule)
            continue
        aud = s.access_aud_tags.get(rule.source or "")
        if not (s.access_team_name and aud):
            left_out.append(f"{rule.hostname} ({rule.source}) is left out of config.yml: it "
                            "needs Cloudflare Access and cloudflared cannot enforce it without "
                            f"manacore:accessTeamName and manacore:accessAudTags.{rule.source}")
            continue
        rules += [rule.model_copy(update={"path": path_pattern(p), "access": False})
                  for p in pub.open_paths]
        rules.append(rule.model_copy(update={"team_name": s.access_team_name,
                                             "aud_tags": (aud,)}))
    return rules, left_out


def _in_zone(hostname: str, zone: str) -> bool:
    bare = hostname.removeprefix("*.")
    return bare == zone or bare.endswith(f".{zone}")


def _service_problem(service: str) -> str | None:
    """Why cloudflared would refuse this origin, or None."""
    if service.startswith("http_status:"):
        code = service.removeprefix("http_status:")
        return None if code.isdigit() and 100 <= int(code) <= 599 else (
            f"{service!r} is not an HTTP status; write http_status:404")
    if service.startswith(("unix:", "unix+tls:")) or service in ("hello_world", "bastion"):
        return None
    url = urlsplit(service)
    if url.scheme not in _URL_SCHEMES or not url.hostname:
        return (f"{service!r} needs a scheme and a host, e.g. http://name:port "
                f"(schemes: {', '.join(_URL_SCHEMES)})")
    if url.path:
        return (f"{service!r} has a path; cloudflared forwards the request's own path and "
                "cannot proxy to another one: drop everything after the port")
    return None


def check_rules(rules: Sequence[IngressRule], zone: str) -> list[Violation]:
    """Every rule cloudflared enforces (plus: inside the zone, unique), all at once.

    Path patterns are compiled with Python's `re`, which accepts a superset of Go's RE2;
    lookaround and backreferences, which RE2 lacks, are refused explicitly.
    """
    found: list[Violation] = []

    def bad(rule: IngressRule, index: int, name: str, message: str) -> None:
        where = f"rule #{index + 1}" + (f" ({rule.hostname})" if rule.hostname else "")
        found.append(Violation(rule.source or TUNNEL, name, f"{where}: {message}"))

    if not rules:
        return [Violation(TUNNEL, "tunnel-rules", "no ingress rules at all; cloudflared needs "
                          f"at least the catch-all `service: {CATCH_ALL}`")]
    last = len(rules) - 1
    if not rules[last].catch_all:
        bad(rules[last], last, "tunnel-catch-all", "the last rule must match every request "
            f"(no hostname, no path); append `service: {CATCH_ALL}`")
    seen = Counter((r.hostname, r.path) for r in rules if not r.catch_all)
    for i, rule in enumerate(rules):
        host = rule.hostname or ""
        if rule.catch_all and i != last:
            bad(rule, i, "tunnel-catch-all", "matches every request, so the rules after it "
                "are never used; give it a hostname or move it to the end")
        if ":" in host:
            bad(rule, i, "tunnel-hostname", "a hostname cannot carry a port; the origin port "
                "belongs in the service URL")
        if "*" in host and (host.count("*") > 1 or not host.startswith("*.")) and host != "*":
            bad(rule, i, "tunnel-wildcard", "a wildcard may only be the whole leading label, "
                "e.g. *.example.com")
        if host and host != "*" and not _in_zone(host, zone):
            bad(rule, i, "tunnel-zone", f"{host} is outside the zone {zone}; Cloudflare only "
                "routes hostnames of the stack's domain (manacore:domain)")
        if host and seen[(rule.hostname, rule.path)] > 1:
            bad(rule, i, "tunnel-unique", f"{host}{' path ' + rule.path if rule.path else ''} "
                "is routed twice; only the first rule would ever match")
        if rule.path:
            try:
                re.compile(rule.path)
                if _NOT_RE2.search(rule.path):
                    raise re.error("lookaround and backreferences are not RE2")
            except re.error as exc:
                bad(rule, i, "tunnel-path", f"path pattern {rule.path!r} does not compile as a "
                    f"Go (RE2) regular expression: {exc}")
        problem = _service_problem(rule.service)
        if problem:
            bad(rule, i, "tunnel-service", problem)
    return sorted(dict.fromkeys(found), key=lambda v: (v.service, v.rule, v.message))


def violations(estate: ResolvedEstate) -> list[Violation]:
    """The stack's ingress rules against cloudflared's rules and the stack's zone, and the
    stack's tunnel settings."""
    rules = ingress_rules(estate)
    return check_rules(rules, estate.settings.domain) + settings_violations(estate, rules)


def settings_violations(estate: ResolvedEstate, rules: Sequence[IngressRule]) -> list[Violation]:
    """The tunnel settings of the stack (its secrets aside: the program checks those)."""
    s = estate.settings
    found = []
    ids = (s.cloudflare_account_id, s.cloudflare_zone_id)
    if any(ids) and not all(ids):
        found.append(Violation(TUNNEL, "tunnel-settings", "set both manacore:cloudflareAccountId"
                               " and manacore:cloudflareZoneId (or neither, to run the connector "
                               "of a tunnel managed elsewhere with the TUNNEL_TOKEN secret)"))
    guarded = sorted(r.source or "" for r in rules if r.access)
    for sid in sorted(set(s.access_aud_tags) - set(guarded)):
        found.append(Violation(TUNNEL, "tunnel-access", f"manacore:accessAudTags names {sid}, "
                               "which has no Access-guarded public hostname on this stack; "
                               f"guarded: {', '.join(guarded) or 'none'}"))
    if s.access_aud_tags and not s.access_team_name:
        found.append(Violation(TUNNEL, "tunnel-access", "manacore:accessAudTags needs "
                               "manacore:accessTeamName (the <team> of "
                               "<team>.cloudflareaccess.com) for cloudflared to check them"))
    if all(ids) and guarded and not s.access_emails:
        found.append(Violation(TUNNEL, "tunnel-access", f"{', '.join(guarded)} must sit "
                               "behind Cloudflare Access but nobody may pass it: pulumi config"
                               " set --path 'manacore:accessEmails[0]' you@example.org"))
    return found


def checked_rules(estate: ResolvedEstate) -> list[IngressRule]:
    """The stack's ingress rules; raises EstateError listing every violation."""
    rules = ingress_rules(estate)
    found = check_rules(rules, estate.settings.domain)
    if found:
        raise EstateError(found)
    return rules


def tunnel_name(estate: ResolvedEstate) -> str:
    """The tunnel's name in the Cloudflare account: one tunnel per stack."""
    return f"manacore-{estate.settings.stack}"


def to_cloudflared_config(estate: ResolvedEstate, tunnel_id: str) -> dict[str, Any]:
    """cloudflared's config.yml for a locally-managed tunnel (no secret: the credentials file
    is created by `cloudflared tunnel create` and only referenced)."""
    checked_rules(estate)
    found = settings_violations(estate, ingress_rules(estate))
    found = [v for v in found if v.rule == "tunnel-access" and "accessEmails" not in v.message]
    if found:
        raise EstateError(found)
    rules, _ = local_rules(estate)
    return {
        "tunnel": tunnel_id,
        "credentials-file": f"{CREDENTIALS_DIR}/{tunnel_id}.json",
        "ingress": [rule.entry() for rule in rules],
    }


def render(estate: ResolvedEstate, out_dir: Path) -> list[Path]:
    """Write `out_dir/config.yml`; the tunnel id is a placeholder to replace. Each guarded host
    left out is named in the file's header and warned about on stderr."""
    name = tunnel_name(estate)
    config = to_cloudflared_config(estate, PLACEHOLDER_ID)
    _, left_out = local_rules(estate)
    for line in left_out:
        print(f"warning: {line}", file=sys.stderr)
    routes = "".join(f"#   cloudflared tunnel route dns {name} {host}\n" for host in
                     dict.fromkeys(e["hostname"] for e in config["ingress"] if "hostname" in e))
    header = (f"# cloudflared config for stack {estate.settings.stack}, generated by "
              "`manacore render tunnel` (regenerate, don't edit).\n"
              f"# Create the tunnel once with `cloudflared tunnel create {name}`, replace "
              f"{PLACEHOLDER_ID} below with its id,\n"
              "# route each hostname to it (the Pulumi stacks do this themselves):\n"
              f"{routes}"
              "# and run `cloudflared tunnel --config config.yml run`.\n"
              "# Cloudflare Access: cloudflared checks the Access token on every guarded host "
              "below (originRequest.access).\n"
              + "".join(f"# NOT ROUTED: {line}\n" for line in left_out))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "config.yml"
    path.write_text(header + yamltext.dump(config))
    return [path]
