"""Third-party images as upstream publishes them, checked offline: each pin next to where its
contract and its arm64 variant were confirmed, tags in their project's scheme, health checks that
only name binaries the image has, writable paths for read-only roots, and one test per defect
of issue 13 (each fails on the old pin or setting)."""

from __future__ import annotations

import re
import shlex
from urllib.parse import urlsplit

import pytest

from catalog.images import FAMILIES, TAG_SCHEMES, tag_matches, version
from catalog.model import Image, SecretOf, Service
from catalog.resolve import ResolvedEstate, ResolvedService
from exports.compose import health_test, to_compose
from exports.kubernetes import concrete_objects, runtime
from services import estate as declared
from tests.conftest import resolved

THIRD_PARTY = [s for s in declared().valid_services if s.image is not None and not s.image.own]


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
    """7.4.6 fixes CVE-2025-49844. The official entrypoint drops root only when its first
    argument is redis-server, so nothing may come before it; the password stays a secret
    reference filled in from the environment by each target."""
    assert version(_image("redis").tag or "") >= (7, 4, 6)
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


def test_minio_probe_uses_the_curl_its_image_ships() -> None:
    minio = _image("minio")
    svc = declared().get("minio")
    assert svc is not None and svc.health is not None and svc.health.cmd is not None
    assert svc.health.cmd[0] == "curl" and "curl" in minio.tools


def test_command_secrets_are_declared() -> None:
    names = {x.name for x in declared().secrets}
    for s in declared().valid_services:
        for arg in s.command or ():
            if isinstance(arg, SecretOf):
                assert arg.name in names, s.id
