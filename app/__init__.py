"""The app factory: builds the managers, the Celery app and the routes from one config.

Only `create_app` lives here (the Flask tutorial's shape) and it imports what it wires when it
runs, so importing one module of the package (`app.core.logs`, say) does not import them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from config import load_config


def create_app(config_name: str | None = None, config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app with `config` (tests and benchmarks pass one made by load_config), or the
    settings of `config_name` (default: $APP_ENV, else development) read from the environment."""
    from app.api import register_api
    from app.cli import register_commands
    from app.core import redact
    from app.core.broker import broker_class
    from app.core.logs import configure_logging
    from app.tasks.base import MAX_RETRY_DELAY_SECONDS
    from app.web import create_dashboard
    from app.wiring import build_tasker, registry_of

    app = Flask(__name__)
    # `/api/v1/tasks/` answers as `/api/v1/tasks` does (no redirect: it would lose a POST's body).
    app.url_map.strict_slashes = False
    app.config.update(config if config is not None else load_config(config_name))
    app.json.sort_keys = False
    configure_logging(app.config["LOG_LEVEL"], app.config["LOG_FILE"], app.config["LOG_FORMAT"])
    redact.install(redact.Redactor.from_config(app.config))
    broker_class(app.config).check(app.config, registry_of(app.config), MAX_RETRY_DELAY_SECONDS)

    tasker, celery = build_tasker(app.config)
    app.extensions["tasker"] = tasker
    app.extensions["celery"] = celery
    register_api(app, tasker)
    broker = tasker.tasks.broker
    no_priorities = None if broker.has_priorities() else broker.kind
    app.register_blueprint(create_dashboard(tasker.keys, app.config["AUTH_MODE"] == "open", no_priorities))
    register_commands(app, tasker.keys, tasker.deliveries.secrets.current)
    return app
