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
from app.core.workflows import refs

JOINS = ("all_success", "all_done")
ON_FAILURE = ("fail_fast", "continue")


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

    def stored(self) -> dict[str, Any]:
        """The step as the workflow's row keeps it."""
        return {
            "id": self.id, "task": self.task_type.name, "after": list(self.after), "join": self.join,
            "parameters": self.parameters,
        }  # fmt: skip


@dataclass(frozen=True)
class Definition:
    name: str
    input: dict[str, Any]
    steps: tuple[Step, ...]  # parents before children
    on_failure: str

    def roots(self) -> list[Step]:
        return [step for step in self.steps if not step.after]


def parse(body: Mapping[str, Any], registry: Registry, max_steps: int) -> Definition:
    """The checked definition of `body` ({"name", "input", "steps", "on_failure"}, shaped by the
    API's schema); InvalidInput names the first field that breaks a rule."""
    raw = list(body["steps"])
    if len(raw) > max_steps:
        raise _invalid("steps", f"At most {max_steps} steps (WORKFLOW_MAX_STEPS); this has {len(raw)}.")
    index = _indexed(raw)
    order = _ordered(raw, index)
    steps: dict[str, Step] = {}
    for key in order:
        i = index[key]
        spec = raw[i]
        after = tuple(spec.get("after") or ())
        ancestors = frozenset(after).union(*(steps[parent].ancestors for parent in after))
        task_type = registry.resolve(spec["task"], f"steps.{i}.task")
        step = Step(
            key, task_type, after, spec.get("join") or "all_success", spec.get("parameters") or {}, ancestors
        )
        steps[key] = dataclasses.replace(step, ready=_check_references(step, i, body.get("input") or {}))
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


def _check_references(step: Step, i: int, input_: Mapping[str, Any]) -> dict[str, Any] | None:
    """Every reference of the step checked; its parameters resolved and checked whole if none
    names another step, else None."""
    where = f"steps.{i}.parameters"
    found = list(refs.walk(step.parameters))
    for place, ref in found:
        kind = refs.kind(ref)
        pointer = ref.get(refs.INPUT) if kind == refs.INPUT else ref.get("path", "")
        problem = refs.check_pointer(pointer)
        if problem is None and kind == refs.STEP and ref[refs.STEP] not in step.ancestors:
            problem = f"$step {ref[refs.STEP]!r} is not a step this one comes after (directly or not)."
        if problem is None and kind == refs.INPUT:
            try:
                refs.point(input_, pointer, "the input")
            except refs.Unresolved as exc:
                problem = f"{exc}."
        if problem:
            raise _invalid(where + place.replace("/", "."), problem)
    if any(refs.kind(ref) == refs.STEP for _, ref in found):
        return None
    return step.task_type.validate(refs.resolve(step.parameters, lambda _: None, input_), where)


def _invalid(field_name: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field_name}: {message}", {field_name: [message]})
