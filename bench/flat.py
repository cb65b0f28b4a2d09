"""The flat baseline: our program's registrations, replayed as flat SDK constructions.

`record` runs the program under mocks once and records, in order, every construction of an SDK
resource class (class, name, keyword arguments as given, options), every component, every
`register_outputs` and every stack export. `Recording.replay` does the same again with plain
values: an Output that *is* a resource's output attribute (`image.image_id`) stays that
attribute of the replayed resource; any other Output becomes its resolved value (wrapped in
`Output.secret` when it was secret), and the resources it depended on join `depends_on`.
Components become plain `pulumi.ComponentResource`s of the same type.

So the replay registers the same resources with the same SDK classes, inputs, secrets,
parents, providers, options and dependencies (`differences` proves it on the wire requests):
the physical limit of the program under mocks, generated from the catalogue on every run so it
never drifts from ours.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi import _types

from tests.harness import Registration, Run


@dataclass(frozen=True)
class _Ref:
    """A recorded resource, by its position in construction order."""

    index: int


@dataclass(frozen=True)
class _Attribute:
    """An output attribute of a recorded resource (`image.image_id`)."""

    index: int
    name: str


@dataclass(frozen=True)
class _Resolved:
    """A derived Output, resolved: its value, whether secret, what it depended on."""

    value: Any
    secret: bool
    depends_on: tuple[int, ...]


@dataclass
class Event:
    kind: str  # "custom", "read", "component", "outputs" or "export"
    cls: type | None = None
    name: str = ""  # resource name, component type's name, or export name
    type: str = ""  # component type token
    kwargs: dict[str, Any] = field(default_factory=dict)
    opts: Any = None  # ResourceOptions, then (after freezing) a dict of plain option values
    index: int = -1  # "outputs": the component it concerns
    value: Any = None  # "outputs" and "export"


@dataclass
class Recording:
    """What the program constructed, in order, with every Output resolved."""

    events: list[Event]
    derived_outputs: int  # Output-valued inputs of ours that the replay passes as plain values
    attribute_outputs: int  # Output-valued inputs that are resource attributes in both
    secret_outputs: int  # derived ones that were secret: `Output.secret(value)` in the replay

    @property
    def flat_outputs(self) -> int:
        """How many Output-valued inputs the replay passes."""
        return self.attribute_outputs + self.secret_outputs

    def replay(self) -> None:
        """Construct everything again, flat (call as a Pulumi program under mocks)."""
        made: list[pulumi.Resource] = []
        for e in self.events:
            if e.kind in ("custom", "read"):
                deps: list[pulumi.Resource] = []
                kwargs = {k: _thaw(v, made, deps) for k, v in e.kwargs.items()}
                opts = _thaw_opts(e.opts, made, deps)
                assert e.cls is not None
                if e.kind == "read":
                    read_id, opts.id = opts.id, None
                    made.append(e.cls.get(e.name, read_id, opts=opts, **kwargs))
                else:
                    made.append(e.cls(e.name, opts=opts, **kwargs))
            elif e.kind == "component":
                made.append(pulumi.ComponentResource(e.type, e.name, None,
                                                     _thaw_opts(e.opts, made, [])))
            elif e.kind == "outputs":
                made[e.index].register_outputs(_thaw(e.value, made, []))  # type: ignore[attr-defined]
            else:
                pulumi.export(e.name, _thaw(e.value, made, []))


def record(run: Callable[[Callable[[], Any]], Run], program: Callable[[], Any]) -> tuple[
        Recording, Run]:
    """Run `program` once through `run` (e.g. `lambda p: run_program("k3s", program=p)`) and
    record what it constructs. Outputs are resolved right after the run. A first, unrecorded
    run loads every SDK class the program uses (pulumi_kubernetes loads them lazily)."""
    run(program)
    events: list[Event] = []
    resources: list[pulumi.Resource] = []
    with _recording(events, resources):
        result = run(program)
    given = [set(e.kwargs) for e in events if e.kind in ("custom", "read", "component")]
    return _Freezer(resources, given).recording(events), result


def differences(ours: list[Registration], flat: list[Registration]) -> list[str]:
    """Where the flat replay registered something else than ours (empty: none)."""
    def key(r: Registration) -> tuple:
        return (r.type, r.name, r.urn, r.custom, r.inputs, r.parent, r.provider, r.protect,
                r.retain_on_delete, sorted(set(r.dependencies)), r.aliases, r.ignore_changes,
                r.delete_before_replace, r.read_id)

    mine = {r.urn: key(r) for r in ours}
    theirs = {r.urn: key(r) for r in flat}
    found = [f"only in ours: {u}" for u in mine.keys() - theirs.keys()]
    found += [f"only in flat: {u}" for u in theirs.keys() - mine.keys()]
    for urn in mine.keys() & theirs.keys():
        if mine[urn] != theirs[urn]:
            fields = ("type", "name", "urn", "custom", "inputs", "parent", "provider",
                      "protect", "retain_on_delete", "dependencies", "aliases",
                      "ignore_changes", "delete_before_replace", "read_id")
            diff = [f for f, a, b in zip(fields, mine[urn], theirs[urn], strict=True) if a != b]
            found.append(f"{urn}: {', '.join(diff)} differ")
    return sorted(found)


# --- recording -----------------------------------------------------------------------------


def _sdk_classes() -> Iterator[type]:
    """Every loaded SDK resource class with its own `_internal_init` (generated SDKs)."""
    todo: list[type] = [pulumi.CustomResource]
    seen: set[type] = set()
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in seen:
                seen.add(sub)
                todo.append(sub)
                if "_internal_init" in vars(sub):
                    yield sub


_NOT_INPUTS = ("__self__", "self", "resource_name", "opts", "__props__")


@contextmanager
def _recording(events: list[Event], resources: list[pulumi.Resource]) -> Iterator[None]:
    """Patch the SDK classes' `_internal_init`, `ComponentResource` and `pulumi.export` so
    that each records what it is given, before it runs."""
    patched: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, attr: str, wrapper: Callable[..., Any]) -> None:
        patched.append((owner, attr, getattr(owner, attr)))
        setattr(owner, attr, wrapper)

    def custom_init(cls: type) -> Callable[..., Any]:
        original = vars(cls)["_internal_init"]
        signature = inspect.signature(original)

        def internal_init(self, *args, **kwargs):
            bound = signature.bind(self, *args, **kwargs).arguments
            opts = bound.get("opts")
            state = bound.get("__props__")
            if state is not None:  # Cls.get(name, id, opts, **state): a read
                given = {k: v for k, v in vars(state).items() if v is not None}
            else:
                given = {k: v for k, v in bound.items() if k not in _NOT_INPUTS and v is not None}
            resources.append(self)
            events.append(Event("read" if state is not None else "custom", cls,
                                bound["resource_name"], kwargs=given, opts=opts))
            return original(self, *args, **kwargs)

        return internal_init

    for cls in list(_sdk_classes()):
        patch(cls, "_internal_init", custom_init(cls))

    component_init = pulumi.ComponentResource.__init__
    register_outputs = pulumi.ComponentResource.register_outputs
    export = pulumi.export

    def component(self, t, name, props=None, opts=None, *args, **kwargs):
        if props:
            raise NotImplementedError(f"{t} {name}: component inputs are not replayed")
        resources.append(self)
        events.append(Event("component", type=t, name=name, opts=opts))
        component_init(self, t, name, props, opts, *args, **kwargs)

    def outputs(self, value):
        index = next(i for i, r in enumerate(resources) if r is self)
        events.append(Event("outputs", index=index, value=value))
        register_outputs(self, value)

    def exported(name, value):
        events.append(Event("export", name=name, value=value))
        export(name, value)

    patch(pulumi.ComponentResource, "__init__", component)
    patch(pulumi.ComponentResource, "register_outputs", outputs)
    patch(pulumi, "export", exported)
    try:
        yield
    finally:
        for owner, attr, original in reversed(patched):
            setattr(owner, attr, original)


class _Freezer:
    """Turns recorded values into plain data: resources by index, Outputs resolved."""

    def __init__(self, resources: list[pulumi.Resource], given: list[set[str]]):
        self.index = {id(r): i for i, r in enumerate(resources)}
        # outputs the provider computes; an output echoing an input is known beforehand
        self.attributes = {id(v): _Attribute(i, k) for i, r in enumerate(resources)
                           for k, v in vars(r).items()
                           if isinstance(v, pulumi.Output) and k not in given[i]}
        self.derived = self.attribute = self.secret = 0

    def recording(self, events: list[Event]) -> Recording:
        for e in events:
            e.kwargs = {k: self.value(v) for k, v in e.kwargs.items()}
            e.value = self.value(e.value)
            e.opts = self.opts(e.opts)
        return Recording(events, self.derived, self.attribute, self.secret)

    def value(self, value: Any) -> Any:
        if isinstance(value, pulumi.Output):
            if id(value) in self.attributes:
                self.attribute += 1
                return self.attributes[id(value)]
            self.derived += 1
            data = value._data.result()  # resolved: the run has completed
            if not data.is_known:
                raise ValueError("an unknown Output cannot be replayed (run with preview=False)")
            deps = tuple(sorted(self.index[id(r)] for r in data.resources
                                if id(r) in self.index))
            self.secret += data.is_secret
            return _Resolved(self.value(data.value), data.is_secret, deps)
        if isinstance(value, pulumi.Resource):
            return _Ref(self.index[id(value)]) if id(value) in self.index else None
        if _types.is_input_type(type(value)):
            return type(value)(**{k: self.value(v) for k, v in
                                  _types.input_type_to_untranslated_dict(value).items()
                                  if v is not None})
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.value(v) for v in value)
        return value

    def opts(self, opts: pulumi.ResourceOptions | None) -> dict[str, Any]:
        if opts is None:
            return {}
        return {k: self.value(v) for k, v in vars(opts).items() if v is not None}


# --- replaying -----------------------------------------------------------------------------


def _thaw(value: Any, made: list[pulumi.Resource], deps: list[pulumi.Resource]) -> Any:
    if isinstance(value, _Attribute):
        return getattr(made[value.index], value.name)
    if isinstance(value, _Ref):
        return made[value.index]
    if isinstance(value, _Resolved):
        deps.extend(made[i] for i in value.depends_on)
        inner = _thaw(value.value, made, deps)
        return pulumi.Output.secret(inner) if value.secret else inner
    if _types.is_input_type(type(value)):
        return type(value)(**{k: _thaw(v, made, deps) for k, v in
                              _types.input_type_to_untranslated_dict(value).items()})
    if isinstance(value, dict):
        return {k: _thaw(v, made, deps) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_thaw(v, made, deps) for v in value)
    return value


def _thaw_opts(opts: dict[str, Any], made: list[pulumi.Resource],
               deps: list[pulumi.Resource]) -> pulumi.ResourceOptions:
    """The recorded options with the resources the plain values came from in `depends_on`.
    `deps` is filled by the inputs' thawing, which runs first."""
    values = {k: _thaw(v, made, deps) for k, v in opts.items()}
    if deps:
        listed = values.get("depends_on") or []
        values["depends_on"] = [*listed, *(d for d in dict.fromkeys(deps) if d not in listed)]
    return pulumi.ResourceOptions(**values)
