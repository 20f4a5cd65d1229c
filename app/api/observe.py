"""Each request's id, duration histogram and access line; and GET /metrics.

- Request id: the client's `X-Request-ID` when it is sane (1 to 128 characters of letters, digits
  and `._:+=/-`), else a new one; echoed in the response, bound to every log line of the request,
  and carried in the headers of the task message it publishes, into the worker's lines.
- `tasker_http_request_duration_seconds{method,endpoint,status}`: endpoint is the route template
  (`/api/v1/tasks/<id:task_id>`), `<unmatched>` for a path no route has; an unknown method is `other`.
- One access line per request (logger `tasker.access`, at INFO, so LOG_LEVEL=INFO shows it: the
  production default): method, route template, status and duration, in the deployment's log
  format; ACCESS_LOG=false turns it off.
- /metrics: Prometheus text format, open like /health in open mode; with API keys and no
  METRICS_TOKEN, to loopback and private addresses only, never through a proxy; with METRICS_TOKEN,
  only to `Authorization: Bearer <METRICS_TOKEN>`.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import time
import uuid
from typing import Any

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Forbidden, Unauthorized

from app.core import logs, metrics

access_logger = logging.getLogger("tasker.access")
REQUEST_ID = re.compile(r"[A-Za-z0-9._:+=/-]{1,128}")
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


def register_observability(app: Flask, snapshot: metrics.Snapshot) -> None:
    config = app.config
    record_metrics = config["METRICS_ENABLED"]
    access_log = config["ACCESS_LOG"]

    def start() -> None:
        g.started = time.perf_counter()
        sent = request.headers.get("X-Request-ID", "")
        g.request_id = sent if REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex
        g.log_token = logs.bind(request_id=g.request_id)

    def finish(response: Response) -> Response:
        req = request._get_current_object()  # type: ignore[attr-defined]
        response.headers["X-Request-ID"] = g.get("request_id", "")
        seconds = time.perf_counter() - g.get("started", time.perf_counter())
        endpoint = req.url_rule.rule if req.url_rule is not None else "<unmatched>"
        method = req.method if req.method in METHODS else "other"
        status = response.status_code
        if record_metrics:
            metrics.HTTP_SECONDS_HISTOGRAM.labels(method, endpoint, str(status)).observe(seconds)
        if access_log:
            duration_ms = round(seconds * 1000, 2)
            access_logger.info(
                "%s %s %s %.2f ms",
                method,
                endpoint,
                status,
                duration_ms,
                extra={"method": method, "endpoint": endpoint, "status": status, "duration_ms": duration_ms},
            )
        return response

    def unbind(exc: BaseException | None) -> None:
        token = g.pop("log_token", None)
        if token is not None:
            logs.unbind(token)

    # First of every hook: the id is bound before authentication can refuse the request.
    app.before_request_funcs.setdefault(None, []).insert(0, start)
    app.after_request(finish)
    app.teardown_request(unbind)
    if record_metrics:
        keys_mode = config["AUTH_MODE"] == "keys"
        app.register_blueprint(metrics_blueprint(snapshot, config["METRICS_TOKEN"], keys_mode))


def metrics_blueprint(snapshot: metrics.Snapshot, token: str | None, keys_mode: bool = False) -> Blueprint:
    bp = Blueprint("metrics", __name__)

    @bp.get("/metrics")
    def scrape() -> Any:
        if token is None and keys_mode and not _from_inside():
            raise Forbidden(
                "/metrics with API keys and no METRICS_TOKEN answers Prometheus on a private network "
                "only, never through the proxy; set METRICS_TOKEN to scrape from elsewhere."
            )
        if token is not None:
            scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(sent.strip().encode(), token.encode()):
                raise Unauthorized(
                    "/metrics needs `Authorization: Bearer <METRICS_TOKEN>`.",
                    www_authenticate=WWWAuthenticate("Bearer", {"realm": "tasker-metrics"}),
                )
        return Response(metrics.render(snapshot), content_type=CONTENT_TYPE_LATEST)

    return bp


def _from_inside() -> bool:
    """A request straight from a loopback or private address, not forwarded by a proxy."""
    if request.headers.get("X-Forwarded-For") or request.headers.get("Forwarded"):
        return False
    try:
        peer = ipaddress.ip_address((request.remote_addr or "").split("%", 1)[0])
    except ValueError:
        return False
    return peer.is_loopback or peer.is_private
