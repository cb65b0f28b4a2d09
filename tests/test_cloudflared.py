"""cloudflared itself checks the rendered config.yml of each stack (issue 13, part 3): a release
built from Go modules (`harness/cloudflared.sh`; the one the catalogue pins, or the newest the
module proxy serves, with the reason in harness/cloudflared/go.mod) validates the ingress rules
and routes every public hostname to the origin the resolved model intends.

Marker `real_tools`: skipped without a Go toolchain on a workstation, failing under CI=true."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from catalog.settings import ROOT
from exports.tunnel import render
from tests.conftest import resolved

pytestmark = pytest.mark.real_tools
STACKS = ("macmini", "k3s")


@pytest.fixture(scope="module")
def cloudflared() -> Path:
    proc = subprocess.run([ROOT / "harness" / "cloudflared.sh"], capture_output=True, text=True,
                          timeout=1500)
    if proc.returncode != 0:
        reason = f"cannot build cloudflared: {proc.stderr[-2000:]}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return Path(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def configs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Per stack: the CLI's config.yml from the stack's own settings (no Access settings: the
    guarded hosts are left out) and, as `<stack>+access`, one where cloudflared enforces
    Access on them with a team name and AUD tags."""
    out = {}
    for stack in STACKS:
        folder = tmp_path_factory.mktemp(f"tunnel-{stack}")
        subprocess.run([ROOT / ".venv" / "bin" / "manacore", "render", "tunnel", "--stack",
                        stack, "--out", str(folder), "--force"], check=True, capture_output=True)
        out[stack] = folder / "config.yml"
        estate = resolved(stack)
        aud = {s.id: "0123456789abcdef" * 4 for s in estate.services
               if s.public and s.public.access}
        settings = estate.settings.model_copy(update={"access_team_name": "manacore",
                                                      "access_aud_tags": aud})
        folder = tmp_path_factory.mktemp(f"tunnel-{stack}-access")
        [out[f"{stack}+access"]] = render(estate.model_copy(update={"settings": settings}),
                                         folder)
    return out


def _run(cloudflared: Path, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(cloudflared), "tunnel", "--config", str(config), "ingress", *args],
                          capture_output=True, text=True, timeout=60)


def _wrapper(field: str) -> str:
    """A `// field: value` line of the wrapper module (harness/cloudflared/go.mod)."""
    text = (ROOT / "harness" / "cloudflared" / "go.mod").read_text()
    [value] = re.findall(rf"^// {field}: (\S+)", text, re.M)
    return value


def test_the_release_built_is_the_one_the_catalogue_pins_or_says_why_not(
        cloudflared: Path) -> None:
    """The build reports the release the wrapper module names; the wrapper names the catalogue's
    pin as `pinned` (when the two differ, its comment says why), so a pin moved without a look
    at what the checks run on fails here."""
    image = resolved("macmini")["cloudflared"].image or ""
    assert _wrapper("pinned") == image.rsplit(":", 1)[1], "harness/cloudflared/go.mod: pinned"
    version = subprocess.run([str(cloudflared), "--version"], capture_output=True, text=True)
    assert f"version {_wrapper('release')} " in version.stdout, version.stdout


@pytest.mark.parametrize("stack", [*STACKS, *(f"{s}+access" for s in STACKS)])
def test_cloudflared_validates_the_rendered_config(cloudflared: Path, configs: dict[str, Path],
                                                   stack: str) -> None:
    proc = _run(cloudflared, configs[stack], "validate")
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("stack", [*STACKS, *(f"{s}+access" for s in STACKS)])
def test_every_public_hostname_reaches_its_intended_origin(
        cloudflared: Path, configs: dict[str, Path], stack: str) -> None:
    """Every hostname reaches its origin, except a guarded one when cloudflared cannot enforce
    Access (no Access settings): that one gets the catch-all's 404, as do closed paths."""
    enforced = stack.endswith("+access")
    estate = resolved(stack.removesuffix("+access"))
    public = [s for s in estate.services if s.public]
    assert len(public) >= 25
    for s in public:
        assert s.public is not None
        origin = s.public.service_url
        if not s.native:  # derived again here, independently of the tunnel export
            assert origin == f"http://{s.host}:{s.port(s.public.port).container}", s.id
        proc = _run(cloudflared, configs[stack], "rule", f"https://{s.public.hostname}/")
        assert proc.returncode == 0, proc.stderr
        expected = origin if enforced or not s.public.access else "http_status:404"
        assert f"service: {expected}\n" in proc.stdout, (s.id, proc.stdout)
        for path in s.public.closed_paths:
            closed = _run(cloudflared, configs[stack], "rule",
                          f"https://{s.public.hostname}{path}/v1/users")
            assert "service: http_status:404\n" in closed.stdout, (s.id, closed.stdout)
    stray = _run(cloudflared, configs[stack], "rule", f"https://nothing.{estate.settings.domain}/")
    assert "service: http_status:404" in stray.stdout, stray.stdout
