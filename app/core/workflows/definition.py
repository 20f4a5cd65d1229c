"""A workflow's definition, checked whole before anything is written: every step's type, its
parents (`after`), no cycle, references that name the input or an ancestor, parameters that fit
the type's schema as far as they are known at submit. Each error names its field
(`steps.2.after`) and the rule."""

from __future__ import annotations

import dataclasses
import graphlib
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.core.errors import InvalidInput
from app.core.ports import Registry, TaskType
from app.core.workflows import maps, refs

JOINS = ("all_success", "all_done")
UNKNOWN: Any = object()  # a template's input, not known until it is started
ON_FAILURE = ("fail_fast", "continue")


@dataclass(frozen=True)
class Map:
    """A map step's fan-out: one task per item of the array `over` names."""

    over: dict[str, Any]  # a reference: {"$input": ptr} or {"$step": id, "path": ptr}
    max_items: int
    max_parallel: int | None  # None: every item at once

    def stored(self) -> dict[str, Any]:
        return {"over": self.over, "max_items": self.max_items, "max_parallel": self.max_parallel}


@dataclass(frozen=True)
class Step:
    id: str
    task_type: TaskType
    after: tuple[str, ...]
    join: str
    parameters: Any  # as submitted, references and all
    ancestors: frozenset[str] = field(default_factory=frozenset)
    # Its parameters resolved and checked whole, when no $step reference leaves them to its release.
    ready: dict[str, Any] | None = None
    map: Map | None = None

    def stored(self) -> dict[str, Any]:
        """The step as the workflow's row keeps it."""
        stored = {
            "id": self.id, "task": self.task_type.name, "after": list(self.after), "join": self.join,
            "parameters": self.parameters,
        }  # fmt: skip
        if self.map is not None:
            stored["map"] = self.map.stored()
        return stored


@dataclass(frozen=True)
class Definition:
    name: str
    input: dict[str, Any]
    steps: tuple[Step, ...]  # parents before children
    on_failure: str

    def roots(self) -> list[Step]:
        return [step for step in self.steps if not step.after]


@dataclass(frozen=True)
class Limits:
    max_steps: int  # WORKFLOW_MAX_STEPS
    max_items: int  # WORKFLOW_MAX_ITEMS


def parse(
    body: Mapping[str, Any], registry: Registry, limits: Limits, input_known: bool = True
) -> Definition:
    """The checked definition of `body` ({"name", "input", "steps", "on_failure"}, shaped by the
    API's schema); InvalidInput names the first field that breaks a rule. Without `input_known`
    (a template's), what depends on the input is left to the start."""
    raw = list(body["steps"])
    if len(raw) > limits.max_steps:
        raise _invalid(
            "steps", f"At most {limits.max_steps} steps (WORKFLOW_MAX_STEPS); this has {len(raw)}."
        )
    index = _indexed(raw)
    order = _ordered(raw, index)
    input_ = (body.get("input") or {}) if input_known else UNKNOWN
    steps: dict[str, Step] = {}
    for key in order:
        i = index[key]
        spec = raw[i]
        after = tuple(spec.get("after") or ())
        ancestors = frozenset(after).union(*(steps[parent].ancestors for parent in after))
        task_type = registry.resolve(spec["task"], f"steps.{i}.task")
        if getattr(task_type, "concurrency", None) is not None:  # its limit would not hold
            raise _invalid(
                f"steps.{i}.task",
                f"{task_type.name} declares a concurrency key, which a workflow's steps do not take "
                "yet: submit its tasks on their own (POST /api/v1/tasks).",
            )
        step = Step(
            key, task_type, after, spec.get("join") or "all_success", spec.get("parameters") or {}, ancestors,
            map=_map(spec.get("map"), ancestors, i, input_, limits.max_items),
        )  # fmt: skip
        steps[key] = dataclasses.replace(step, ready=_check_references(step, i, input_))
    return Definition(
        body["name"], body.get("input") or {}, tuple(steps.values()), body.get("on_failure") or "fail_fast"
    )


