"""What upstream publishes, for checking the third-party images of the catalogue offline.

`TAG_SCHEMES`: how each project names its release tags, with where that is defined, and the
Renovate versioning that orders them (renovate.json must agree: tests/test_renovate.py).
`FAMILIES`: the executables a base image family is known to ship, so a health check never
names a binary the image lacks. An image lists what it adds in `Image.tools`.
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
    "minio": TagScheme(r"^RELEASE\.\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z$",
                       "https://github.com/minio/minio/releases (RELEASE.<UTC time>)",
                       r"regex:^RELEASE\.(?<major>\d{4})-(?<minor>\d{2})-(?<patch>\d{2})"
                       r"T(?<build>\d{2})-\d{2}-\d{2}Z$"),
    "calver": TagScheme(r"^\d{4}\.\d{1,2}\.\d+$", "<year>.<month>.<patch> releases", "docker"),
    # umami publishes one image per database: postgresql-v<version>
    "umami": TagScheme(r"^postgresql-v\d+\.\d+\.\d+$",
                       "https://github.com/umami-software/umami/blob/v2.14.0/.github/workflows/"
                       "cd.yml (<db-type>-<git tag>)",
                       r"regex:^postgresql-v(?<major>\d+)\.(?<minor>\d+)\.(?<patch>\d+)$"),
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
