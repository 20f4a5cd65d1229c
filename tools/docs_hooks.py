"""mkdocs hooks (mkdocs.yml): the API reference page gets every operation and schema of the
app's own `/openapi.json`, read at build time from an app made with the defaults, so the page
cannot differ from what the service serves."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("get", "post", "put", "patch", "delete")
REFERENCE_PAGE = "api.md"


def openapi() -> dict[str, Any]:
    """The document a fresh embedded Tasker serves (open mode, its own data folder)."""
    with tempfile.TemporaryDirectory() as folder:
        os.environ.update({"APP_ENV": "development", "TASKER_DATA_DIR": folder})
        sys.path.insert(0, str(ROOT))
        from app import create_app

        return create_app().test_client().get("/openapi.json").get_json()


def type_of(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return f"[{name}](#schema-{name.lower()})"
    if "oneOf" in schema:
        return " or ".join(type_of(option) for option in schema["oneOf"])
    if schema.get("type") == "array":
        return f"array of {type_of(schema.get('items', {}))}"
    if "enum" in schema:
        return " \\| ".join(f"`{json.dumps(value)}`" for value in schema["enum"])
    kind = schema.get("type", "any")
    return f"{kind} ({schema['format']})" if "format" in schema else kind


def cell(text: Any) -> str:
    return " ".join(str(text or "").split()).replace("|", "\\|")


def parameters(operation: dict[str, Any]) -> list[str]:
    rows = operation.get("parameters", [])
    if not rows:
        return []
    lines = ["| parameter | in | type | required | description |", "|---|---|---|---|---|"]
    for row in rows:
        kind = type_of(row.get("schema", {}))
        required = "yes" if row.get("required") else ""
        lines.append(
            f"| `{row['name']}` | {row['in']} | {kind} | {required} | {cell(row.get('description'))} |"
        )
    return [*lines, ""]


def body(operation: dict[str, Any]) -> list[str]:
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return []
    schema = content["application/json"]["schema"]
    if "oneOf" in schema and all("title" in option for option in schema["oneOf"]):
        titles = ", ".join(f"`{option['title']}`" for option in schema["oneOf"])
        shapes = f"Body (JSON): one shape per task type ({titles}); each type's parameters are in its"
        return [shapes, "JSON Schema at `GET /api/v1/task-types`.", ""]
    return [f"Body (JSON): {type_of(schema)}", ""]


def responses(operation: dict[str, Any]) -> list[str]:
    lines = ["| status | description | body |", "|---|---|---|"]
    for status, response in operation.get("responses", {}).items():
        if "$ref" in response:
            lines.append(f"| {status} | error | [Error](#schema-error) |")
            continue
        schema = response.get("content", {}).get("application/json", {}).get("schema")
        shown = type_of(schema) if schema else ""
        lines.append(f"| {status} | {cell(response.get('description'))} | {shown} |")
    return [*lines, ""]


def operations(document: dict[str, Any]) -> list[str]:
    lines = ["## Operations", ""]
    for path, item in document["paths"].items():
        for method in METHODS:
            if method not in item:
                continue
            operation = item[method]
            lines += [f"### `{method.upper()} {path}`", "", f"{cell(operation.get('summary'))}"]
            lines += [f"(`{operation['operationId']}`)", ""] if "operationId" in operation else [""]
            if operation.get("description"):
                lines += [operation["description"].strip(), ""]
            lines += parameters(operation) + body(operation) + responses(operation)
    return lines


def schemas(document: dict[str, Any]) -> list[str]:
    lines = ["## Schemas", ""]
    for name, schema in document["components"]["schemas"].items():
        lines += [f"### {name} {{#schema-{name.lower()}}}", ""]
        required = set(schema.get("required", []))
        properties = schema.get("properties", {})
        if not properties:
            lines += [f"{type_of(schema)}", ""]
            continue
        lines += ["| field | type | required | description |", "|---|---|---|---|"]
        for field, shape in properties.items():
            mark = "yes" if field in required else ""
            lines.append(f"| `{field}` | {type_of(shape)} | {mark} | {cell(shape.get('description'))} |")
        lines.append("")
    return lines


def reference() -> str:
    document = openapi()
    intro = [
        "## From `/openapi.json`",
        "",
        f"Written at build time from the OpenAPI {document['openapi']} document Tasker serves; Swagger UI",
        "at `/docs` shows the same, with Try it out.",
        "",
    ]
    return "\n".join(intro + operations(document) + schemas(document)) + "\n"


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if page.file.src_uri != REFERENCE_PAGE:
        return markdown
    return markdown + "\n" + reference()
