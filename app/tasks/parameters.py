"""Parameter schemas for each task type, and the JSON-safe fields they use."""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

MAX_SAFE_INTEGER = 2**53 - 1
MAX_LETTERS_LENGTH = 100_000
MAX_PROMPT_LENGTH = 16_000


class Number(fields.Field):
    """A JSON number, int or float, within ±(2**53 - 1): every JSON client reads it exactly.

    Never a string, a boolean, NaN or Infinity.
    """

    default_error_messages: ClassVar[dict[str, str]] = {
        "invalid": "Must be a number (a string or a boolean is not).",
        "not_finite": "Must be a finite number (not NaN or Infinity).",
        "too_large": f"Must be between -{MAX_SAFE_INTEGER} and {MAX_SAFE_INTEGER}.",
    }

    def __init__(self, **kwargs: Any):
        if "validate" not in kwargs:  # a Range validator documents its own, narrower bounds
            kwargs["metadata"] = {"minimum": -MAX_SAFE_INTEGER, "maximum": MAX_SAFE_INTEGER}
        super().__init__(**kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int | float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.make_error("not_finite")
        if abs(value) > MAX_SAFE_INTEGER:
            raise self.make_error("too_large")
        return value


class StrictBoolean(fields.Boolean):
    """true or false, never 1, 0 or a string."""

    default_error_messages: ClassVar[dict[str, str]] = {"invalid": "Must be true or false."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


def storable(value: str) -> None:
    """PostgreSQL text cannot hold NUL, and UTF-8 cannot hold a lone surrogate."""
    if "\x00" in value:
        raise ValidationError("Must not contain NUL (\\u0000) characters.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("Must be valid Unicode (no lone surrogates).") from None


def storable_json(value: Any) -> None:
    """storable() for every string of a JSON value, keys too."""
    if isinstance(value, str):
        storable(value)
    elif isinstance(value, dict):
        for key, inner in value.items():
            storable_json(key)
            storable_json(inner)
    elif isinstance(value, list):
        for inner in value:
            storable_json(inner)


# storable()'s NUL rule, for the OpenAPI document. Lone surrogates (sent as "\ud800"
# escapes) are refused too, but a pattern cannot say so portably across regex engines.
STORABLE_PATTERN = r"^[^\x00]*$"


class Text(fields.String):
    def __init__(self, *, max_length: int, min_length: int = 0, **kwargs: Any):
        rules = [validate.Length(min=min_length, max=max_length), storable]
        metadata = {"pattern": STORABLE_PATTERN, **kwargs.pop("metadata", {})}
        super().__init__(validate=rules, metadata=metadata, **kwargs)


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE


class SumParameters(StrictSchema):
    a = Number(required=True)
    b = Number(required=True)


class LettersParameters(StrictSchema):
    string = Text(required=True, max_length=MAX_LETTERS_LENGTH)


class ChatGPTParameters(StrictSchema):
    prompt = Text(required=True, min_length=1, max_length=MAX_PROMPT_LENGTH)
    model = Text(min_length=1, max_length=100)
    max_tokens = fields.Integer(strict=True, validate=validate.Range(min=1, max=32_768))
    temperature = Number(validate=validate.Range(min=0, max=2))


HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
HEADER_NAME = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$"
# Headers the request itself or Tasker's signature sets: a task may not give them.
RESERVED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "upgrade",
     "proxy-connection", "webhook-id", "webhook-timestamp", "webhook-signature"}
)  # fmt: skip
MAX_BODY_LENGTH = 1_000_000


def header_name(value: str) -> None:
    if value.lower() in RESERVED_HEADERS:
        raise ValidationError(f"{value} is set by Tasker, not by the task.")


# What requests sends as a header value: ISO-8859-1 text, no control character but tab, no space
# at either end.
HEADER_VALUE = re.compile(r"([\x21-\x7e\x80-\xff]([\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?")


def header_value(value: str) -> None:
    if len(value) > 8192 or not HEADER_VALUE.fullmatch(value):
        raise ValidationError(
            "Must be ISO-8859-1 text, at most 8192 characters, without control characters or "
            "spaces at either end."
        )


class HttpRequestParameters(StrictSchema):
    url = Text(required=True, min_length=1, max_length=2048)
    method = fields.String(load_default="POST", validate=validate.OneOf(HTTP_METHODS))
    headers = fields.Dict(
        keys=fields.String(
            validate=[validate.Regexp(HEADER_NAME, error="Not a valid header name."), header_name]
        ),
        values=fields.String(validate=header_value),
        load_default=dict,
        validate=validate.Length(max=50),
    )
    json = fields.Raw(allow_none=True, metadata={"description": "Sent as the JSON body"})
    body = Text(max_length=MAX_BODY_LENGTH, metadata={"description": "Sent as the body, as it is"})
    timeout_seconds = Number(load_default=30, validate=validate.Range(min=1, max=300))

    @validates_schema
    def one_body(self, data: dict[str, Any], **kwargs: Any) -> None:
        if "json" in data and "body" in data:
            raise ValidationError("Give json or body, not both.", "body")


class StartWorkflowParameters(StrictSchema):
    template = Text(
        required=True,
        max_length=100,
        metadata={"description": "A stored workflow template of the task's owner"},
    )
    input = fields.Dict(
        load_default=dict,
        validate=storable_json,
        metadata={"description": "Its input, checked against the template's JSON Schema when it starts"},
    )


class WeatherParameters(StrictSchema):
    city = Text(required=True, min_length=1, max_length=100)
    units = fields.String(load_default="metric", validate=validate.OneOf(["metric", "imperial", "kelvin"]))


class ProcessDataParameters(StrictSchema):
    duration_seconds = Number(required=True, validate=validate.Range(min=0, max=3600))
    record_count = fields.Integer(
        strict=True, load_default=1000, validate=validate.Range(min=1, max=10_000_000)
    )
    fail_at_percent = fields.Integer(strict=True, validate=validate.Range(min=0, max=100))
