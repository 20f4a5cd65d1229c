"""Tags: up to MAX_TAGS "key:value" strings on a task or a schedule, to find its tasks by
(`GET /api/v1/tasks?tag=customer:acme`, several ANDed; the same on /api/v1/events)."""

from __future__ import annotations

import re
from typing import Any

from app.core.errors import InvalidInput

MAX_TAGS = 10
TAG_PATTERN = r"^[A-Za-z0-9_.-]{1,50}:[A-Za-z0-9_.:@/+=-]{1,100}$"
TAG = re.compile(TAG_PATTERN.strip("^$"))
TAG_RULE = "key:value; the key 1 to 50 of A-Z a-z 0-9 _ . -, the value 1 to 100 of those and : @ / + ="


def tag_error(value: Any) -> str | None:
    """What is wrong with one tag, or None."""
    if not isinstance(value, str) or not TAG.fullmatch(value):
        return f"Must be {TAG_RULE}."
    return None


def checked(tags: Any, field: str = "tags") -> list[str] | None:
    """The tags as stored (each once, in the order given; None for none), or InvalidInput naming
    `field` and the rule."""
    if tags is None:
        return None
    if not isinstance(tags, list | tuple):
        raise InvalidInput(f"{field} must be a list of strings.", {field: ["Must be a list."]})
    problems = {str(i): [error] for i, tag in enumerate(tags) if (error := tag_error(tag))}
    if problems:
        raise InvalidInput(f"Invalid {field}: each must be {TAG_RULE}.", {field: problems})
    unique = list(dict.fromkeys(tags))
    if len(unique) > MAX_TAGS:
        raise InvalidInput(f"At most {MAX_TAGS} {field}.", {field: [f"At most {MAX_TAGS}."]})
    return unique or None