def _indexed(raw: list[dict[str, Any]]) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, spec in enumerate(raw):
        if spec["id"] in index:
            raise _invalid(
                f"steps.{i}.id",
                f"Step ids must be unique: {spec['id']!r} is also step {index[spec['id']]}'s.",
            )
        index[spec["id"]] = i
    for i, spec in enumerate(raw):
        after = spec.get("after") or []
        if len(set(after)) != len(after):
            raise _invalid(f"steps.{i}.after", "Name each parent once.")
        for parent in after:
            if parent not in index:
                raise _invalid(f"steps.{i}.after", f"No step is called {parent!r}.")
            if parent == spec["id"]:
                raise _invalid(f"steps.{i}.after", "A step cannot come after itself.")
    return index


def _ordered(raw: list[dict[str, Any]], index: Mapping[str, int]) -> list[str]:
    """Step ids with parents first (graphlib); a cycle is named: "a after c, c after b, b after a"."""
    sorter = graphlib.TopologicalSorter({spec["id"]: spec.get("after") or () for spec in raw})
    try:
        return list(sorter.static_order())
    except graphlib.CycleError as exc:
        cycle = list(reversed(exc.args[1]))
        first = min(index[key] for key in cycle)
        chain = ", ".join(f"{a} after {b}" for a, b in itertools.pairwise(cycle))
        raise _invalid(f"steps.{first}.after", f"The steps form a cycle: {chain}.") from None


def _map(
    spec: Mapping[str, Any] | None, ancestors: frozenset[str], i: int, input_: Any, cap: int
) -> Map | None:
    """A map step's fan-out checked: `over` a reference to an array (known at submit when it is
    the input's), `max_items` within WORKFLOW_MAX_ITEMS."""
    if spec is None:
        return None
    where = f"steps.{i}.map"
    max_items = spec.get("max_items") or min(1000, cap)
    if max_items > cap:
        raise _invalid(f"{where}.max_items", f"At most {cap} (WORKFLOW_MAX_ITEMS); this asks {max_items}.")
    over = spec["over"]
    if refs.kind(over) not in (refs.INPUT, refs.STEP):
        raise _invalid(
            f"{where}.over", 'Must be a reference to an array: {"$input": ptr} or {"$step": id, "path": ptr}.'
        )
    problem = _reference_problem(over, ancestors, input_)
    if problem is None and refs.kind(over) == refs.INPUT and input_ is not UNKNOWN:
        problem = maps.over_problem(
            refs.point(input_, over[refs.INPUT], "the input"), over[refs.INPUT], max_items
        )
    if problem:
        raise _invalid(f"{where}.over", problem)
    return Map(over, max_items, spec.get("max_parallel"))


def _reference_problem(ref: dict[str, Any], ancestors: frozenset[str], input_: Any) -> str | None:
    """Why `ref` cannot be resolved as the step's, or None."""
    kind = refs.kind(ref)
    pointer = refs.pointer_of(ref)
    problem = refs.check_pointer(pointer)
    if problem is None and kind == refs.STEP and ref[refs.STEP] not in ancestors:
        problem = f"$step {ref[refs.STEP]!r} is not a step this one comes after (directly or not)."
    if problem is None and kind == refs.INPUT and input_ is not UNKNOWN:
        try:
            refs.point(input_, pointer, "the input")
        except refs.Unresolved as exc:
            problem = f"{exc}."
    return problem


def _check_references(step: Step, i: int, input_: Mapping[str, Any]) -> dict[str, Any] | None:
    """Every reference of the step checked; its parameters resolved and checked whole if none
    names another step or a map's item, else None."""
    where = f"steps.{i}.parameters"
    found = list(refs.walk(step.parameters))
    for place, ref in found:
        problem = _reference_problem(ref, step.ancestors, input_)
        if problem is None and refs.kind(ref) == refs.ITEM and step.map is None:
            problem = "$item is only known in a map step (one with a map)."
        if problem:
            raise _invalid(where + place.replace("/", "."), problem)
    if any(refs.kind(ref) == refs.STEP for _, ref in found):
        return None
    if input_ is UNKNOWN and any(refs.kind(ref) == refs.INPUT for _, ref in found):
        return None  # checked whole when the template is started
    if step.map is not None:
        if refs.kind(step.map.over) == refs.INPUT and input_ is not UNKNOWN:  # each item's parameters checked
            for item in refs.point(input_, step.map.over[refs.INPUT], "the input"):
                step.task_type.validate(refs.resolve(step.parameters, lambda _: None, input_, item), where)
        return None
    return step.task_type.validate(refs.resolve(step.parameters, lambda _: None, input_), where)


def _invalid(field_name: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field_name}: {message}", {field_name: [message]})
