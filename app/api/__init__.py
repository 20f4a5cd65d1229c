"""The HTTP API: every blueprint, the OpenAPI document, security and the error handlers, on one app."""

from __future__ import annotations

import ipaddress
from typing import Any

from flask import Flask, g
from werkzeug.middleware.proxy_fix import ProxyFix

from app.api.catalog import create_catalog_routes
from app.api.docs import add_links, init_docs
from app.api.errors import register_error_handlers
from app.api.events import StreamLimits, StreamSlots, create_event_routes
from app.api.health import create_health_routes
from app.api.keys import create_key_routes
from app.api.limits import create_limit_routes
from app.api.observe import register_observability
from app.api.routes import create_routes
from app.api.schedules import create_schedule_routes
from app.api.security import apply_limits, register_security
from app.api.v1 import create_short_routes, create_v1_routes
from app.api.waits import WaitSlots
from app.api.webhooks import create_webhook_routes
from app.api.workflows import create_workflow_routes


class TrustedProxies:
    """werkzeug's ProxyFix for requests from TRUSTED_PROXIES only: a client that reaches gunicorn
    directly cannot pick its own address (and with it another's rate limit) by sending
    X-Forwarded-For."""

    def __init__(self, app: Any, hops: int, trusted: list[Any]):
        self.app = app
        self.fixed = ProxyFix(app, x_for=hops, x_proto=1)
        self.trusted = trusted

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        try:
            peer = ipaddress.ip_address(environ.get("REMOTE_ADDR", "").split("%", 1)[0])
        except ValueError:
            return self.app(environ, start_response)
        if any(peer in network for network in self.trusted):
            return self.fixed(environ, start_response)
        return self.app(environ, start_response)


def register_api(app: Flask, tasker: Any) -> None:
    """Register the routes over `tasker`'s managers (app.extensions["tasker"])."""
    if app.config["PROXY_HOPS"]:
        app.wsgi_app = TrustedProxies(  # type: ignore[method-assign]
            app.wsgi_app, app.config["PROXY_HOPS"], app.config["TRUSTED_PROXIES"]
        )
    api = init_docs(app)
    register_observability(app, tasker.snapshot)
    limiter = register_security(app, tasker.keys)
    open_mode = app.config["AUTH_MODE"] == "open"
    waits = WaitSlots(app.config["WAIT_MAX_CONCURRENT"])  # ?wait= of tasks and workflows alike
    limited = [
        create_routes(tasker.tasks),
        create_v1_routes(tasker.tasks, waits, tasker.served),
        create_limit_routes(tasker.tasks, tasker.rate_limits),
        create_catalog_routes(
            tasker.tasks.registry, tasker.monitor, tasker.served, tasker.pauses, tasker.tasks.policy
        ),
        create_short_routes(tasker.tasks),
        create_schedule_routes(tasker.schedules),
        create_workflow_routes(tasker.workflows, waits),
        create_key_routes(tasker.keys, tasker.deliveries.secrets.current),
        create_webhook_routes(tasker.deliveries),
        create_event_routes(
            tasker.tasks,
            tasker.streams,
            StreamSlots(
                app.config["STREAM_MAX_CONCURRENT"],
                None if open_mode else app.config["STREAM_MAX_PER_OWNER"],
            ),
            StreamLimits(
                app.config["STREAM_HEARTBEAT_SECONDS"],
                app.config["STREAM_BACKLOG_KB"] * 1024,
                app.config["STREAM_SEND_TIMEOUT_SECONDS"],
            ),
            tasker.workflows,
        ),
    ]
    apply_limits(limiter, app.config, limited)
    health = create_health_routes(
        tasker.monitor,
        lambda: open_mode or g.get("principal") is not None,
        tasker.redactor.deep,
        {job.name: job.interval for job in tasker.housekeeping.jobs},
    )
    for blueprint in (health, *limited):
        api.register_blueprint(blueprint)
    add_links(api)
    register_error_handlers(app, tasker.redactor)
    app.extensions["limiter"] = limiter
