"""Stack files and settings a user can get wrong: every one is a line naming the stack and what to
change, with the README's exit code (2: the file cannot be read, 1: a value breaks a rule), and
never a traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalog.model import Public
from catalog.resolve import resolve
from catalog.rules import validate
from catalog.settings import DOMAIN, ROOT, SettingsError, settings_from_values
from exports.tunnel import check_rules, ingress_rules
from tests.cli_run import Result
from tests.cli_run import invoke as run_cli
from tests.estates import MACMINI, estate

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
BASE = {"target": "docker", "domain": "mana.how", "registry": "ghcr.io/manacore",
        "tag": "2026.11.0", "memoryBudget": "10Gi"}


def invoke(*args: str) -> Result:
    """The command, which must end by its own exit (`run_cli` fails on an escaped exception)
    with no traceback printed either."""
    result = run_cli(*args)
    assert "Traceback" not in result.output
    return result


UNREADABLE = {
    "syntax error": ("config:\n  manacore:domain: [mana.how\n", "is not valid YAML (line"),
    "tab": ("config:\n\tmanacore:domain: mana.how\n", "is not valid YAML"),
    "top-level list": ("- config\n- manacore:domain\n", "must be a mapping"),
    "top-level scalar": ("just some words\n", "must be a mapping"),
    "config as a list": ("config:\n  - manacore:domain: mana.how\n", "config: must be a mapping"),
    "config as a scalar": ("config: mana.how\n", "config: must be a mapping"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "is not UTF-8 text"),
    "binary that is UTF-8": ("config:\x00\x01", "is not valid YAML"),
}


@pytest.mark.parametrize("case", UNREADABLE)
@pytest.mark.parametrize("command", ["validate", "budget", "ports", "graph"])
def test_an_unreadable_stack_file_exits_2_with_one_line(case, command, stack_dir) -> None:
    content, fragment = UNREADABLE[case]
    path = stack_dir / "Pulumi.macmini.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = invoke(command, "--stack", "macmini")
    assert result.exit_code == 2, result.output
    assert "settings: stack macmini:" in result.output and fragment in result.output


def test_a_directory_where_the_stack_file_should_be(stack_dir) -> None:
    (stack_dir / "Pulumi.macmini.yaml").unlink()
    (stack_dir / "Pulumi.macmini.yaml").mkdir()
    result = invoke("validate")
    assert result.exit_code == 2
    assert "Pulumi.macmini.yaml is not a file" in result.output
    assert "stack k3s (kubernetes)" in result.output  # the other stack is still checked


def test_two_broken_stack_files_are_both_reported(stack_dir) -> None:
    (stack_dir / "Pulumi.macmini.yaml").write_text("config: [\n")
    k3s = stack_dir / "Pulumi.k3s.yaml"
    k3s.write_text(k3s.read_text().replace("memoryBudget: 24Gi", "memoryBudget: lots"))
    result = invoke("validate")
    assert result.exit_code == 2  # the worse of the two: an unreadable file
    assert "settings: stack macmini:" in result.output
    assert "settings: stack k3s: memoryBudget:" in result.output


@FUZZ
@given(content=st.one_of(st.binary(max_size=200), st.text(max_size=200),
                         st.text(alphabet=":-[]{}\t\n #&*!|>'\"%@`,?manacore", max_size=80)))
def test_any_stack_file_content_never_traces_back(content, stack_dir) -> None:
    path = stack_dir / "Pulumi.macmini.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = invoke("validate", "--stack", "macmini")
    assert result.exit_code in (1, 2), result.output
    assert "settings: stack macmini:" in result.output


@FUZZ
@given(key=st.sampled_from([*sorted(BASE), "dockerHost", "nativeHost", "accessEmails",
                            "migratedVolumes", "network", "storageClass"]),
       value=st.one_of(st.text(max_size=30), st.integers(), st.none(), st.booleans(),
                       st.lists(st.text(max_size=5), max_size=3),
                       st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2)))
def test_any_setting_value_is_accepted_or_named(key, value, stack_dir) -> None:
    document = yaml.safe_load((ROOT / "Pulumi.macmini.yaml").read_text())  # one change each
    document["config"][f"manacore:{key}"] = value
    (stack_dir / "Pulumi.macmini.yaml").write_text(yaml.safe_dump(document))
    result = invoke("validate", "--stack", "macmini")
    assert result.exit_code in (0, 1), result.output
    if result.exit_code == 1 and "settings:" in result.output:  # named: the key or its rule
        rule = re.sub(r"[A-Z]", lambda m: f"-{m[0].lower()}", key)
        assert f"settings: stack macmini: {key}: " in result.output or \
            f"settings: {rule}: stack macmini: " in result.output, result.output


@settings(max_examples=150, deadline=None)
@given(domain=st.one_of(st.text(max_size=30),
                        st.from_regex(r"\A(https?://)?[a-z]{1,8}(\.[a-z]{2,5}){1,2}(:\d{2,4})?"
                                      r"(/[a-z]*)?\Z"),
                        st.sampled_from(["", " mana.how", "mana how", "MANA.how", "mana.how/",
                                         "https://mana.how", "mana.how:8443", ".mana.how",
                                         "mana..how", "mana.how.", "mana.how\n"])))
def test_a_domain_is_accepted_only_when_every_hostname_below_it_works(domain) -> None:
    try:
        s = settings_from_values("macmini", {**BASE, "domain": domain})
    except SettingsError as exc:
        assert exc.problems == [exc.problems[0]] and exc.problems[0].startswith("domain: ")
        return
    assert DOMAIN.fullmatch(domain)
    assert validate(estate(), s) == []
    assert check_rules(ingress_rules(resolve(estate(), s)), s.domain) == []


SETTINGS = {
    "registry with spaces": ({"registry": "ghcr.io/mana core"}, "registry: "),
    "registry upper case": ({"registry": "GHCR.io/ManaCore"}, "registry: "),
    "registry with tag": ({"registry": "ghcr.io/manacore:1"}, "registry: "),
    "nativeHost with scheme": ({"nativeHost": "http://100.64.0.10"}, "nativeHost: "),
    "nativeHost with port": ({"nativeHost": "macmini:11434"}, "nativeHost: "),
    "tag with space": ({"tag": "2026 11"}, "tag: "),
    "dockerHost without scheme": ({"dockerHost": "/var/run/docker.sock"}, "dockerHost: "),
    "account id": ({"cloudflareAccountId": "my-account"}, "cloudflareAccountId: "),
    "access e-mail": ({"accessEmails": ["ops"]}, "accessEmails: "),
    "plain secret": ({"GEMINI_API_KEY": "AIza-plain"}, "pulumi config set --secret "
                     "GEMINI_API_KEY"),
    "lower-case secret": ({"gemini_api_key": {"secure": "v1:abc"}}, "set it as GEMINI_API_KEY"),
    "camel-case secret": ({"geminiApiKey": {"secure": "v1:abc"}}, "set it as GEMINI_API_KEY"),
    "typo": ({"domian": "mana.how"}, "domian: unknown setting; known: target, domain"),
}


@pytest.mark.parametrize("case", SETTINGS)
def test_each_bad_setting_is_one_named_problem(case) -> None:
    change, fragment = SETTINGS[case]
    with pytest.raises(SettingsError) as caught:
        settings_from_values("macmini", {**BASE, **change})
    assert len(caught.value.problems) == 1 and fragment in caught.value.problems[0]
    assert not caught.value.unreadable


def test_good_settings_pass() -> None:
    settings_from_values("k3s", {**BASE, "nativeHost": "100.64.0.10",
                                 "GEMINI_API_KEY": {"secure": "v1:abc"},
                                 "cloudflareAccountId": "0123456789abcdef0123456789abcdef",
                                 "accessEmails": ["ops@mana.how"]})
    settings_from_values("k3s", {**BASE, "nativeHost": "fd7a:115c:a1e0::1"})


def test_a_config_key_without_namespace_is_named(stack_dir) -> None:
    path = stack_dir / "Pulumi.macmini.yaml"
    path.write_text(path.read_text() + "  domain: mana.how\n")
    result = invoke("validate", "--stack", "macmini")
    assert result.exit_code == 1
    assert "domain: a config key needs its namespace, e.g. manacore:domain" in result.output


@pytest.mark.parametrize("host", ["app.mana.how", "mana.how", "chat.api.mana.how"])
def test_a_public_host_given_as_a_full_name_is_named(host) -> None:
    broken = estate(**{"notes-backend": {"public": Public(host=host)}})
    s = MACMINI.model_copy(update={"domain": "mana.how"})
    found = [v for v in validate(broken, s) if v.rule == "hostname-unique"]
    assert [v.service for v in found] == ["notes-backend"]
    assert "already ends in the domain mana.how" in found[0].message


def test_a_secret_the_estate_does_not_know_is_named(stack_dir) -> None:
    path = stack_dir / "Pulumi.macmini.yaml"
    path.write_text(path.read_text() + "  manacore:POSTGRES_PASWORD:\n    secure: v1:abc\n"
                    "  manacore:POSTGRES_PASSWORD:\n    secure: v1:abc\n")
    result = invoke("validate", "--stack", "macmini")
    assert result.exit_code == 1
    assert "settings: secrets: stack macmini: POSTGRES_PASWORD is set but is no secret" in \
        result.output
    assert "POSTGRES_PASSWORD is set" not in result.output


def test_a_declared_secret_in_lower_case_is_named() -> None:
    from catalog.model import Secret

    broken = estate().model_copy(update={"secrets": (*estate().secrets, Secret(name="api_key"))})
    found = [str(v) for v in validate(broken, MACMINI)]
    assert "secrets: secrets: declared secret 'api_key' must be UPPER_SNAKE_CASE" in " ".join(
        found)


def test_a_stack_file_that_cannot_be_read(stack_dir, monkeypatch) -> None:
    real = Path.read_text

    def denied(self, *args, **kw):
        if self.name == "Pulumi.macmini.yaml":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kw)

    monkeypatch.setattr(Path, "read_text", denied)
    result = invoke("validate")
    assert result.exit_code == 2
    assert "Pulumi.macmini.yaml cannot be read: Permission denied" in result.output
    assert "stack k3s (kubernetes)" in result.output
