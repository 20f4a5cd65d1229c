"""Task types for the workflow tests (TASKER_TASK_MODULES=mytasks,tests.effects): every finished
run leaves one line in a file, so a test counts side effects, not only statuses."""

from __future__ import annotations

import os
import time

from tasker import RunContext, task


@task
def spread(count: int) -> list:
    """The numbers 1 to `count`: what a map fans out over."""
    return list(range(1, count + 1))


@task
def record(ctx: RunContext, path: str, value: int = 0, seconds: float = 0, fail_while: str = "") -> int:
    """`value`, after `seconds`; one line per finished run in `path` (its idempotency token and
    the value). Fails while the file `fail_while` exists."""
    time.sleep(seconds)  # the work
    if fail_while and os.path.exists(fail_while):
        raise ValueError(f"failing on purpose while {os.path.basename(fail_while)} exists")
    with open(path, "a") as effects:
        effects.write(f"{ctx.idempotency_token} {value}\n")
    return value


@task
def total(ctx: RunContext, path: str, values: list) -> int:
    """The sum of `values` (None counts 0); one line per finished run in `path`."""
    result = sum(value or 0 for value in values)
    with open(path, "a") as effects:
        effects.write(f"{ctx.idempotency_token} {result}\n")
    return result


@task(concurrency={"key": {"$param": "/group"}, "limit": 2})
def grouped(ctx: RunContext, group: str, seconds: float = 0) -> str:
    """At most two of one `group` run at once (its declared concurrency key); stops between its
    tenths of a second when cancelled."""
    for _ in range(round(seconds * 10)):
        time.sleep(0.1)  # the work, in steps
        ctx.check_cancelled()
    return group


@task(limits=["effects-pace"])
def paced(n: int) -> int:
    """`n`, at once: each run takes a token of the rate limit `effects-pace`."""
    return n
