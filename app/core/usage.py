"""What the operator lets clients spend upstream: which OpenAI models, how many tokens at most,
which hosts http_request may call (app/core/http_targets.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.core.errors import InvalidInput
from app.core.http_targets import HttpTargets


class UsagePolicy:
    """Checked at submit and when a schedule is made, after the parameters' own validation."""

    def __init__(self, allowed_models: Sequence[str], max_tokens: int, http: HttpTargets | None = None):
        self.allowed_models = list(allowed_models)
        self.max_tokens = max_tokens
        self.http = http if http is not None else HttpTargets([])  # none: http_request is off

    def check(self, task_name: str, parameters: dict[str, Any], field: str = "parameters") -> None:
        if task_name == "http_request":
            self.http.check(parameters, field)
        if task_name != "query_chatgpt":
            return
        model = parameters.get("model")
        if model is not None and model not in self.allowed_models:
            allowed = ", ".join(self.allowed_models)
            raise InvalidInput(
                f"{field}.model {str(model)[:100]!r} is not allowed here; allowed: {allowed}.",
                {field: {"model": [f"Must be one of: {allowed}."]}, "allowed_models": self.allowed_models},
            )
        max_tokens = parameters.get("max_tokens")
        if max_tokens is not None and max_tokens > self.max_tokens:
            raise InvalidInput(
                f"{field}.max_tokens {max_tokens} is above this deployment's ceiling of {self.max_tokens}.",
                {field: {"max_tokens": [f"Must be at most {self.max_tokens}."]}},
            )

    def document(self, task_name: str, schema: dict[str, Any]) -> dict[str, Any]:
        """The parameters' JSON Schema with this deployment's limits, for the OpenAPI document."""
        if task_name != "query_chatgpt":
            return schema
        properties = dict(schema.get("properties", {}))
        properties["model"] = {**properties.get("model", {}), "enum": self.allowed_models}
        properties["max_tokens"] = {**properties.get("max_tokens", {}), "maximum": self.max_tokens}
        return {**schema, "properties": properties}
