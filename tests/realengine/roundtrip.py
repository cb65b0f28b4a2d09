"""The round trip of issue 25 on the suite's engine: what `docker inspect` reports for each
container Compose started from the catalogue, read the way the docker provider reads it into its
state (tests/docker_state.py), against what the docker adapter registers under mocks for the same
service with the same secrets. A field the engine rewrites would be a change on every preview,
or a replacement after `pulumi refresh`.

Compose and the provider build the create request themselves, and differ where neither is the
engine's doing: Compose creates a container on its first network, the provider on `bridge` and
then moves it (`networkMode` is compared only where the adapter sets it); Compose adds labels of
its own, writes extra hosts as `host=ip` (read both ways) and sends a mount without options as
a `Binds` line (`name:/path:rw`) where the provider sends `Mounts` (read as the mount it is).
A bind that creates its missing source (the backup's local repository) is a `Binds` line from
both; the provider registers it as `volumes`, which its Read never sets: checked as kept.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import tarfile
from typing import Any

from tests.docker_state import KEPT, READ_BACK, canonical, differences, reported
from tests.harness import Registration, Run, unwrap
from tests.realengine.conftest import Estate

CONTAINER = "docker:index/container:Container"
IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")
IMAGE = "docker:index/remoteImage:RemoteImage"


def _image_name(run: Run, reg: Registration) -> str:
    by_urn = run.by_urn()
    [image] = [by_urn[d] for d in reg.dependencies if d in by_urn and by_urn[d].type == IMAGE]
    return image.plain()["name"]


def _uploaded(estate: Estate, container: str, path: str) -> tuple[str, str] | None:
    """(content, octal mode) of a file in a container, read with `docker cp` (works on a
    stopped container too), or None when it is missing."""
    proc = subprocess.run(["docker", "cp", f"{container}:{path}", "-"], capture_output=True,
                          env=estate.engine.env, timeout=120)
    if proc.returncode != 0:
        return None
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        member = tar.getmembers()[0]
        data = tar.extractfile(member)
        assert data is not None, path
        return data.read().decode(), f"{member.mode & 0o7777:04o}"


def mismatches(estate: Estate, run: Run) -> tuple[list[str], int]:
    """Every field where the engine's report differs from the adapter's registration, and how
    many fields were compared. `run` is the program under mocks with the estate's secrets."""
    regs = run.of_type(CONTAINER)
    names = [r.plain()["name"] for r in regs]
    found = {c["Name"].lstrip("/"): c for c in estate.engine.inspect(*names)}
    problems: list[str] = []
    compared = 0
    for reg in regs:
        inputs = reg.plain()
        name = inputs["name"]
        inspect = found[name]
        image = _image_name(run, reg)
        # The adapter registers the RemoteImage's `imageId`, the pulled image's ID (mocks cannot
        # know it; and on the shared engine a tag may move after the container was created):
        # the provider compares it with the container's image ID, which must be spelled alike
        if not IMAGE_ID.fullmatch(inspect["Image"]):
            problems.append(f"{name}: image: the engine reports {inspect['Image']!r}, not an "
                            "image ID like RemoteImage's imageId")
        inputs = {**inputs, "image": inspect["Image"]}
        if "networkMode" not in inputs:  # the provider's default, not Compose's: see above
            inputs["networkMode"] = inspect["HostConfig"]["NetworkMode"]
        binds = {}  # source:target → read-only, of each Binds line
        for line in inspect["HostConfig"].get("Binds") or []:
            source, target, *rest = line.split(":")
            binds[f"{source}:{target}"] = "ro" in (rest[0].split(",") if rest else [])
        volumes = {f"{v['hostPath']}:{v['containerPath']}": bool(v.get("readOnly"))
                   for v in inputs.get("volumes") or []}
        for bind, read_only in volumes.items():  # kept as registered (Read never sets them)
            if binds.get(bind) != read_only:
                problems.append(f"{name}: volumes: registered {bind} (read-only: {read_only}), "
                                f"the engine's Binds: {sorted(binds.items())}")
        state = reported(binds_as_mounts(inspect, skip=set(volumes)))
        for field, (want, have) in differences(state, inputs).items():
            problems.append(f"{name}: {field}: registered {json.dumps(want)}, the engine "
                            f"reports {json.dumps(have)}")
        compared += len(inputs)
        problems += [f"{name}: {p}" for p in _kept(estate, inspect, inputs, image)]
    return problems, compared


def binds_as_mounts(inspect: dict[str, Any], skip: set[str] = frozenset()) -> dict[str, Any]:
    """`inspect` with each `HostConfig.Binds` line as the `Mounts` entry the provider would
    have sent for it: `source:target[:options]`, a bind when the source is a path. Lines whose
    `source:target` is in `skip` are the adapter's own `volumes` (a bind that creates its
    source): the provider sends those as Binds too, and its Read leaves them out of `mounts`."""
    host = inspect["HostConfig"]
    mounts = list(host.get("Mounts") or [])
    for line in host.get("Binds") or []:
        source, target, *rest = line.split(":")
        if f"{source}:{target}" in skip:
            continue
        options = rest[0].split(",") if rest else []
        mounts.append({"Type": "bind" if source.startswith("/") else "volume",
                       "Source": source, "Target": target, "ReadOnly": "ro" in options})
    return {**inspect, "HostConfig": {**host, "Mounts": mounts, "Binds": None}}


def _kept(estate: Estate, inspect: dict[str, Any], inputs: dict[str, Any],
          image: str) -> list[str]:
    """The fields the provider keeps as registered (KEPT), against what the engine runs."""
    assert {"envs", "labels", "uploads", "networksAdvanced"} <= set(KEPT)
    config = inspect["Config"]
    problems = []
    if config["Image"] != image:
        problems.append(f"image: runs {config['Image']}, registered {image}")
    env = dict(line.split("=", 1) for line in config.get("Env") or [])
    for line in unwrap(inputs.get("envs") or []):
        key, value = line.split("=", 1)
        if env.get(key) != value:
            problems.append(f"envs: {key} is not as registered")  # never print the value
    labels = config.get("Labels") or {}
    for label in inputs.get("labels") or []:
        if labels.get(label["label"]) != label["value"]:
            problems.append(f"labels: {label['label']}={labels.get(label['label'])!r}, "
                            f"registered {label['value']!r}")
    if inputs.get("networksAdvanced"):
        joined = set(inspect["NetworkSettings"]["Networks"])
        registered = {n["name"] for n in inputs["networksAdvanced"]}
        if joined != registered:
            problems.append(f"networksAdvanced: on {sorted(joined)}, registered "
                            f"{sorted(registered)}")
    for upload in inputs.get("uploads") or []:
        seen = _uploaded(estate, inspect["Name"].lstrip("/"), upload["file"])
        want = (upload["content"], upload.get("permissions") or "0644")
        if seen != want:
            problems.append(f"uploads: {upload['file']}: mode "
                            f"{seen and seen[1]}, content "
                            f"{'equal' if seen and seen[0] == want[0] else 'differs'}; "
                            f"registered mode {want[1]}")
    return problems


def same_spelling(fields: list[str], real: dict[str, Any], model: dict[str, Any]
                  ) -> dict[str, tuple[Any, Any]]:
    """Fields where the engine model (tests/docker_state.engine_inspect) and the real engine
    disagree, as the provider would read them."""
    left, right = reported(real), reported(model)
    return {f: (left.get(f), right.get(f)) for f in fields
            if canonical(left.get(f), READ_BACK[f].kind) !=
            canonical(right.get(f), READ_BACK[f].kind)}
