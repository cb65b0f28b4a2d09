"""Third-party images as upstream publishes them, checked offline: each pin next to where its
contract and its arm64 variant were confirmed, tags in their project's scheme, health checks that
only name binaries the image has, writable paths for read-only roots, each pin a release
upstream published (real tag lists recorded from upstream: tests/data/upstream_tags.json), and
one test per defect of issues 13 and 24 (each fails on the old pin or setting)."""

from __future__ import annotations

import json
import re
import shlex
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from catalog.images import FAMILIES, GONE, TAG_SCHEMES, tag_matches, version
from catalog.model import Image, SecretOf, Service
from catalog.resolve import ResolvedEstate, ResolvedService
from exports.compose import health_test, to_compose
from exports.kubernetes import concrete_objects, runtime
from exports.tunnel import ingress_rules, path_pattern
from services import estate as declared
from tests.conftest import resolved

THIRD_PARTY = [s for s in declared().valid_services if s.image is not None and not s.image.own]
# Real tags of every pinned image, recorded from upstream (see its "_about")
UPSTREAM = json.loads((Path(__file__).parent / "data" / "upstream_tags.json").read_text())
CHECKED = date(2026, 12, 7)  # the review of issue 24


def _image(sid: str) -> Image:
    svc = declared().get(sid)
    assert svc is not None and svc.image is not None
    return svc.image


def _ids(services: list[Service]) -> list[str]:
    return [s.id for s in services]


# --- every third-party image ---------------------------------------------------------------


@pytest.mark.parametrize("svc", THIRD_PARTY, ids=_ids(THIRD_PARTY))
def test_each_pin_records_where_it_was_confirmed(svc: Service) -> None:
    """The Mac Mini is arm64: every image needs an arm64 variant, and the catalogue says where
    that and the image's contract were read."""
    img = svc.image
    assert img is not None and img.tag
    assert img.scheme in TAG_SCHEMES, f"{svc.id}: tag scheme {img.scheme!r} unknown"
    assert tag_matches(img.scheme, img.tag), f"{svc.id}: {img.tag} is not a {img.scheme} tag"
    assert img.family in FAMILIES, f"{svc.id}: image family {img.family!r} unknown"
    for fact in (img.confirmed, img.arm64):
        assert urlsplit(fact.split()[0]).scheme == "https", f"{svc.id}: {fact!r} names no source"
    assert date.fromisoformat(img.checked) >= CHECKED, f"{svc.id}: when was it checked?"
    assert img.newest and "(" in img.newest, f"{svc.id}: newest release and where it was read"
    assert img.repository not in GONE, f"{svc.id}: {img.repository} {GONE.get(img.repository)}"


# --- tag schemes against the tags upstream really published ----------------------------------


def _order_key(versioning: str, tag: str) -> tuple:
    """How Renovate orders two tags: its docker versioning (v stripped, numeric release,
    compatible only with the same suffix and length) or a regex versioning's groups."""
    if versioning.startswith("regex:"):
        pattern = versioning.removeprefix("regex:").replace("(?<", "(?P<")
        found = re.fullmatch(pattern, tag)
        assert found, tag
        return tuple(int(found.group(g)) for g in ("major", "minor", "patch", "build")
                     if g in found.groupdict())
    return tuple(int(x) for x in tag.removeprefix("v").split("-")[0].split("."))


def _docker_compatible(tag: str, pin: str) -> bool:
    def parse(t: str) -> tuple[int, str] | None:
        head, _, suffix = t.removeprefix("v").partition("-")
        return (len(head.split(".")), suffix) if re.fullmatch(r"\d+(\.\d+)*", head) else None
    return parse(tag) is not None and parse(tag) == parse(pin)


@pytest.mark.parametrize("svc", THIRD_PARTY, ids=_ids(THIRD_PARTY))
def test_the_pin_is_a_release_upstream_published_and_the_newest_known(svc: Service) -> None:
    img = svc.image
    assert img is not None and img.tag and img.scheme
    recorded = UPSTREAM[img.repository]
    assert img.tag in recorded["releases"], f"{svc.id}: {img.tag} was never published"
    newest = recorded["releases"][0]
    assert version(img.newest.split(" ")[0]) == version(newest), \
        f"{svc.id}: the catalogue's newest release differs from the recorded tag list"


