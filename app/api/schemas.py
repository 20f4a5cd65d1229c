"""Request and response schemas: they validate input and generate the OpenAPI document."""

from __future__ import annotations

from datetime import UTC
from typing import Any, ClassVar

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from app.api.helpers import TEMPLATE_PATTERN
from app.core import concurrency
from app.core.keys import NAME_CHARACTERS, name_error
from app.core.ports import DEFAULT_PRIORITY, MAX_PRIORITY, MAX_SCHEDULE_DAYS
from app.core.resources import RetryPolicy, Schedule, Task, Timestamp, Webhook
from app.core.retries import RETRY_ON
from app.core.tags import MAX_TAGS, TAG_PATTERN, TAG_RULE
from app.core.workflows.definition import JOINS, ON_FAILURE
from app.models.task import TaskStatus
from app.models.webhook import EVENTS as WEBHOOK_EVENTS
from app.models.webhook import URL_MAX_LENGTH as MAX_URL_LENGTH
from app.models.workflow import WorkflowStatus
from app.tasks.declare import MAX_TIME_LIMIT
from app.tasks.parameters import STORABLE_PATTERN, StrictSchema, storable_json
from config.base import MAX_RETRIES

STATUSES = [status.value for status in TaskStatus]
MAX_PAGE = 200
MAX_COUNTDOWN = MAX_SCHEDULE_DAYS * 86400


class QuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE  # query strings often carry extras (cache busters); they are ignored


# --- the reference endpoints ---


class RunTaskRequest(StrictSchema):
    task_name = fields.String(required=True, metadata={"example": "sum_two_numbers"})
    task_parameters = fields.Dict(
        required=True,
        metadata={"description": "Checked against the task type's own schema", "example": {"a": 5, "b": 10}},
    )


class RunTaskResponse(Schema):
    task_uuid = fields.UUID(required=True)


class TaskOutputQuery(QuerySchema):
    task_uuid = fields.UUID(required=True)


class TaskOutput(Schema):
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    result = fields.Raw(allow_none=True, metadata={"description": "The value once COMPLETED"})
    error = fields.String(allow_none=True, metadata={"description": "Why it FAILED, or why it is RETRYING"})
    progress = fields.Integer(metadata={"description": "0 to 100, once the task has reported progress"})
    progress_message = fields.String(allow_none=True)


class TaskOutputResponse(Schema):
    task_output = fields.Nested(TaskOutput, required=True)


class Health(Schema):
    status = fields.String(required=True)
    checks = fields.Dict(keys=fields.String(), values=fields.Raw())


# --- the v1 resource API ---


PRIORITIES = {"low": 0, "normal": DEFAULT_PRIORITY, "high": MAX_PRIORITY}
PRIORITY_SCHEMA = {
    "description": "low, normal (the default) or high, or 0 (lowest) to 9 (highest)",
    "oneOf": [
        {"type": "string", "enum": list(PRIORITIES)},
        {"type": "integer", "minimum": 0, "maximum": MAX_PRIORITY},
    ],
}


class Priority(fields.Field):
    """low, normal, high, or 0 to 9; loads as 0 to 9 (9 is the most urgent)."""

    default_error_messages: ClassVar[dict[str, str]] = {
        "invalid": "Must be low, normal, high, or an integer from 0 to 9."
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, str) and value in PRIORITIES:
            return PRIORITIES[value]
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_PRIORITY:
            return value
        raise self.make_error("invalid")


def Tags(**kwargs: Any) -> fields.List:
    """Up to MAX_TAGS key:value strings (app/core/tags.py)."""
    tag = fields.String(validate=validate.Regexp(TAG_PATTERN, error=f"Must be {TAG_RULE}."))
    return fields.List(tag, validate=validate.Length(max=MAX_TAGS), **kwargs)


