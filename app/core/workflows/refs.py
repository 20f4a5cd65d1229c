"""References in a step's parameters: JSON Pointers (RFC 6901) into the workflow's input and into
the results of earlier steps. Never a template language: a reference is a whole JSON value,

    {"$input": "/bucket"}                   the input's "bucket"
    {"$step": "list", "path": "/keys"}      the "keys" of step list's result ("path": the whole result)
    {"$item": "/key"}                       in a map step, the "key" of the item its task is for

and everything else in the parameters is taken as it is."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from jsonpointer import JsonPointer, JsonPointerException

INPUT, STEP, ITEM = "$input", "$step", "$item"
NO_ITEM = object()  # outside a map


class Unresolved(Exception):
    """A reference that names nothing: the message says which and why."""


def kind(value: Any) -> str | None:
    """`$input`, `$step` or `$item` if `value` is a reference, else None."""
    if isinstance(value, dict):
        if set(value) == {INPUT}:
            return INPUT
        if set(value) == {ITEM}:
            return ITEM
        if STEP in value and set(value) <= {STEP, "path"}:
            return STEP
    return None


def walk(value: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every reference in `value`, with where it is (`/bucket`, `/files/0`)."""
    if kind(value):
        yield where, value
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield from walk(inner, f"{where}/{key}")
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from walk(inner, f"{where}/{index}")


def check_pointer(pointer: Any) -> str | None:
    """Why `pointer` is not a JSON Pointer, or None."""
    if not isinstance(pointer, str):
        return "Must be a JSON Pointer string such as /keys (empty: the whole value)."
    try:
        JsonPointer(pointer)
    except JsonPointerException as exc:
        return f"Not a JSON Pointer ({exc}): write /name/0, or an empty string for the whole value."
    return None


def point(document: Any, pointer: str, what: str) -> Any:
    try:
        return JsonPointer(pointer).resolve(document)
    except JsonPointerException:
        raise Unresolved(f"{what} has nothing at {pointer or 'its root'}") from None


def pointer_of(ref: dict[str, Any]) -> Any:
    """The JSON Pointer a reference holds."""
    return ref.get("path", "") if kind(ref) == STEP else ref[kind(ref)]


def resolve(value: Any, step_value: Callable[[str], Any], input_: Any, item: Any = NO_ITEM) -> Any:
    """`value` with each reference replaced by what it names; `step_value(id)` gives an earlier
    step's value (its result; for an all_done join, its {status, result, error}); `item` is the
    map's item a task is for."""
    found = kind(value)
    if found == INPUT:
        return point(input_, value[INPUT], "the input")
    if found == STEP:
        return point(step_value(value[STEP]), value.get("path", ""), f"step {value[STEP]}'s result")
    if found == ITEM:
        if item is NO_ITEM:
            raise Unresolved("$item is only known in a map step")
        return point(item, value[ITEM], "the item")
    if isinstance(value, dict):
        return {key: resolve(inner, step_value, input_, item) for key, inner in value.items()}
    if isinstance(value, list):
        return [resolve(inner, step_value, input_, item) for inner in value]
    return value


def type_name(value: Any) -> str:
    """The JSON type of `value`, with its article: "an object", "an array", "a string"."""
    names = ((bool, "a boolean"), (dict, "an object"), (list, "an array"), (str, "a string"))
    name = next((name for kind_, name in names if isinstance(value, kind_)), None)
    if name is None:
        name = "null" if value is None else "a number"
    return name
