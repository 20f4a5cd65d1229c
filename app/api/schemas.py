"""Request schemas of the reference endpoints."""

from __future__ import annotations

from marshmallow import RAISE, Schema, fields


class RunTaskRequest(Schema):
    class Meta:
        unknown = RAISE

    task_name = fields.String(required=True)
    task_parameters = fields.Raw(required=True)  # checked against the task's own schema


class TaskOutputQuery(Schema):
    class Meta:
        unknown = RAISE

    task_uuid = fields.UUID(required=True)
