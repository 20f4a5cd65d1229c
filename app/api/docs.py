"""OpenAPI (flask-smorest) and Swagger UI, served entirely by Tasker (no CDN)."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import flask_swagger_ui
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, send_from_directory
from flask_smorest import Api
from marshmallow import Schema, fields

from app.api.helpers import TEMPLATE_PATTERN, IdConverter, TemplateConverter
from app.api.schemas import PRIORITY_SCHEMA
from app.core.resources import Timestamp
from app.core.usage import UsagePolicy
from app.tasks.parameters import Number

SWAGGER_UI_DIST = Path(flask_swagger_ui.__file__).resolve().parent / "dist"

OPENAPI_CONFIG = {
    "API_TITLE": "Tasker",
    "API_VERSION": "1",
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/",
    "OPENAPI_JSON_PATH": "openapi.json",
    "OPENAPI_SWAGGER_UI_PATH": "/docs",
    "OPENAPI_SWAGGER_UI_URL": "/docs/static/",
}

API_DESCRIPTION = (
    "Submit a task by name with JSON parameters, get its id at once, and read its status and "
    "result later. The reference endpoints (/run-task, /get-task-output) and the v1 resource API "
    "share one store. Every error is {error, code, details}."
)


class ErrorSchema(Schema):
    error = fields.String(required=True, metadata={"description": "What went wrong, in one sentence"})
    code = fields.String(required=True, metadata={"description": "snake_case error code"})
    details = fields.Dict(required=True, metadata={"description": "Fields and rules, or the dependency"})


class TaskerApi(Api):
    """flask-smorest's Api with Tasker's error shape; errors themselves are handled in app.api.errors."""

    ERROR_SCHEMA = ErrorSchema

    def _register_error_handlers(self) -> None:
        pass  # app.api.errors handles every error, HTTP ones included


def init_docs(app: Flask) -> TaskerApi:
    app.config.update({key: value for key, value in OPENAPI_CONFIG.items() if key not in app.config})
    app.url_map.converters["id"] = IdConverter
    app.url_map.converters["template"] = TemplateConverter
    api = TaskerApi(app, spec_kwargs={"info": {"description": API_DESCRIPTION}})
    api.spec.components.security_scheme("bearerKey", {"type": "http", "scheme": "bearer"})
    api.spec.components.security_scheme("headerKey", {"type": "apiKey", "in": "header", "name": "X-API-Key"})
    # Keys mode: one of the two on every operation but health and the docs. Open mode: optional.
    required = [{"bearerKey": []}, {"headerKey": []}]
    api.spec.options["security"] = required if app.config["AUTH_MODE"] == "keys" else [*required, {}]
    api.register_field(Number, "number", None)
    api.register_field(Timestamp, "string", "date-time")
    api.register_converter(IdConverter, lambda converter: {"type": "string", "format": "uuid"})
    api.register_converter(
        TemplateConverter,
        lambda converter: {"type": "string", "pattern": TEMPLATE_PATTERN, "minLength": 1, "maxLength": 100},
    )
    app.register_blueprint(_swagger_assets())
    return api


@functools.cache
def _converter() -> Any:
    plugin = MarshmallowPlugin()
    APISpec("Tasker", "1", OPENAPI_CONFIG["OPENAPI_VERSION"], plugins=[plugin])
    plugin.map_to_openapi_type(Number, "number", None)
    plugin.map_to_openapi_type(Timestamp, "string", "date-time")
    return plugin.converter


def json_schema(schema: Schema) -> dict[str, Any]:
    """A marshmallow schema as JSON Schema, as it appears in the OpenAPI document."""
    return _converter().schema2jsonschema(schema)


def option_fields(schema: Schema, exclude: Iterable[str]) -> dict[str, Any]:
    """The JSON Schema of `schema`'s fields but `exclude`, as they sit beside a task's name and parameters."""
    properties = {k: v for k, v in json_schema(schema)["properties"].items() if k not in exclude}
    for name, field in schema.fields.items():
        if name in properties and isinstance(field, fields.Nested):
            # Inline: a $ref here would point at a component nothing registers.
            inline = json_schema(field.schema) | {"description": field.metadata.get("description", "")}
            properties[name] = {"oneOf": [inline, {"type": "null"}]} if field.allow_none else inline
    if "priority" in properties:
        properties["priority"] = PRIORITY_SCHEMA  # a custom field: apispec cannot say low|normal|high|0-9
    return properties


def parameters_schema(task_type: Any, policy: UsagePolicy | None = None) -> dict[str, Any]:
    """A task type's parameters as JSON Schema, narrowed by the deployment's usage policy."""
    schema = json_schema(task_type.schema)
    return policy.document(task_type.name, schema) if policy is not None else schema


def submit_body(
    registry: Iterable[Any],
    name_field: str,
    parameters_field: str,
    extra: dict[str, Any] | None = None,
    required: Iterable[str] = (),
    policy: UsagePolicy | None = None,
) -> dict[str, Any]:
    """A request body that is one of the task types: its name (or an alias), its parameters, `extra`.

    `required` lists the fields that must be present besides the name (default: the parameters).
    """
    branches = [
        {
            "title": task_type.name,
            "type": "object",
            "properties": {
                name_field: {"type": "string", "enum": [task_type.name, *task_type.aliases]},
                parameters_field: parameters_schema(task_type, policy),
                **_per_type(extra or {}, task_type),
            },
            "required": [name_field, *(required or [parameters_field])],
            "additionalProperties": False,
        }
        for task_type in registry
    ]
    return {"required": True, "content": {"application/json": {"schema": {"oneOf": branches}}}}


def _per_type(options: dict[str, Any], task_type: Any) -> dict[str, Any]:
    """The submit's options as one task type takes them: its own time limit bounds timeout_seconds."""
    if "timeout_seconds" not in options:
        return options
    return {**options, "timeout_seconds": {**options["timeout_seconds"], "maximum": task_type.time_limit}}


# Which response gives the id that other operations take: (path, method, status, the id's
# field in the body, the parameter it fills, the operations). Clients and fuzzers follow them.
LINKS = [
    ("/run-task", "post", "200", "task_uuid", "task_uuid", ["getTaskOutput"]),
    ("/api/v1/tasks", "post", "202", "id", "task_id",
     ["getTask", "cancelTask", "retryTask", "getTaskStatus", "getTaskResult"]),
    ("/api/v1/tasks/{task_id}/retry", "post", "201", "id", "task_id", ["getTask", "cancelTask"]),
    ("/api/v1/schedules", "post", "201", "id", "schedule_id",
     ["getSchedule", "updateSchedule", "deleteSchedule"]),
]  # fmt: skip


def add_links(api: TaskerApi) -> None:
    """Write LINKS into the generated document (call once every blueprint is registered)."""
    paths = api.spec._paths  # apispec keeps the operations here until the document is rendered
    for path, method, status, field, parameter, operation_ids in LINKS:
        response = paths[path][method]["responses"][status]
        response["links"] = {
            operation_id[0].upper() + operation_id[1:]: {
                "operationId": operation_id,
                "parameters": {parameter: f"$response.body#/{field}"},
            }
            for operation_id in operation_ids
        }


def _swagger_assets() -> Blueprint:
    bp = Blueprint("swagger_ui_assets", __name__)

    @bp.get("/docs/static/<path:filename>")
    def swagger_ui_asset(filename: str) -> Any:
        return send_from_directory(SWAGGER_UI_DIST, filename, max_age=86400)

    @bp.get("/favicon.ico")
    def favicon() -> Any:
        return send_from_directory(SWAGGER_UI_DIST, "favicon-32x32.png", max_age=86400)

    return bp