@pytest.mark.parametrize("repository", sorted(k for k in UPSTREAM if not k.startswith("_")))
def test_each_scheme_takes_every_release_and_refuses_the_other_tags(repository: str) -> None:
    """The current and the next tags match the scheme, so Renovate's proposals pass the
    catalogue's checks; floating tags, variants and pre-releases do not."""
    [img] = {s.image for s in THIRD_PARTY if s.image and s.image.repository == repository}
    recorded = UPSTREAM[repository]
    assert img.scheme is not None
    for tag in recorded["releases"]:
        assert tag_matches(img.scheme, tag), f"{repository}: release {tag} is not {img.scheme}"
    for tag in recorded["other"]:
        assert not tag_matches(img.scheme, tag), f"{repository}: {tag} passes {img.scheme}"


@pytest.mark.parametrize("repository", sorted(k for k in UPSTREAM if not k.startswith("_")))
def test_renovate_orders_the_releases_as_upstream_published_them(repository: str) -> None:
    [img] = {s.image for s in THIRD_PARTY if s.image and s.image.repository == repository}
    assert img.scheme is not None
    versioning = TAG_SCHEMES[img.scheme].versioning
    releases = UPSTREAM[repository]["releases"]
    assert sorted(releases, key=lambda t: _order_key(versioning, t), reverse=True) == releases


def test_renovate_never_proposes_a_tag_outside_the_scheme() -> None:
    """A tag Renovate's docker versioning finds compatible with the pin (same suffix, as many
    parts), which the scheme refuses — cAdvisor's 0.61.1 beside v0.61.1 — is kept out by an
    allowedVersions rule."""
    config = json.loads((Path(__file__).parent.parent / "renovate.json").read_text())
    for s in THIRD_PARTY:
        assert s.image is not None and s.image.tag and s.image.scheme
        if TAG_SCHEMES[s.image.scheme].versioning != "docker":
            continue
        allowed = [r["allowedVersions"].strip("/") for r in config["packageRules"]
                   if "allowedVersions" in r and s.image.repository in r.get("matchDepNames", [])]
        for tag in UPSTREAM[s.image.repository]["other"]:
            if _docker_compatible(tag, s.image.tag) and not tag_matches(s.image.scheme, tag):
                assert any(not re.fullmatch(a, tag) for a in allowed), \
                    f"{s.id}: Renovate could propose {tag}; add an allowedVersions rule"


def _commands(script: str) -> list[str]:
    """The programs a `sh -c` script runs: the first word of each pipeline stage."""
    found = []
    for stage in re.split(r"\|\||&&|[|;]", script):
        words = [w for w in shlex.split(stage) if not re.match(r"^[A-Z_][A-Z0-9_]*=", w)]
        if words:
            found.append(words[0])
    return found


def needed_binaries(svc: ResolvedService) -> list[str | tuple[str, ...]]:
    """What the Docker health test runs inside the container; a tuple is "one of these"."""
    test = health_test(svc) or []
    if not test:
        return []
    if test[0] == "CMD":
        argv = test[1:]
        return [argv[0], *(_commands(argv[2]) if argv[0] == "sh" and argv[1] == "-c" else [])]
    # CMD-SHELL: `wget … || curl …` for http, `nc … || bash …` for tcp
    script = test[1]
    assert svc.health is not None
    return ["sh", ("wget", "curl") if svc.health.http else ("nc", "bash")] if script else []


def _has(img: Image, binary: str) -> bool:
    have = FAMILIES[img.family or ""].tools | set(img.tools)
    return binary in have or binary.rsplit("/", 1)[-1] in have


@pytest.mark.parametrize("stack", ["macmini", "k3s"])
def test_health_checks_only_run_binaries_the_image_has(stack: str) -> None:
    estate = resolved(stack)
    for s in THIRD_PARTY:
        if s.id not in {x.id for x in estate.services}:
            continue
        assert s.image is not None
        for need in needed_binaries(estate[s.id]):
            options = need if isinstance(need, tuple) else (need,)
            assert any(_has(s.image, b) for b in options), \
                f"{s.id}: its health check runs {' or '.join(options)}, which " \
                f"{s.image.repository} ({s.image.family}) lacks"


def _pods(estate: ResolvedEstate) -> dict[str, dict]:
    objects = concrete_objects(estate, lambda name: "secret")
    return {o.service: o.manifest["spec"]["template"]["spec"] for o in objects
            if o.kind in ("Deployment", "StatefulSet", "DaemonSet")}


def test_read_only_roots_get_every_path_the_image_writes() -> None:
    estate = resolved("k3s")
    pods = _pods(estate)
    for s in THIRD_PARTY:
        if s.id not in pods or s.image is None:
            continue
        spec = pods[s.id]
        container = spec["containers"][0]
        if not container["securityContext"]["readOnlyRootFilesystem"]:
            continue
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        writable = {m["mountPath"] for m in container.get("volumeMounts", [])
                    if not m.get("readOnly") and "hostPath" not in volumes[m["name"]]}
        missing = [p for p in ("/tmp", *s.image.writes) if p not in writable]
        assert not missing, f"{s.id}: read-only root without writable {missing}"


