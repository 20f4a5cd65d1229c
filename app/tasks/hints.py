"""A task type's parameter schema from its function's type hints, when its declaration gives none.

`int`, `float`, `str`, `bool`, `list[X]`, `dict` (or `dict[str, X]`), `Literal[...]` and
`X | None`; a parameter with a default is optional and loads that default. The fields are the
catalogue's own (JSON-safe numbers, storable text), so a hinted type validates as strictly as a
built-in one.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import Any, Literal

from marshmallow import Schema, fields, validate

from app.tasks import parameters as p
from config import ConfigError

SUPPORTED = "int, float, str, bool, list[X], dict, dict[str, X], Literal[...] and X | None"
MAX_TEXT_LENGTH = 100_000


class DeclarationError(ConfigError):
    """A task type declared wrongly: the service does not start, and the message says why."""


def schema_for(function: Callable[..., Any], skip_first: bool) -> Schema:
    """A strict schema with a field per parameter of `function` (but its RunContext, `skip_first`)."""
    where = f"{function.__module__}.{function.__qualname__}"
    try:
        hints = typing.get_type_hints(function)
    except Exception as exc:  # noqa: BLE001 - an annotation naming what the module does not define
        raise DeclarationError(f"{where}: its type hints cannot be read ({exc})") from None
    parameters = list(inspect.signature(function).parameters.values())[1 if skip_first else 0 :]
    declared: dict[str, fields.Field] = {}
    for parameter in parameters:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD, parameter.POSITIONAL_ONLY):
            raise DeclarationError(f"{where}({parameter.name}): parameters must be named, one by one")
        if parameter.name not in hints:
            raise DeclarationError(
                f"{where}({parameter.name}): no type hint; give one ({SUPPORTED}) or a parameters schema"
            )
        options: dict[str, Any] = {"required": True}
        if parameter.default is not parameter.empty:
            options = {"load_default": parameter.default}
        declared[parameter.name] = field_for(hints[parameter.name], f"{where}({parameter.name})", options)
    return p.StrictSchema.from_dict(declared, name=f"{function.__name__}_parameters")()


def field_for(hint: Any, where: str, options: dict[str, Any] | None = None) -> fields.Field:
    """The field that loads a value of type `hint`, or DeclarationError naming `where`."""
    options = dict(options or {})
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return field_for(rest[0], where, {**options, "allow_none": True})
    if hint is bool:
        return p.StrictBoolean(**options)
    if hint is int:
        bounds = validate.Range(min=-p.MAX_SAFE_INTEGER, max=p.MAX_SAFE_INTEGER)
        return fields.Integer(strict=True, validate=bounds, **options)
    if hint is float:
        return p.Number(**options)
    if hint is str:
        return p.Text(max_length=MAX_TEXT_LENGTH, **options)
    if origin is Literal and all(isinstance(a, str | int) and not isinstance(a, bool) for a in args):
        kind = fields.String if all(isinstance(a, str) for a in args) else fields.Raw
        return kind(validate=validate.OneOf(list(args)), **options)
    if origin is list and len(args) == 1:
        return fields.List(field_for(args[0], where), **options)
    if hint is list:  # any JSON values, null too, their text storable
        return fields.List(fields.Raw(allow_none=True, validate=p.storable_json), **options)
    if hint is dict or (origin is dict and args in ((), (str, Any))):
        return fields.Dict(
            keys=p.Text(max_length=MAX_TEXT_LENGTH),
            values=fields.Raw(allow_none=True, validate=p.storable_json),
            **options,
        )
    if origin is dict and len(args) == 2 and args[0] is str:
        return fields.Dict(keys=fields.String(), values=field_for(args[1], where), **options)
    raise DeclarationError(f"{where}: type {_name(hint)} is not supported; use {SUPPORTED}")


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
