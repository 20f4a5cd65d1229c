"""Stored workflow definitions (`PUT /api/v1/workflow-templates/<name>`), each with a JSON Schema
for the input it is started with: `POST /api/v1/workflows {"template": name, "input": {...}}`, or
a schedule's fire time. A template is checked whole when it is stored, as far as it can be
without its input; the input is checked against its schema when it is started, and the whole
definition again then."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema
from jsonschema.exceptions import SchemaError, best_match

from app.core.database_manager import DatabaseManager
from app.core.errors import InvalidInput, NotFound
from app.core.ports import Registry
from app.core.resources import utc_iso
from app.core.workflows.definition import Limits, parse
from app.models import workflow_template as template_model


class TemplateNotFound(NotFound):
    """No template of that name (of the caller's)."""


class Templates:
    def __init__(self, db: DatabaseManager, registry: Registry, limits: Limits):
        self.db = db
        self.registry = registry
        self.limits = limits

    def put(self, owner: str, name: str, body: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Store (or replace) a template: its resource, and whether it is new."""
        schema = body.get("input_schema")
        if schema is not None:
            try:
                jsonschema.validators.validator_for(schema).check_schema(schema)
            except SchemaError as exc:
                message = f"Not a valid JSON Schema: {exc.message}"
                raise InvalidInput(f"input_schema: {message}", {"input_schema": [message]}) from None
        definition = {
            "name": name,
            "steps": body["steps"],
            "on_failure": body.get("on_failure") or "fail_fast",
        }
        parse(definition, self.registry, self.limits, input_known=False)
        values = {
            "description": body.get("description"), "input_schema": schema, "steps": list(body["steps"]),
            "on_failure": definition["on_failure"],
        }  # fmt: skip
        created = self.db.run(lambda conn: template_model.put(conn, owner, name, values))
        return self.get(owner, name), created

    def get(self, owner: str, name: str) -> dict[str, Any]:
        return template_resource(self._row(owner, name))

    def list(self, owner: str, limit: int, cursor: str | None) -> dict[str, Any]:
        rows = self.db.run(lambda conn: template_model.list_page(conn, owner, limit + 1, cursor))
        page = rows[:limit]
        return {
            "templates": [template_resource(row) for row in page],
            "next_cursor": page[-1].name if len(rows) > limit else None,
        }

    def delete(self, owner: str, name: str) -> None:
        if not self.db.run(lambda conn: template_model.delete(conn, owner, name)):
            raise _not_found(name)

    def workflow(self, owner: str, name: str, input_: Any, field: str = "input") -> dict[str, Any]:
        """The body of a workflow started from template `name` with `input_`, the input checked
        against the template's schema (InvalidInput naming `input.<path>` and the rule)."""
        row = self.db.run(lambda conn: template_model.get(conn, owner, name))
        if row is None:  # a field of the request that names nothing: a 400, as an unknown task type is
            message = f"No workflow template {name!r}."
            raise InvalidInput(f"template: {message}", {"template": [message]})
        if row.input_schema is not None:
            validator = jsonschema.validators.validator_for(row.input_schema)(row.input_schema)
            error = best_match(validator.iter_errors(input_))
            if error is not None:
                where = ".".join([field, *(str(part) for part in error.absolute_path)])
                raise InvalidInput(f"{where}: {error.message}", {where: [error.message]})
        return {"name": name, "input": input_, "steps": row.steps, "on_failure": row.on_failure}

    def _row(self, owner: str, name: str) -> Any:
        row = self.db.run(lambda conn: template_model.get(conn, owner, name))
        if row is None:
            raise _not_found(name)
        return row


def _not_found(name: str) -> TemplateNotFound:
    return TemplateNotFound(f"No workflow template {name!r}.", {"name": ["Not found."]})


def template_resource(row: Any) -> dict[str, Any]:
    return {
        "name": row.name, "description": row.description, "input_schema": row.input_schema,
        "steps": row.steps, "on_failure": row.on_failure, "created_at": utc_iso(row.created_at),
        "updated_at": utc_iso(row.updated_at),
    }  # fmt: skip