class WebhookRequest(StrictSchema):
    error_messages = {  # noqa: RUF012 (marshmallow's own class attribute)
        "type": 'Must be an object: {"url": "https://...", "events": ["completed", "failed"]} '
        "(events optional)."
    }
    url = fields.String(
        required=True,
        validate=validate.Length(min=1, max=MAX_URL_LENGTH),
        metadata={
            "description": "https URL of a public host; called with a signed POST when the task ends",
            "example": "https://example.com/hooks/tasker",
        },
    )
    events = fields.List(
        fields.String(validate=validate.OneOf(list(WEBHOOK_EVENTS.values()))),
        validate=validate.Length(min=1, max=3),
        metadata={"description": "Which endings to deliver (default: all three)"},
    )


class RetryPolicyRequest(StrictSchema):
    max_retries = fields.Integer(
        strict=True,
        validate=validate.Range(min=0, max=MAX_RETRIES),
        metadata={
            "description": f"Retries after the first attempt, 0 to {MAX_RETRIES} (default MAX_RETRY_ATTEMPTS)"
        },
    )
    on = fields.String(
        load_default="any",
        validate=validate.OneOf(RETRY_ON),
        metadata={
            "description": "any: every failure but a cancel; transient: upstream 429/5xx, timeouts, lost "
            "connections only (default: any)"
        },
    )


def _concurrency_key(value: Any) -> None:
    if concurrency.checked_key(value) is None:
        raise ValidationError(concurrency.KEY_RULE)


class ConcurrencyRequest(StrictSchema):
    key = fields.Raw(
        validate=_concurrency_key,
        metadata={
            "description": 'What makes tasks share a key: "global" (the default), "owner", or {"$param": '
            '"/customer_id"} (per owner and value of that parameter). A type that declares a key keeps it.',
            "example": "owner",
            "oneOf": [
                {"type": "string", "enum": list(concurrency.KEYS)},
                {
                    "type": "object",
                    "properties": {"$param": {"type": "string", "pattern": r"^(/([^/~]|~[01])*)+$"}},
                    "required": ["$param"],
                    "additionalProperties": False,
                },
            ],
        },
    )
    limit = fields.Integer(
        strict=True,
        validate=validate.Range(min=1, max=concurrency.MAX_LIMIT),
        metadata={
            "description": "How many tasks of one key run at once; at most the type's own (default: it)"
        },
    )
    strategy = fields.String(
        validate=validate.OneOf(concurrency.STRATEGIES),
        metadata={
            "description": "When the key is full: queue (wait, the default), cancel_in_progress (cancel the "
            "key's unfinished tasks), cancel_newest (cancel this one), keep_newest_queued (cancel the key's "
            "waiting ones)"
        },
    )


class TaskSubmitRequest(StrictSchema):
    name = fields.String(
        required=True, metadata={"description": "A task type or one of its aliases", "example": "sum"}
    )
    parameters = fields.Dict(
        load_default=dict,
        metadata={"description": "Checked against the task type's schema", "example": {"a": 1, "b": 2}},
    )
    priority = Priority(metadata={"description": "Default: its task type's (normal unless it says)"})
    countdown = fields.Float(
        validate=validate.Range(min=0, max=MAX_COUNTDOWN),
        metadata={"description": "Run this many seconds from now"},
    )
    run_at = fields.AwareDateTime(
        error_messages={
            "invalid_awareness": "Add a time zone, such as Z (UTC) or +01:00: 2026-12-07T09:00:00Z."
        },
        metadata={
            "description": f"Run at this time (ISO 8601 with a zone, up to {MAX_SCHEDULE_DAYS} days ahead)"
        },
    )
    webhook = fields.Nested(WebhookRequest, metadata={"description": "Be told when the task ends"})
    timeout_seconds = fields.Integer(
        strict=True,
        validate=validate.Range(min=1, max=MAX_TIME_LIMIT),
        metadata={
            "description": "Its hard time limit in seconds, at most its task type's time_limit (the soft "
            "one, which the task is told of, at two thirds)"
        },
    )
    tags = Tags(metadata={"description": f"Up to {MAX_TAGS} key:value strings, to find it by (?tag=)"})
    retry_policy = fields.Nested(
        RetryPolicyRequest,
        metadata={
            "description": "Retry this task after a failure, with exponential backoff (default: its task "
            "type's policy, in GET /api/v1/task-types)"
        },
    )
    concurrency = fields.Nested(
        ConcurrencyRequest,
        metadata={
            "description": "At most `limit` tasks of its key run at once; the others wait as WAITING "
            "(default: its task type's, in GET /api/v1/task-types; a submit may lower the limit, not "
            "raise it)"
        },
    )

    @validates_schema
    def one_time_at_most(self, data: dict[str, Any], **kwargs: Any) -> None:
        if "countdown" in data and "run_at" in data:
            raise ValidationError("Give countdown or run_at, not both.", "run_at")


