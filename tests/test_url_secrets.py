"""Secrets inside URLs (`postgresql://chat:<password>@…`). Compose's ${X} and Kubernetes' $(X)
copy a value verbatim and cannot percent-encode it, so the decision is one alphabet on every
target: such a secret holds RFC 3986 unreserved characters only. Generated ones do (letters and
digits); a value set by hand is refused by the Pulumi program (both stacks) and by the chart's
values schema, and `.env.example` says it for Compose."""

from __future__ import annotations

import json
import subprocess
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalog.load import load_stack
from catalog.model import DbUrl, RedisUrl
from catalog.resolve import URL_SAFE
from catalog.settings import ROOT
from exports.compose import env_example
from tests.harness import run_program

STACKS = ("macmini", "k3s")
UNSAFE = "p@ss/w#rd?x"


@pytest.mark.parametrize("stack", STACKS)
def test_every_secret_written_into_a_url_is_known(stack) -> None:
    estate = load_stack(stack)[1]
    from catalog.load import load_estate

    declared = load_estate()
    expected = {f"{s.database.upper()}_DB_PASSWORD" for s in declared.valid_services
                if any(isinstance(v, DbUrl) for v in s.env.values())}
    if any(isinstance(v, RedisUrl) for s in declared.valid_services for v in s.env.values()):
        expected.add("REDIS_PASSWORD")
    assert set(estate.url_secrets) == expected
    whole = {t.secrets[0] for s in estate.services for t in s.env.values()
             if len(t.parts) == 1 and t.secrets}
    assert not whole & set(estate.url_secrets) - expected


@settings(max_examples=300, deadline=None)
@given(value=st.text(max_size=40))
def test_the_alphabet_is_exactly_what_a_url_carries_verbatim(value) -> None:
    url = f"postgresql://chat:{value}@manacore-infra-postgres:5432/chat"
    if URL_SAFE.fullmatch(value):
        parts = urlsplit(url)
        assert (parts.password or "", parts.hostname, parts.path) == (
            value, "manacore-infra-postgres", "/chat")
    else:
        assert any(c in value for c in value if not URL_SAFE.fullmatch(c))


@pytest.mark.parametrize("stack", STACKS)
def test_the_program_refuses_a_password_a_url_cannot_carry(stack) -> None:
    run = run_program(stack, secrets={"CHAT_DB_PASSWORD": UNSAFE, "REDIS_PASSWORD": "ok-1_~.x",
                                      **_required()}, raise_errors=False)
    # only component shells exist: no container, volume, random value or Kubernetes object
    assert all(r.type.startswith("manacore:stack:") for r in run.registrations)
    message = str(run.error)
    assert "CHAT_DB_PASSWORD: goes into a URL" in message
    assert "REDIS_PASSWORD" not in message
    assert UNSAFE not in message  # never the value


def test_a_url_safe_password_passes() -> None:
    run = run_program("macmini", secrets={"CHAT_DB_PASSWORD": "Abc-123_x.y~z", **_required()})
    assert run.error is None


def _required() -> dict[str, str]:
    from catalog.load import load_estate

    return {s.name: f"test-{s.name.lower()}" for s in load_estate().secrets if not s.generate}


def test_env_example_names_the_alphabet() -> None:
    text = env_example(load_stack("macmini")[1])
    block = text.split("CHAT_DB_PASSWORD=")[0].splitlines()[-1]
    assert "part of a URL: letters, digits and - . _ ~ only" in block
    gemini = text.split("GEMINI_API_KEY=")[0].splitlines()[-1]
    assert "part of a URL" not in gemini


def test_the_chart_refuses_a_password_a_url_cannot_carry(tmp_path) -> None:
    from exports import helm as chart

    chart.render(load_stack("k3s")[1], tmp_path)
    schema = json.loads((tmp_path / "manacore" / "values.schema.json").read_text())
    assert "CHAT_DB_PASSWORD" in json.dumps(schema)
    helm = ROOT / ".venv" / "bin" / "helm"
    bad = subprocess.run([str(helm), "template", "x", str(tmp_path / "manacore"), "--set",
                          f"secrets.CHAT_DB_PASSWORD={UNSAFE}"], capture_output=True, text=True)
    assert bad.returncode != 0 and "CHAT_DB_PASSWORD" in bad.stderr
    good = subprocess.run([str(helm), "template", "x", str(tmp_path / "manacore"), "--set",
                           "secrets.CHAT_DB_PASSWORD=Abc-123_x"], capture_output=True, text=True)
    assert good.returncode == 0, good.stderr
