"""Declarations the rules do not (or cannot) see directly: helper objects with wrong arguments,
an estate that passes the rules but breaks a later stage, and checks that only the Pulumi
program used to run. Each ends as violations naming the service, with every other violation
still reported."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import catalog.load
from catalog import configs
from catalog.model import (
    Broken,
    Health,
    HostMount,
    Legacy,
    Public,
    Volume,
    hard,
    image,
    port,
    service,
    url_of,
)
from catalog.resolve import resolve
from catalog.rules import EstateError, validate
from tests.estates import MACMINI, estate
from tests.test_stack_files import invoke

HELPERS = {  # the examples: (field, value, fragment of the error)
    "port('abc')": ("ports", lambda: [port("abc")], "ports.0: Port: container:"),
    "Volume(size=20)": ("volumes", lambda: [Volume(size=20)], "volumes.0: Volume: size:"),
    "Public(acess=True)": ("public", lambda: Public(host="notes", acess=True),
                           "public: Public: acess: Extra inputs are not permitted"),
    "open_paths='/x'": ("public", lambda: Public(host="notes", open_paths="/x"),
                        "public: Public: open_paths: Input should be a valid tuple"),
    "Legacy(containers='a')": ("legacy", lambda: Legacy(containers="a"),
                               "legacy: Legacy: containers:"),
    "Health(cmd='…')": ("health", lambda: Health(cmd="curl -f localhost"),
                        "health: Health: cmd:"),
    "url_of(3)": ("env", lambda: {"API": url_of(3)}, "env.API: UrlOf: service:"),
    "HostMount(path=1)": ("host_mounts", lambda: [HostMount(source="/x", path=1)],
                          "host_mounts.0: HostMount: path:"),
}


@pytest.mark.parametrize("case", HELPERS)
def test_a_bad_helper_is_attributed_and_the_rest_still_reported(case) -> None:
    field, make, fragment = HELPERS[case]
    broken = estate(**{"notes-backend": {field: make()},
                       "redis": {"image": image("redis:latest")}})  # an unrelated violation
    found = [str(v) for v in validate(broken, MACMINI)]
    assert any(v.startswith("notes-backend: schema: ") and fragment in v for v in found), found
    assert any(v.startswith("redis: image-pinned:") for v in found), found
    assert all("[type=" not in v for v in found)


ARGUMENTS = st.one_of(st.none(), st.integers(), st.text(max_size=8), st.booleans(),
                      st.lists(st.integers(), max_size=2), st.dictionaries(
                          st.text(max_size=3), st.integers(), max_size=2))
HELPER_CLASSES = {"Volume": (Volume, "volumes", True), "Public": (Public, "public", False),
                  "Legacy": (Legacy, "legacy", False), "Health": (Health, "health", False),
                  "HostMount": (HostMount, "host_mounts", True)}


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(sorted(HELPER_CLASSES)),
       kwargs=st.dictionaries(st.sampled_from(["path", "size", "host", "access", "open_paths",
                                               "containers", "ports", "cmd", "http", "source",
                                               "interval", "acess", "nme"]),
                              ARGUMENTS, max_size=3))
def test_any_helper_arguments_never_raise(kind, kwargs) -> None:
    cls, field, listed = HELPER_CLASSES[kind]
    made = cls(**kwargs)  # never raises at import time
    value = [made] if listed else made
    declared = service(id="notes-backend", category="app", role="backend", **{field: value})
    if isinstance(declared, Broken):
        assert declared.errors and all(e.split(".")[0].split(":")[0] in (field, "memory")
                                       or e.startswith(field) for e in declared.errors)
    found = validate(estate(**{"notes-backend": {field: value}}), MACMINI)
    assert all(v.rule != "schema" or v.service == "notes-backend" for v in found)


def test_a_broken_helper_in_services_py_reaches_the_cli(monkeypatch) -> None:
    broken = estate(**{"notes-backend": {"ports": [port("abc")]},
                       "gateway": {"needs": [hard("auth"), hard("billing")]}})
    monkeypatch.setattr(catalog.load, "load_estate", lambda: broken)
    monkeypatch.setattr("cli.load_estate", lambda: broken)
    result = invoke("validate", "--stack", "macmini")
    assert result.exit_code == 1
    assert "notes-backend: schema: ports.0: Port: container: Input should be a valid " \
           "integer, unable to parse string as an integer (got 'abc')" in result.output
    assert "gateway: dependency-exists:" in result.output


# --- a later stage failing on an estate the rules let through ------------------------------

EXCEPTIONS = st.sampled_from([KeyError("metrics"), ValueError("bad"), TypeError("no"),
                              AttributeError("x"), IndexError("i"), ZeroDivisionError("z"),
                              AssertionError("a"), RuntimeError("[id] kept")])


@settings(max_examples=40, deadline=None)
@given(failing=st.sets(st.sampled_from(sorted(configs.GENERATORS)), min_size=1),
       exc=EXCEPTIONS)
def test_a_failing_config_generator_is_a_violation_of_its_service(failing, exc) -> None:
    import services

    real = dict(configs.GENERATORS)

    def boom(*_args):
        raise exc

    try:
        configs.GENERATORS.update({sid: boom for sid in failing})
        with pytest.raises(EstateError) as caught:
            resolve(services.estate(), MACMINI)
    finally:
        configs.GENERATORS.clear()
        configs.GENERATORS.update(real)
    assert {v.service for v in caught.value.violations} == failing
    assert {v.rule for v in caught.value.violations} == {"config-file"}


def test_synapse_without_its_metrics_port_is_a_violation_not_a_key_error(monkeypatch) -> None:
    import services

    real = services.estate()
    broken = real.model_copy(update={"services": tuple(
        s.model_copy(update={"ports": tuple(p for p in s.ports if p.name != "metrics")})
        if s.id == "synapse" else s for s in real.services)})
    monkeypatch.setattr(catalog.load, "load_estate", lambda: broken)
    monkeypatch.setattr("cli.load_estate", lambda: broken)
    for args in (["validate"], ["render", "compose", "--out", "/tmp/never-written"],
                 ["budget"], ["ports"]):
        result = invoke(*args)
        assert result.exit_code == 1, result.output
        assert "synapse: config-file: KeyError: synapse has no port 'metrics'" in result.output


def test_a_failing_export_is_one_line(monkeypatch, tmp_path) -> None:
    from exports import compose

    def boom(_estate):
        raise KeyError("grafana")

    monkeypatch.setattr(compose, "to_compose", boom)
    result = invoke("render", "compose", "--out", str(tmp_path / "c"))
    assert result.exit_code == 1
    assert "estate: render compose: KeyError: grafana" in result.output
    assert not (tmp_path / "c").exists()  # rendered aside: nothing half-written


# --- validate runs every check the program runs --------------------------------------------

ACCOUNT, ZONE = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
PROGRAM_CHECKS = {
    "memory budget": ("  manacore:memoryBudget: 4Gi\n", "settings: memory-budget: stack "
                      "macmini: the estate needs"),
    "account without zone": (f"  manacore:cloudflareAccountId: {ACCOUNT}\n",
                             "tunnel: tunnel-settings: set both"),
    "zone without account": (f"  manacore:cloudflareZoneId: {ZONE}\n",
                             "tunnel: tunnel-settings: set both"),
    "managed without accessEmails": (f"  manacore:cloudflareAccountId: {ACCOUNT}\n"
                                     f"  manacore:cloudflareZoneId: {ZONE}\n",
                                     "tunnel: tunnel-access:"),
}


@pytest.mark.parametrize("case", PROGRAM_CHECKS)
def test_validate_runs_the_programs_checks(case, stack_dir) -> None:
    extra, fragment = PROGRAM_CHECKS[case]
    path = stack_dir / "Pulumi.macmini.yaml"
    text = path.read_text().replace("  manacore:memoryBudget: 10Gi\n", "")
    if "memoryBudget" not in extra:
        extra += "  manacore:memoryBudget: 10Gi\n"
    path.write_text(text + extra)
    result = invoke("validate", "--stack", "macmini")
    assert result.exit_code == 1, result.output
    assert fragment in result.output


def test_the_program_refuses_an_estate_over_its_budget(monkeypatch) -> None:
    from tests.harness import run_program

    run = run_program("macmini", config={"memoryBudget": "4Gi"}, raise_errors=False)
    assert run.registrations == []
    assert "memory-budget" in str(run.error)


def test_the_program_reports_a_failing_component_as_a_line(monkeypatch) -> None:
    import components.program as program
    from tests.harness import run_program

    def broken(estate, secrets):
        raise KeyError("grafana")

    monkeypatch.setattr(program, "adapter_for", broken)
    required = {s.name: "x" for s in catalog.load.load_estate().secrets if not s.generate}
    run = run_program("macmini", secrets=required, raise_errors=False)
    assert "estate: deploy: KeyError: grafana" in str(run.error)


# --- property: a changed real catalogue never ends in a traceback, on any command ----------

def _mutations():
    import services

    real = services.estate()
    ids = [s.id for s in real.valid_services]
    changes = {
        "drop a port": lambda s: {"ports": s.ports[:-1]},
        "rename a port": lambda s: {"ports": tuple(
            p.model_copy(update={"name": "other"}) if i == len(s.ports) - 1 else p
            for i, p in enumerate(s.ports))},
        "no health check": lambda s: {"health": None},
        "no needs": lambda s: {"needs": ()},
        "no env": lambda s: {"env": {}},
        "no volumes": lambda s: {"volumes": ()},
        "no public host": lambda s: {"public": None},
        "no database": lambda s: {"database": None},
        "no secrets": lambda s: {"secrets": ()},
        "docker only": lambda s: {"targets": ("docker",)},
    }
    return real, st.tuples(st.sampled_from(ids), st.sampled_from(sorted(changes))).map(
        lambda pick: (pick, changes[pick[1]]))


REAL, MUTATION = _mutations()


@settings(max_examples=25, deadline=None)
@given(mutation=MUTATION, command=st.sampled_from([
    ["validate"], ["render", "compose"], ["render", "helm"], ["render", "tunnel"],
    ["migrate"], ["ports"], ["budget", "--stack", "k3s"]]))
def test_a_changed_catalogue_never_traces_back(mutation, command, tmp_path_factory) -> None:
    (sid, _), change = mutation
    broken = REAL.model_copy(update={"services": tuple(
        s.model_copy(update=change(s)) if s.id == sid else s for s in REAL.valid_services)})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(catalog.load, "load_estate", lambda: broken)
        mp.setattr("cli.load_estate", lambda: broken)
        out = ["--out", str(tmp_path_factory.mktemp("out"))] if command[0] in (
            "render", "migrate") else []
        result = invoke(*command, *out)
    assert result.exit_code in (0, 1), result.output
    assert "EstateError" not in result.output  # violations, not a wrapped exception


@pytest.mark.parametrize(("change", "rule"), [
    ({"id": "notes-backend\n"}, "naming"),
    ({"public": Public(host="notes\n")}, "hostname-unique"),
    ({"public": Public(host="notes", access=True, open_paths=("/api\n",))}, "hostname-unique"),
    ({"database": "notes\n"}, "database"),
    ({"env": {"PORT\n": "1"}}, "secrets"),
    ({"ports": [port(3050, "http\n")]}, "naming"),
])
def test_a_trailing_newline_is_not_a_valid_name(change, rule) -> None:
    """`$` in a pattern matches before a final newline: names are matched whole."""
    found = validate(estate(**{"notes-backend": change}), MACMINI)
    assert any(v.rule == rule for v in found), found
