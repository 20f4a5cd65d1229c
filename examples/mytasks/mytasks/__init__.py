"""Task types of one's own, for Tasker: `TASKER_TASK_MODULES=mytasks` loads them.

- `count_items`: a long job in steps, with progress and cancel, parameters by a marshmallow schema.
- `add_tax`: parameters from the type hints alone.
- `flaky_lookup`: fails with a TransientError `failures` times, then succeeds (its retry policy).
- `list_objects`, `resize_image`, `summarize`: the thumbnails workflow of docs/workflows.md, on
  pretend storage (names only, no bytes), so it runs anywhere.
"""

from __future__ import annotations

import time

from marshmallow import Schema, fields, validate

from tasker import RunContext, TransientError, task


class CountItems(Schema):
    items = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=10_000))
    step_seconds = fields.Float(load_default=0.01, validate=validate.Range(min=0, max=5))


@task(
    name="count_items",
    parameters=CountItems,
    time_limit=600,
    description="Count items one step at a time, reporting progress; stops between steps when cancelled.",
)
def count_items(ctx: RunContext, items: int, step_seconds: float) -> dict:
    for done in range(1, items + 1):
        time.sleep(step_seconds)  # the work of one step
        ctx.report_progress(done * 100 // items, f"{done} of {items}")
        ctx.check_cancelled()
    return {"counted": items}


@task
def add_tax(amount: float, rate: float = 0.2) -> float:
    """Add tax to an amount: amount * (1 + rate), to the cent."""
    return round(amount * (1 + rate), 2)


@task(name="flaky_lookup", retry_policy={"max_retries": 3, "on": "transient"})
def flaky_lookup(ctx: RunContext, key: str, failures: int = 1) -> dict:
    """Look a key up in an upstream that is down for the first `failures` attempts."""
    if ctx.retries < failures:
        raise TransientError(f"upstream unavailable (attempt {ctx.retries + 1})", retry_after=0.1)
    return {"key": key, "attempts": ctx.retries + 1}


@task
def list_objects(bucket: str, prefix: str = "", count: int = 3) -> dict:
    """The keys of the objects under a prefix (pretend storage: `count` of them)."""
    return {"bucket": bucket, "keys": [f"{prefix}{index:03}.jpg" for index in range(count)]}


@task
def resize_image(key: str, width: int = 256, fail: bool = False) -> dict:
    """Make a thumbnail of one image (pretend: its key); `fail` fails it on purpose."""
    if fail:
        raise ValueError(f"cannot read {key}")
    return {"key": key, "thumbnail": f"thumbs/{width}/{key}"}


@task
def summarize(results: list) -> dict:
    """Count what a map step's items made: its result has one entry an item, None where one failed."""
    return {"images": len(results), "thumbnails": sum(1 for result in results if result is not None)}
