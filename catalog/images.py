"""What upstream publishes, for checking the third-party images of the catalogue offline.

`TAG_SCHEMES`: how each project names its release tags, with where that is defined, and the
Renovate versioning that orders them (renovate.json must agree: tests/test_renovate.py).
`FAMILIES`: the executables a base image family is known to ship, so a health check never
names a binary the image lacks. An image lists what it adds in `Image.tools`.
`HELPERS`: the same currency facts as `Image.checked`/`newest` for the one-shot helper images
the exports run (their tags are the `*_IMAGE` constants of exports/, which Renovate reads).
`STALE_AFTER_DAYS`: a pin not checked upstream for longer is reported stale.
"""

from __future__ import annotations

import re
from typing import NamedTuple


class TagScheme(NamedTuple):
    pattern: str  # the whole tag
    source: str  # where upstream defines it
    versioning: str  # Renovate versioning that orders these tags ("docker" unless special)


TAG_SCHEMES: dict[str, TagScheme] = {
    "semver": TagScheme(r"^\d+\.\d+\.\d+$", "semantic versions without a prefix", "docker"),
    "v-semver": TagScheme(r"^v\d+\.\d+\.\d+$", "git release tags v<major>.<minor>.<patch>",
                          "docker"),
    # Docker Official Images and pgvector: <version>-<variant> (alpine, pg16)
    "semver-variant": TagScheme(r"^\d+\.\d+\.\d+-[a-z][a-z0-9.]*$",
                                "<version>-<variant> (variant = base or PostgreSQL major)",
                                "docker"),
    # searx/version.py: `git show -s --date='format:%Y.%m.%d' --format='%cd+%h'`, '.0' → '.',
    # '+' → '-': the commit date and the commit's abbreviated hash (7 to 9 hex digits)
    "searxng": TagScheme(r"^\d{4}\.[1-9]\d?\.[1-9]\d?-[0-9a-f]{7,12}$",
                         "https://github.com/searxng/searxng/blob/master/searx/version.py",
                         r"regex:^(?<major>\d{4})\.(?<minor>\d+)\.(?<patch>\d+)-[0-9a-f]+$"),
    "calver": TagScheme(r"^\d{4}\.\d{1,2}\.\d+$", "<year>.<month>.<patch> releases", "docker"),
}


class Family(NamedTuple):
    tools: frozenset[str]  # executables on PATH (or absolute paths) every image of it has
    source: str


_BUSYBOX = frozenset({"sh", "wget", "nc", "grep", "test", "cat"})
FAMILIES: dict[str, Family] = {
    # BusyBox applets of Alpine's base layout (sh, wget, nc, grep …)
    "alpine": Family(_BUSYBOX, "https://github.com/alpinelinux/docker-alpine (busybox)"),
    # the Prometheus projects' base: quay.io/prometheus/busybox (Dockerfile FROM … busybox)
    "prom-busybox": Family(_BUSYBOX, "https://github.com/prometheus/busybox"),
    # Debian slim: a POSIX shell and coreutils, neither wget nor curl
    "debian": Family(frozenset({"sh", "bash", "grep", "test", "cat"}),
                     "https://github.com/debuerreotype/docker-debian-artifacts"),
    # Red Hat UBI micro: no package manager; only what the image copies in counts
    "ubi-micro": Family(frozenset(), "https://catalog.redhat.com/software/containers/ubi9/"
                                     "ubi-micro"),
    # no shell, no tools: only the image's own binary
    "distroless": Family(frozenset(), "https://github.com/GoogleContainerTools/distroless"),
    "scratch": Family(frozenset(), "FROM scratch"),
    # an image whose base is not published as a Dockerfile: only its entrypoint's /bin/sh is
    # known (searxng/base); everything else must be listed by the image itself
    "posix-sh": Family(frozenset({"sh"}), "the image's #!/bin/sh entrypoint"),
}


def tag_matches(scheme: str, tag: str) -> bool:
    return re.fullmatch(TAG_SCHEMES[scheme].pattern, tag) is not None


def version(tag: str) -> tuple[int, ...]:
    """The numeric release of a tag (v1.11.90 → (1, 11, 90); 7.4.6-alpine → (7, 4, 6))."""
    found = re.search(r"\d+(?:\.\d+)+", tag)
    return tuple(int(x) for x in found.group().split(".")) if found else ()


# Repositories that can no longer be pulled or get no releases: a pin on one is rot
GONE: dict[str, str] = {
    "minio/minio": "deleted from Docker Hub in September 2026 (pull access denied … repository "
                   "does not exist; e.g. readest/readest#6195); source-only since October 2025",
    "minio/mc": "deleted from Docker Hub in September 2026 (RWTH-TIME/shoutout#169)",
    "gcr.io/cadvisor/cadvisor": "no releases after v0.52: v0.53.0 and later are published on "
                                "ghcr.io/google/cadvisor only (google/cadvisor README)",
    "containrrr/watchtower": "unmaintained; 1.7.1 asks for Docker API 1.25, which Engine 29 "
                             "refuses (containrrr/watchtower#2124)",
}


class Helper(NamedTuple):
    checked: str  # ISO date the tag was last checked upstream
    newest: str  # newest release known then, with where it was read
    confirmed: str  # where the image's contract (entrypoint, tools, arm64) was read


HELPERS: dict[str, Helper] = {  # repository → facts; the tag lives in exports/
    "busybox": Helper("2026-12-07", "1.38.0 (docker-library/busybox versions.json: latest "
                      "1.38.0, latest-1 1.37.0; 'Update to 1.38.0', 2026-05-20)",
                      "https://github.com/docker-library/busybox (Dockerfile.builder: make "
                      "defconfig, so nc has -z (NC_110_COMPAT); arm64v8 in library/busybox)"),
    "alpine": Helper("2026-12-07", "3.24.1 (VictoriaMetrics deployment/docker/Makefile "
                     "ROOT_IMAGE alpine:3.24.1, 2026-08-14); 3.20 reached end of life on "
                     "2026-04-01", "https://github.com/alpinelinux/docker-alpine (busybox sh, "
                     "sha256sum, find, stat; arm64v8)"),
    "rclone/rclone": Helper("2026-12-07", "1.76.0 (Go module proxy: github.com/rclone/rclone "
                            "v1.76.0, 2026-11-06)", "https://github.com/rclone/rclone/blob/"
                            "master/Dockerfile (FROM alpine, ENTRYPOINT rclone, WORKDIR /data, "
                            "XDG_CONFIG_HOME=/config; multi-arch images incl. linux/arm64)"),
}

STALE_AFTER_DAYS = 90  # Renovate shows a new release within a day; a human re-check quarterly