# --- the defects of issue 13, one test each -------------------------------------------------


def test_searxng_tag_is_a_real_commit_of_its_date() -> None:
    """Tags are `<commit date>-<abbreviated hash>` (searx/version.py); 2024.11.17-10a3ff7d5
    named no commit. The pin must be derived from the full commit recorded next to it."""
    img = _image("searxng")
    assert img.tag is not None
    date, short = img.tag.split("-")
    commit = re.search(r"/commit/([0-9a-f]{40})\b", img.confirmed)
    assert commit, "record the full commit the tag was built from"
    assert commit.group(1).startswith(short)
    assert not re.search(r"\.0\d", date), "version.py drops leading zeros"


def test_n8n_can_write_its_cache_on_a_read_only_root() -> None:
    """n8n mkdirs /home/node/.cache/n8n at start (n8n-io/n8n#8367, #11743)."""
    spec = _pods(resolved("k3s"))["n8n"]
    container = spec["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "/home/node/.cache" in {m["mountPath"] for m in container["volumeMounts"]}


def test_element_web_runs_as_its_non_root_user() -> None:
    """Non-root support landed in v1.11.90 (element-hq/element-web#28849); the pod runs it
    as the image's nginx user (101)."""
    assert version(_image("element-web").tag or "") >= (1, 11, 90)
    spec = _pods(resolved("k3s"))["element-web"]
    assert spec["securityContext"]["runAsUser"] == runtime(resolved("k3s")["element-web"]).uid
    assert spec["securityContext"]["runAsUser"] == 101


@pytest.mark.parametrize("stack", ["macmini", "k3s"])
def test_postgres_exporter_reaches_postgres_and_is_healthy_only_when_connected(
        stack: str) -> None:
    """v0.16 builds "postgresql://" + user:pass + "@" + DATA_SOURCE_URI: the URI has no
    scheme. Its health check asks for pg_up 1, not just a page that always answers."""
    estate = resolved(stack)
    exporter, pg = estate["postgres-exporter"], estate["postgres"]
    uri = exporter.env["DATA_SOURCE_URI"].plain
    assert uri is not None and "://" not in uri
    dsn = urlsplit("postgresql://" + "postgres:pw" + "@" + uri)
    assert (dsn.hostname, dsn.port, dsn.path) == (pg.host, pg.port("postgres").container,
                                                  "/postgres")
    assert exporter.health is not None and exporter.health.cmd is not None
    script = exporter.health.cmd[-1]
    assert "pg_up 1" in script and "/metrics" in script


@pytest.mark.parametrize("stack", ["macmini", "k3s"])
def test_redis_starts_as_redis_server_with_a_fixed_release(stack: str) -> None:
    """7.4.6 fixed CVE-2025-49844, 7.4.10 the 2026 ones. The official entrypoint drops root
    only when its first argument is redis-server, so nothing may come before it; the password
    stays a secret reference filled in from the environment by each target."""
    assert version(_image("redis").tag or "") >= (7, 4, 10)
    redis = resolved(stack)["redis"]
    assert redis.command is not None and redis.command[0].plain == "redis-server"
    password = [a for a in redis.command if a.secrets]
    assert [a.secrets for a in password] == [("REDIS_PASSWORD",)]
    assert "REDIS_PASSWORD" in redis.environment
    assert not any("REDIS_PASSWORD" in f.content.secrets for f in redis.files)


def test_redis_password_argument_in_each_target_syntax() -> None:
    compose = to_compose(resolved("macmini"))["services"]["redis"]
    assert compose["command"][0] == "redis-server"
    assert compose["command"][-1].startswith("${REDIS_PASSWORD")
    spec = _pods(resolved("k3s"))["redis"]["containers"][0]
    assert spec["args"][0] == "redis-server" and spec["args"][-1] == "$(REDIS_PASSWORD)"
    assert any(e["name"] == "REDIS_PASSWORD" and "secretKeyRef" in e["valueFrom"]
               for e in spec["env"])


def test_synapse_has_the_december_2024_security_fixes() -> None:
    assert version(_image("synapse").tag or "") >= (1, 120, 1)


def test_watchtower_stays_notify_only_on_current_engines() -> None:
    """containrrr/watchtower 1.7.1 asks for API 1.25, which Engine 29 refuses
    (containrrr/watchtower#2124); the maintained fork negotiates the version."""
    svc = declared().get("watchtower")
    assert svc is not None and svc.image is not None
    assert svc.image.repository != "containrrr/watchtower"
    assert "--monitor-only" in (svc.command or ())
    pinned = svc.env.get("DOCKER_API_VERSION")
    assert pinned is None or version(str(pinned)) >= (1, 44)


# --- the defects of issue 24, one test each -------------------------------------------------


def test_the_object_store_is_a_maintained_pullable_server_not_minio() -> None:
    """MinIO's images are gone from Docker Hub: the object store is Garage, probed by its own
    binary (the image is FROM scratch), and the apps reach it by its role's name."""
    svc = declared().get("s3")
    assert svc is not None and svc.image is not None
    assert not any(s.image and s.image.repository.startswith("minio/") for s in THIRD_PARTY)
    assert svc.image.repository == "dxflrs/garage" and svc.image.family == "scratch"
    assert svc.health is not None and svc.health.cmd == ("/garage", "health", "-q")
    assert "/garage" in svc.image.tools
    secrets = {x.name: x for x in declared().secrets}
    assert secrets["S3_RPC_SECRET"].kind == "hex32"  # Garage wants exactly 32 bytes
    assert not [n for n in secrets if "MINIO" in n]
    contacts = declared().get("contacts-backend")
    assert contacts is not None and "S3_ENDPOINT" in contacts.env


def test_n8n_has_the_rce_fixes_and_only_production_webhooks_are_open() -> None:
    """1.68.0 let anyone run code through form webhooks (CVE-2026-21858, fixed in 1.121.0;
    CVE-2025-68613 in 1.123.0). /webhook stays open for Telegram and GitHub; forms, test and
    waiting webhooks and the editor stay behind Access."""
    assert version(_image("n8n").tag or "") >= (1, 123, 0)
    rule = next(r for r in ingress_rules(resolved("macmini")) if r.source == "n8n")
    assert rule.access
    [opened] = resolved("macmini")["n8n"].public.open_paths  # type: ignore[union-attr]
    pattern = path_pattern(opened)
    assert re.search(pattern, "/webhook/0b1c-telegram") and re.search(pattern, "/webhook")
    for closed in ("/webhook-test/x", "/webhook-waiting/1", "/form/x", "/rest/login", "/"):
        assert not re.search(pattern, closed), closed


def test_redis_has_the_2026_rce_fixes() -> None:
    """7.4.9: CVE-2026-23479, CVE-2026-25243, CVE-2026-23631; 7.4.10: stream RESTORE
    use-after-free (redis/redis#15522)."""
    assert version(_image("redis").tag or "") >= (7, 4, 10)


def test_cadvisor_comes_from_ghcr_and_reads_the_containerd_image_store() -> None:
    img = _image("cadvisor")
    assert img.repository == "ghcr.io/google/cadvisor"
    assert version(img.tag or "") >= (0, 54, 0)


def test_pgvector_is_fixed_and_stays_on_postgresql_16() -> None:
    """CVE-2026-3172 (parallel HNSW build overflow) is fixed in 0.8.2; the legacy cluster is
    16, so the major stays."""
    tag = _image("postgres").tag or ""
    assert version(tag) >= (0, 8, 2) and tag.endswith("-pg16")


def test_umami_tags_follow_its_v3_scheme_and_run_on_a_read_only_root() -> None:
    img = _image("umami")
    assert img.scheme == "semver" and version(img.tag or "") >= (3, 0, 0)
    spec = _pods(resolved("k3s"))["umami"]
    assert spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_element_web_listens_above_1024_on_a_read_only_root_without_the_port_sysctl() -> None:
    spec = _pods(resolved("k3s"))["element-web"]
    container = spec["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "sysctls" not in spec.get("securityContext", {})
    svc = resolved("k3s")["element-web"]
    assert svc.port("http").container > 1024
    assert svc.env["ELEMENT_WEB_PORT"].plain == str(svc.port("http").container)
    writable = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/tmp", "/etc/nginx/conf.d", "/var/cache/nginx"} <= writable


def test_grafana_gets_no_environment_it_never_reads() -> None:
    """The datasource's URL is in its provisioning file; VICTORIAMETRICS_URL was never read."""
    assert "VICTORIAMETRICS_URL" not in resolved("macmini")["grafana"].env


def test_command_secrets_are_declared() -> None:
    names = {x.name for x in declared().secrets}
    for s in declared().valid_services:
        for arg in s.command or ():
            if isinstance(arg, SecretOf):
                assert arg.name in names, s.id