MAX_BULK = 1000  # submits in one POST /api/v1/tasks/bulk
IDEMPOTENCY_KEY = [
    validate.Length(min=1, max=200),
    validate.Regexp(r"^[\x21-\x7e]+$", error="Must be printable ASCII."),
]


class BulkItem(TaskSubmitRequest):
    """One submit of a bulk request: a submit's body, and its own Idempotency-Key."""

    idempotency_key = fields.String(
        validate=IDEMPOTENCY_KEY,
        metadata={
            "description": "As the Idempotency-Key header of one submit: the same within 24 h, no new task"
        },
    )


class BulkSubmitRequest(StrictSchema):
    tasks = fields.List(
        fields.Raw(),
        required=True,
        validate=validate.Length(min=1, max=MAX_BULK),
        metadata={"description": f"1 to {MAX_BULK} submit bodies, each as POST /api/v1/tasks takes it"},
    )


class BulkResult(Schema):
    index = fields.Integer(required=True, metadata={"description": "Its place in `tasks`, from 0"})
    id = fields.UUID(metadata={"description": "The task made (or found under its idempotency_key)"})
    status = fields.String(metadata={"description": "The task's status as written"})
    created = fields.Boolean(metadata={"description": "False when its idempotency_key found an earlier task"})
    error = fields.Dict(metadata={"description": "Why this item alone was refused: {error, code, details}"})


class BulkResults(Schema):
    results = fields.List(
        fields.Nested(BulkResult), required=True, metadata={"description": "One per item, in order"}
    )
    submitted = fields.Integer(required=True)
    failed = fields.Integer(required=True)


class IdempotencyHeaders(QuerySchema):
    idempotency_key = fields.String(
        data_key="Idempotency-Key",
        validate=IDEMPOTENCY_KEY,
        metadata={
            "description": "Same key and body within 24 h: the original task (200), nothing new is created"
        },
    )


class WaitQuery(QuerySchema):
    wait = fields.Float(
        load_default=0,
        validate=validate.Range(min=0, max=30),
        metadata={"description": "Seconds to wait for a terminal status (0 to 30)"},
    )


class LastEventHeaders(QuerySchema):
    last_event_id = fields.Integer(
        data_key="Last-Event-ID",
        strict=False,
        validate=validate.Range(min=0, max=2**31 - 1),
        metadata={"description": "The id of the last event received: resume after it"},
    )


