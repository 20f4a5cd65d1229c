"""The HTTP API: every blueprint, the OpenAPI document and the error handlers, on one Flask app."""

from __future__ import annotations

from typing import Any

from flask import Flask

from app.api.catalog import create_catalog_routes
from app.api.docs import add_links, init_docs
from app.api.errors import register_error_handlers
from app.api.health import create_health_routes
from app.api.routes import create_routes
from app.api.schedules import create_schedule_routes
from app.api.v1 import create_short_routes, create_v1_routes


def register_api(app: Flask, tasker: Any) -> None:
    """Register the routes over `tasker`'s managers (app.extensions["tasker"])."""
    api = init_docs(app)
    for blueprint in (
        create_routes(tasker.tasks),
        create_health_routes(tasker.monitor),
        create_v1_routes(tasker.tasks),
        create_catalog_routes(tasker.tasks.registry, tasker.monitor),
        create_short_routes(tasker.tasks),
        create_schedule_routes(tasker.schedules),
    ):
        api.register_blueprint(blueprint)
    add_links(api)
    register_error_handlers(app)
