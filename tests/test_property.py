"""Property: any estate built by the conventions validates and resolves on both targets."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalog.model import (
    Estate,
    Public,
    Volume,
    hard,
    http,
    image,
    lazy,
    many,
    once,
    own,
    port,
    service,
    url_of,
)
from catalog.resolve import resolve
from catalog.rules import validate
from catalog.schema import PORT_RANGES, STARTUP_CLASSES
from tests.estates import K3S, MACMINI

# (category, role) pairs a generated service may take
KINDS = [("infra", "infra"), ("core", "core"), ("core", "gateway"), ("app", "backend"),
         ("app", "frontend"), ("matrix", "matrix"), ("mon", "dashboard"), ("mon", "exporter"),
         ("tools", "automation")]


def rank(role: str) -> int:
    return STARTUP_CLASSES.get(role, (0, ""))[0]


@st.composite
def estates(draw) -> Estate:
    count = draw(st.integers(min_value=1, max_value=25))
    kinds = [draw(st.sampled_from(KINDS)) for _ in range(count)]
    used: set[int] = set()
    services = []
    for index, (category, role) in enumerate(kinds):
        sid = f"{role}-{index}"
        span = next(r for r in PORT_RANGES if role in r.roles)
        free = [p for p in range(span.first, span.last + 1) if p not in used]
        number = draw(st.sampled_from(free[:40]))
        used.add(number)
        # dependencies only on earlier services (no cycles) of the same or an earlier class
        candidates = [s for s in services if rank(s.role) <= rank(role) or not rank(role)
                      or not rank(s.role)]
        needs = []
        env = {}
        for dep in draw(st.lists(st.sampled_from(candidates), unique_by=lambda s: s.id,
                                 max_size=3)) if candidates else []:
            needs.append(hard(dep.id) if draw(st.booleans()) else lazy(dep.id))
            env[f"DEP_{dep.id.upper().replace('-', '_')}_URL"] = url_of(dep.id)
        stateful = draw(st.booleans())
        services.append(service(
            id=sid, category=category, role=role,
            image=draw(st.sampled_from([own(sid), image("nginx:1.27.3")])),
            ports=[port(number)], env=env, needs=needs, health=http("/health"),
            memory=draw(st.sampled_from(["32Mi", "128Mi", "1Gi"])),
            volumes=[Volume(path="/data")] if stateful else [],
            public=Public(host=sid) if draw(st.booleans()) else None,
            availability=draw(st.sampled_from([many("user-facing", "a generated test service"),
                                               once("user-facing", "a generated test service")])),
        ))
    return Estate(services=tuple(services))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(estates())
def test_generated_estates_validate_and_resolve(generated: Estate) -> None:
    assert validate(generated, MACMINI) == []
    for stack in (MACMINI, K3S):
        r = resolve(generated, stack)
        assert {s.id for s in r.services} == {s.id for s in generated.services}
        assert len({s.host for s in r.services}) == len(r.services)
        for s in r.services:
            many_copies = s.availability.copies == "many" and not s.stateful
            assert s.replicas == (2 if stack is K3S and many_copies else 1), s.id
            for dep in s.hard:
                assert r[dep].tier < s.tier
            for key, value in s.env.items():
                if key.startswith("DEP_"):
                    assert value.plain.startswith("http://")
                    assert any(value.plain == r[d].url() for d in (*s.hard, *s.lazy))