class StatusName(fields.String):
    """A task status, in any case (pending or PENDING)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return super()._deserialize(value, attr, data, **kwargs).upper()


# An owner is named as keys.py accepts it for a key's name or owner.
def _owner(value: str) -> None:
    error = name_error(value)
    if error:
        raise ValidationError(error)


# The documented pattern (JSON Schema's `$` is the end of the string), and the whole-string check.
OWNER = [
    validate.Length(min=1, max=100),
    validate.Regexp(rf"^{NAME_CHARACTERS}+$", error="Letters, digits and . _ @ - only."),
    _owner,
]


class TaskFilters(QuerySchema):
    """What the task list and the task event stream filter by."""

    status = fields.List(
        StatusName(validate=validate.OneOf(STATUSES)),
        metadata={"description": "Repeatable; any case"},
    )
    name = fields.String(
        validate=[
            validate.Length(max=100),
            validate.Regexp(STORABLE_PATTERN, error="Must not contain NUL characters."),
        ]
    )
    owner = fields.String(validate=OWNER, metadata={"description": "Admin keys only: one owner's tasks"})
    tag = fields.List(
        fields.String(validate=validate.Regexp(TAG_PATTERN, error=f"Must be {TAG_RULE}.")),
        validate=validate.Length(max=MAX_TAGS),
        metadata={"description": "key:value; repeatable, all must match"},
    )


class TaskListQuery(TaskFilters):
    schedule_id = fields.UUID(metadata={"description": "Only the tasks this schedule made"})
    workflow_id = fields.UUID(metadata={"description": "Only this workflow's steps"})
    created_after = fields.AwareDateTime(
        default_timezone=UTC, metadata={"description": "ISO 8601, inclusive; without a zone, UTC"}
    )
    created_before = fields.AwareDateTime(
        default_timezone=UTC, metadata={"description": "ISO 8601, exclusive; without a zone, UTC"}
    )
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=MAX_PAGE))
    cursor = fields.String(
        validate=validate.Length(max=500), metadata={"description": "next_cursor of the previous page"}
    )


class ScheduleListQuery(QuerySchema):
    owner = fields.String(validate=OWNER, metadata={"description": "Admin keys only: one owner's schedules"})
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=MAX_PAGE))
    cursor = fields.String(
        validate=validate.Length(max=500), metadata={"description": "next_cursor of the previous page"}
    )


RETRYABLE = ("FAILED", "CANCELLED")
CANCELLABLE = ("WAITING", "SCHEDULED", "PENDING", "STARTED", "RETRYING")


class BulkActionFilters(StrictSchema):
    """Which tasks a bulk retry or cancel acts on: the task list's filters, in a JSON body."""

    name = fields.String(validate=validate.Length(max=100))
    tag = fields.List(
        fields.String(validate=validate.Regexp(TAG_PATTERN, error=f"Must be {TAG_RULE}.")),
        validate=validate.Length(max=MAX_TAGS),
        metadata={"description": "key:value; all must match"},
    )
    schedule_id = fields.UUID()
    created_after = fields.AwareDateTime(
        default_timezone=UTC, metadata={"description": "ISO 8601, inclusive"}
    )
    created_before = fields.AwareDateTime(
        default_timezone=UTC, metadata={"description": "ISO 8601, exclusive"}
    )
    owner = fields.String(validate=OWNER, metadata={"description": "Admin keys only: one owner's tasks"})


class BulkRetryFilters(BulkActionFilters):
    status = fields.List(
        StatusName(validate=validate.OneOf(RETRYABLE)), metadata={"description": "Any case; default both"}
    )


class BulkCancelFilters(BulkActionFilters):
    status = fields.List(
        StatusName(validate=validate.OneOf(CANCELLABLE)), metadata={"description": "Any case; default all"}
    )


class BulkActionResult(Schema):
    count = fields.Integer(required=True, metadata={"description": "Tasks retried (made) or cancelled"})
    ids = fields.List(
        fields.UUID(), required=True, metadata={"description": "The tasks made (retry) or cancelled (cancel)"}
    )
    failed = fields.Integer(metadata={"description": "Retries refused (a quota, a type no longer served)"})
    more = fields.Boolean(
        required=True,
        metadata={"description": "More tasks match than one request acts on (1,000): send it again"},
    )


class TaskPage(Schema):
    tasks = fields.List(fields.Nested(Task), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class TaskTypeInfo(Schema):
    name = fields.String(required=True)
    module = fields.String(required=True, metadata={"description": "The module that declares it"})
    aliases = fields.List(fields.String(), required=True)
    description = fields.String(required=True)
    queue = fields.String(required=True)
    soft_time_limit = fields.Integer(required=True)
    time_limit = fields.Integer(required=True)
    max_retries = fields.Integer(required=True)
    retry_policy = fields.Nested(
        RetryPolicy, required=True, metadata={"description": "What a task of this type retries by default"}
    )
    priority = fields.Integer(
        required=True, metadata={"description": "A task's priority when its submit names none"}
    )
    concurrency = fields.Dict(
        required=True,
        allow_none=True,
        metadata={
            "description": "Its concurrency key: {key, limit, strategy} (null: none unless a submit "
            "gives one)"
        },
    )
    limits = fields.List(
        fields.String(),
        required=True,
        metadata={"description": "The named rate limits each run takes a token of (GET /api/v1/limits)"},
    )
    parameters = fields.Dict(required=True, metadata={"description": "JSON Schema of the parameters"})
    workers = fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": "Live workers that serve it (null: unknown while the database is away)"},
    )


class ConcurrencyKeyView(Schema):
    key = fields.String(required=True, metadata={"example": "process_data:owner=default"})
    limit = fields.Integer(
        required=True, metadata={"description": "Its tasks' limit (the largest, if they differ)"}
    )
    running = fields.Integer(
        required=True,
        metadata={"description": "Tasks holding a slot: PENDING (admitted), STARTED or RETRYING"},
    )
    waiting = fields.Integer(required=True, metadata={"description": "Tasks WAITING for a slot"})


class RateLimitView(Schema):
    name = fields.String(required=True, metadata={"example": "openai"})
    rate = fields.String(required=True, metadata={"example": "60/minute"})
    burst = fields.Integer(required=True, metadata={"description": "Tokens that may be taken at once"})
    tokens = fields.Integer(metadata={"description": "Tokens free now"})
    waiting = fields.Integer(metadata={"description": "Tasks WAITING for their turn under it"})


class LimitsView(Schema):
    concurrency = fields.List(
        fields.Nested(ConcurrencyKeyView),
        required=True,
        metadata={"description": "Keys with unfinished tasks (the caller's; an admin's: everyone's)"},
    )
    rate_limits = fields.List(
        fields.Nested(RateLimitView),
        required=True,
        metadata={"description": "Every named rate limit set, with its waiting tasks (the caller's)"},
    )


class RateLimitPut(StrictSchema):
    rate = fields.String(
        required=True,
        validate=validate.Regexp(
            r"^[1-9][0-9]{0,8}/(second|minute|hour|day)$",
            error='Must be "<count>/<second|minute|hour|day>", e.g. "10/second" or "60/minute".',
        ),
        metadata={"description": "Runs per period, across every worker", "example": "60/minute"},
    )
    burst = fields.Integer(
        load_default=1,
        validate=validate.Range(1, 10_000),
        metadata={"description": "Runs that may start at once (default 1)"},
    )


class TaskTypeList(Schema):
    task_types = fields.List(fields.Nested(TaskTypeInfo), required=True)


class TaskStatusView(Schema):
    id = fields.UUID(required=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    progress = fields.Integer(allow_none=True)
    progress_message = fields.String(allow_none=True)
    attempts = fields.Integer(required=True)


class TaskResultView(Schema):
    id = fields.UUID(required=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    result = fields.Raw(allow_none=True)
    error = fields.String(allow_none=True)


class QueueStats(Schema):
    name = fields.String(required=True)
    messages_waiting = fields.Integer(required=True, metadata={"description": "Messages in the broker"})
    pending = fields.Integer(required=True, metadata={"description": "PENDING tasks in the database"})
    started = fields.Integer(required=True, metadata={"description": "STARTED tasks in the database"})
    oldest_pending_age_seconds = fields.Float(allow_none=True, required=True)
    paused = fields.Boolean(
        required=True, metadata={"description": "Paused: none of its tasks starts until it is resumed"}
    )
    held = fields.Integer(
        required=True, metadata={"description": "Tasks its pause holds (WAITING, waiting_for queue_paused)"}
    )


class QueueState(Schema):
    queue = fields.String(required=True)
    paused = fields.Boolean(required=True)
    paused_at = Timestamp(allow_none=True, required=True)
    paused_by = fields.String(allow_none=True, required=True, metadata={"description": "The admin's owner"})
    held = fields.Integer(required=True, metadata={"description": "Tasks its pause holds"})
    released = fields.Integer(metadata={"description": "Resume only: the held tasks it released"})


class QueueReport(Schema):
    queues = fields.List(fields.Nested(QueueStats), required=True)
    totals = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    workers_online = fields.Integer(
        required=True, metadata={"description": "Workers whose heartbeat was seen lately"}
    )


# The windows /api/v1/stats offers, as a dashboard's picker would (seconds each).
WINDOWS = {
    "1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "3h": 10800, "6h": 21600,
    "12h": 43200, "24h": 86400, "2d": 172800, "7d": 604800,
}  # fmt: skip


class StatsQuery(QuerySchema):
    window = fields.String(
        load_default="1h",
        validate=validate.OneOf(list(WINDOWS)),
        metadata={"description": "The last minute to the last 7 days (default 1h)"},
    )
    owner = fields.String(validate=OWNER, metadata={"description": "Admin keys only: one owner's tasks"})


class Percentiles(Schema):
    p50 = fields.Float(allow_none=True, required=True)
    p95 = fields.Float(allow_none=True, required=True)
    p99 = fields.Float(allow_none=True, required=True)


class TaskTypeStats(Schema):
    task_type = fields.String(required=True)
    finished = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    total = fields.Integer(required=True)
    throughput_per_minute = fields.Float(required=True)
    failure_ratio = fields.Float(allow_none=True, required=True, metadata={"description": "FAILED / total"})
    run_seconds = fields.Nested(Percentiles, required=True, metadata={"description": "Last start to outcome"})
    wait_seconds = fields.Nested(
        Percentiles, required=True, metadata={"description": "Created (or due) to last start"}
    )


class Stats(Schema):
    window = fields.String(required=True)
    window_seconds = fields.Integer(required=True)
    since = fields.String(required=True)
    until = fields.String(required=True)
    task_types = fields.List(fields.Nested(TaskTypeStats), required=True)


# --- recurring schedules ---

NAME_RULES = [
    validate.Length(min=1, max=100),
    validate.Regexp(STORABLE_PATTERN, error="Must not contain NUL characters."),
]


class CronPreviewQuery(QuerySchema):
    cron = fields.String(
        required=True,
        validate=validate.Length(min=1, max=100),
        metadata={"description": "As in a schedule", "example": "*/5 * * * *"},
    )
    timezone = fields.String(load_default="UTC", validate=validate.Length(min=1, max=64))
    count = fields.Integer(load_default=5, validate=validate.Range(min=1, max=50))


class CronPreview(Schema):
    cron = fields.String(required=True)
    timezone = fields.String(required=True)
    next_run_times = fields.List(Timestamp(), required=True)


class ScheduleCreate(StrictSchema):
    """A new schedule; with partial=True, the changes of a PATCH (at least one field)."""

    name = fields.String(required=True, validate=NAME_RULES, metadata={"example": "nightly-report"})
    task = fields.String(
        required=True, metadata={"description": "A task type or one of its aliases", "example": "sum"}
    )
    parameters = fields.Dict(
        load_default=dict,
        metadata={"description": "Checked against the task type's schema", "example": {"a": 1, "b": 2}},
    )
    cron = fields.String(
        required=True,
        validate=validate.Length(min=1, max=100),
        metadata={
            "description": "minute hour day-of-month month day-of-week, or @hourly, @daily, @weekly...",
            "example": "*/5 * * * *",
        },
    )
    timezone = fields.String(
        load_default="UTC",
        validate=validate.Length(min=1, max=64),
        metadata={"description": "IANA time zone the cron is read in", "example": "Europe/Paris"},
    )
    priority = Priority(load_default=PRIORITIES["normal"])
    enabled = fields.Boolean(load_default=True, metadata={"description": "false pauses the schedule"})
    webhook = fields.Nested(
        WebhookRequest, allow_none=True, metadata={"description": "Given to every task it makes (null: none)"}
    )
    tags = Tags(allow_none=True, metadata={"description": "Given to every task it makes (null: none)"})

    @validates_schema
    def not_empty(self, data: dict[str, Any], **kwargs: Any) -> None:
        if self.partial and not data:
            raise ValidationError("Give at least one field to change.", "_schema")


class ScheduleList(Schema):
    schedules = fields.List(fields.Nested(Schedule), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


# --- workflows ---

WORKFLOW_STATUSES = [status.value for status in WorkflowStatus]

STEP_ID = [
    validate.Length(min=1, max=64),
    validate.Regexp(
        r"^[A-Za-z][A-Za-z0-9_-]*$", error="Must start with a letter; letters, digits, _ and - only."
    ),
]

TEMPLATE_NAME = [
    validate.Length(min=1, max=100),
    validate.Regexp(
        TEMPLATE_PATTERN, error="Must start with a letter or digit; letters, digits, _ . and - only."
    ),
]


class WorkflowMapRequest(StrictSchema):
    over = fields.Dict(
        required=True,
        metadata={
            "description": 'The array to fan out over: {"$input": "/pointer"} or '
            '{"$step": "id", "path": "/pointer"}',
            "example": {"$step": "list", "path": "/keys"},
        },
    )
    max_items = fields.Integer(
        load_default=None,
        validate=validate.Range(min=1),
        metadata={"description": "The longest array it takes (default 1,000; WORKFLOW_MAX_ITEMS caps it)"},
    )
    max_parallel = fields.Integer(
        load_default=None,
        validate=validate.Range(min=1, max=100000),
        metadata={"description": "How many of its items run at once (default: all)"},
    )


class WorkflowStepRequest(StrictSchema):
    id = fields.String(required=True, validate=STEP_ID, metadata={"example": "list"})
    task = fields.String(required=True, metadata={"description": "A task type or one of its aliases"})
    after = fields.List(
        fields.String(validate=STEP_ID),
        load_default=list,
        validate=validate.Length(max=100),
        metadata={"description": "The steps this one runs after (none: it starts at once)"},
    )
    join = fields.String(
        load_default="all_success",
        validate=validate.OneOf(JOINS),
        metadata={
            "description": "all_success: runs once every parent COMPLETED (else CANCELLED); all_done: once "
            "every parent ended, and a $step reference gives that parent's {status, result, error}"
        },
    )
    parameters = fields.Dict(
        load_default=dict,
        metadata={
            "description": 'As the type\'s schema says; a value may be {"$input": "/pointer"} or '
            '{"$step": "id", "path": "/pointer"} (JSON Pointers, resolved when the step is released), '
            'or in a map step {"$item": "/pointer"}',
            "example": {"a": {"$input": "/a"}, "b": 2},
        },
    )
    map = fields.Nested(
        WorkflowMapRequest,
        metadata={"description": "One task per item of an array known at run time (`resize[17]`)"},
    )


class WorkflowRequest(StrictSchema):
    name = fields.String(
        validate=NAME_RULES,
        metadata={
            "description": "Required with steps; a template's workflow is named after it",
            "example": "thumbnails",
        },
    )
    template = fields.String(
        validate=TEMPLATE_NAME,
        metadata={"description": "A stored template to start (instead of name and steps), with input"},
    )
    input = fields.Dict(load_default=dict, metadata={"description": "What $input references point into"})
    steps = fields.List(fields.Nested(WorkflowStepRequest), validate=validate.Length(min=1))
    webhook = fields.Nested(
        WebhookRequest,
        metadata={
            "description": "Where the workflow's ending is delivered: workflow.completed, .failed, .cancelled"
        },
    )
    on_failure = fields.String(
        validate=validate.OneOf(ON_FAILURE),
        metadata={
            "description": "fail_fast: a failed step cancels every step not started; continue: only the "
            "steps that needed it (all_success) are cancelled"
        },
    )

    @validates_schema
    def steps_or_template(self, data: dict[str, Any], **kwargs: Any) -> None:
        if "template" in data:
            for field_name in ("name", "steps", "on_failure"):
                if field_name in data:
                    raise ValidationError(
                        "A template names its steps and on_failure: give it an input only.", field_name
                    )
        else:
            for field_name in ("name", "steps"):
                if field_name not in data:
                    raise ValidationError("Missing data for required field (or give a template).", field_name)

    @validates_schema
    def storable(self, data: dict[str, Any], **kwargs: Any) -> None:
        """The input and each step's parameters, stored as they are until a step is released."""
        values = [("input", data.get("input"))]
        values += [
            (f"steps.{i}.parameters", step.get("parameters"))
            for i, step in enumerate(data.get("steps") or ())
        ]
        _storable(values)


def _storable(values: list[tuple[str, Any]]) -> None:
    """Each (field, value) checked as storable JSON (no NUL character); the first that is not is
    a ValidationError naming its field."""
    for field_name, value in values:
        try:
            storable_json(value)
        except ValidationError as exc:
            raise ValidationError(exc.messages, field_name) from None


class TemplateName(StrictSchema):
    name = fields.String(required=True, validate=TEMPLATE_NAME)


class WorkflowTemplateRequest(StrictSchema):
    description = fields.String(validate=validate.Length(max=1000), allow_none=True)
    input_schema = fields.Dict(
        allow_none=True,
        metadata={
            "description": "A JSON Schema the input must fit when the template is started (null: any object)"
        },
    )
    steps = fields.List(fields.Nested(WorkflowStepRequest), required=True, validate=validate.Length(min=1))
    on_failure = fields.String(
        validate=validate.OneOf(ON_FAILURE), metadata={"description": "fail_fast (default) or continue"}
    )

    @validates_schema
    def storable(self, data: dict[str, Any], **kwargs: Any) -> None:
        values = [("input_schema", data.get("input_schema"))]
        values += [(f"steps.{i}.parameters", step.get("parameters")) for i, step in enumerate(data["steps"])]
        _storable(values)


class WorkflowTemplate(Schema):
    name = fields.String(required=True)
    description = fields.String(allow_none=True, required=True)
    input_schema = fields.Dict(allow_none=True, required=True)
    steps = fields.List(fields.Dict(), required=True)
    on_failure = fields.String(required=True)
    created_at = fields.String(required=True)
    updated_at = fields.String(required=True)


class WorkflowTemplateList(Schema):
    templates = fields.List(fields.Nested(WorkflowTemplate), required=True)
    next_cursor = fields.String(
        allow_none=True, required=True, metadata={"description": "The last name of this page"}
    )


class WorkflowTemplateListQuery(QuerySchema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=MAX_PAGE))
    cursor = fields.String(validate=validate.Length(max=100))


class WorkflowResumeRequest(StrictSchema):
    steps = fields.List(
        fields.String(validate=validate.Length(min=1, max=100)),
        validate=validate.Length(min=1, max=1000),
        metadata={
            "description": "Step ids or map item keys (`resize[17]`) to run again with every step after "
            "them (default: those that FAILED or were CANCELLED)",
            "example": ["resize[17]"],
        },
    )


class WorkflowStep(Schema):
    id = fields.String(required=True)
    task = fields.String(required=True)
    after = fields.List(fields.String(), required=True)
    join = fields.String(required=True)
    task_id = fields.String(allow_none=True, required=True)
    status = fields.String(
        required=True, metadata={"description": "Its task's status (WAITING until released)"}
    )
    attempts = fields.Integer(required=True)
    result = fields.Raw(allow_none=True, required=True)
    error = fields.String(allow_none=True, required=True)
    waiting_for = fields.List(
        fields.String(), required=True, metadata={"description": "Parents not ended yet"}
    )
    map = fields.Dict(
        metadata={
            "description": "A map step's over, max_items and max_parallel, and its items counted: "
            "{total, completed, failed, cancelled, running, waiting}"
        }
    )


class Workflow(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(WORKFLOW_STATUSES))
    input = fields.Dict(required=True)
    on_failure = fields.String(required=True)
    error = fields.String(allow_none=True, required=True)
    owner = fields.String(required=True)
    created_at = fields.String(required=True)
    updated_at = fields.String(required=True)
    completed_at = fields.String(allow_none=True, required=True)
    webhook = fields.Nested(
        Webhook, allow_none=True, metadata={"description": "Where its ending is delivered"}
    )
    steps = fields.List(fields.Nested(WorkflowStep), metadata={"description": "On GET of one workflow"})


class WorkflowListQuery(QuerySchema):
    status = fields.String(validate=validate.OneOf(WORKFLOW_STATUSES))
    name = fields.String(validate=validate.Length(max=100))
    owner = fields.String(validate=OWNER, metadata={"description": "Admin keys only: one owner's workflows"})
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=MAX_PAGE))
    cursor = fields.String(validate=validate.Length(max=500))


class WorkflowList(Schema):
    workflows = fields.List(fields.Nested(Workflow), required=True)
    next_cursor = fields.String(allow_none=True, required=True)
