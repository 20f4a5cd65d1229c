"""Who may call, how often, from which page, and the headers every answer carries.

- Keys: in `keys` mode every endpoint but /health*, the docs and the OpenAPI document needs an
  API key (`Authorization: Bearer <key>` or `X-API-Key`). In `open` mode callers without a key act
  as the owner "default". Key management always needs an admin key.
- Limits: Flask-Limiter, per key (per client address without one), in Redis when Redis is
  configured (shared by every API process and host), in memory otherwise; while Redis is down
  each process limits in memory and says so in the log (never a 500).
- Browsers: Host must be a trusted name (DNS rebinding); state-changing requests from another
  origin are refused unless CORS_ORIGINS names it; CORS is off unless CORS_ORIGINS is set.
"""

from __future__ import annotations

import contextlib
import hmac
import math
import secrets
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Request, Response, current_app, g, request, session
from flask.sessions import SecureCookieSessionInterface
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import parse_many
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Forbidden, TooManyRequests, Unauthorized, UnsupportedMediaType

from app.core.keys import KeyManager, Principal
from app.models.task import DEFAULT_OWNER

# Blueprints whose endpoints answer without a key (health answers details only to a key;
# /metrics asks for METRICS_TOKEN if set; the dashboard's pages send to its sign-in page).
PUBLIC_BLUEPRINTS = ("health", "api-docs", "swagger_ui_assets", "metrics", "dashboard")
# The dashboard's pages run no inline script or style: everything comes from its static files.
DASHBOARD_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
OPEN = Principal(DEFAULT_OWNER)
STATE_CHANGING = ("POST", "PUT", "PATCH", "DELETE")
# What an HTML form can send without a preflight: a cross-site form post carries one of these.
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")
REQUEST_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-API-Key, Last-Event-ID"
EXPOSED_HEADERS = "Location, Retry-After, RateLimit, RateLimit-Policy, Tasker-Wait"
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
_COMMON_HEADERS = [("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer")]
_API_HEADERS = [*_COMMON_HEADERS, ("Content-Security-Policy", API_CSP)]
_DOCS_HEADERS = _COMMON_HEADERS
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


class DashboardSessions(SecureCookieSessionInterface):
    """Signed cookie sessions for the dashboard in keys mode, and nothing else: a request that
    carries no session cookie, outside the dashboard's pages, gets Flask's null session and pays
    for no signing."""

    def open_session(self, app: Flask, request: Request) -> Any:
        # Sessions open before the URL is matched: the dashboard is known by its paths here.
        dashboard = request.path == "/" or request.path.startswith("/dashboard/")
        if not dashboard and app.config["SESSION_COOKIE_NAME"] not in request.cookies:
            return None
        return super().open_session(app, request)


class CsrfFailed(Forbidden):
    description = "The dashboard's CSRF token is missing or wrong: reload the page."


class MissingKey(Unauthorized):
    description = "An API key is required: send it as `Authorization: Bearer <key>` or `X-API-Key`."


class InvalidKey(Unauthorized):
    description = "The API key is not valid (unknown, revoked or mistyped)."


class TooManyKeysRefused(TooManyRequests):
    description = (
        "Too many refused API keys from this address: keys are not checked for a while "
        "(RATE_LIMIT_INVALID_KEYS)."
    )


def principal() -> Principal:
    """The caller of this request (set before any route runs)."""
    return g.principal


def presented_key(req: Request) -> str | None:
    header = req.headers.get("Authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return (req.headers.get("X-API-Key") or "").strip() or None


def register_security(app: Flask, keys: KeyManager) -> Limiter:
    config = app.config
    # TRUSTED_HOSTS (from config/base.py) is Flask's own setting: Flask refuses other Host headers.
    app.session_interface = DashboardSessions()
    app.secret_key = keys.secret_key  # the dashboard's sessions are signed with the keys' secret
    limiter = Limiter(
        key_func=_rate_key,
        storage_uri=config["REDIS_URL"] or "memory://",
        storage_options={"socket_connect_timeout": 0.5, "socket_timeout": 0.5} if config["REDIS_URL"] else {},
        strategy="sliding-window-counter",  # O(1) per hit in Redis; bursts bounded by the window
        key_prefix="tasker-limits",
        headers_enabled=False,  # Tasker writes the IETF fields itself (see _rate_limit_headers)
        swallow_errors=True,
        in_memory_fallback_enabled=True,
        enabled=config["RATE_LIMIT_ENABLED"],
    )
    refused = parse_many(config["RATE_LIMIT_INVALID_KEYS"]) if config["RATE_LIMIT_ENABLED"] else []
    gate = Gate(keys, config["AUTH_MODE"], set(config["CORS_ORIGINS"]), limiter, refused)
    app.before_request(gate.authenticate)  # before the limiter's hook: it limits per key
    app.after_request(gate.headers)
    limiter.init_app(app)
    return limiter


class Gate:
    """The request hooks: who is calling (before), and the headers every answer carries (after)."""

    def __init__(
        self,
        keys: KeyManager,
        mode: str,
        allowed_origins: set[str],
        limiter: Limiter,
        refused_limit: list[Any] | None = None,
    ):
        self.keys = keys
        self.refused_limit = refused_limit or []  # RATE_LIMIT_INVALID_KEYS
        self.open = mode == "open"
        self.allowed_origins = allowed_origins
        self.limiter = limiter

    def authenticate(self) -> None:
        req = request._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup, not ten
        blueprint = req.blueprint
        g.principal = None
        if blueprint == "api-docs":
            g.csp_nonce = secrets.token_urlsafe(16)  # for the one inline script of /docs
        if req.method == "OPTIONS":
            return  # a CORS preflight carries no credentials
        if req.method in STATE_CHANGING:
            _refuse_cross_site(req, self.allowed_origins)
        key = presented_key(req)
        found = self.keys.authenticate(key, self._refuse_guessing) if key else self._from_session(req)
        if found is not None:
            g.principal = found
        elif req.endpoint is None or blueprint in PUBLIC_BLUEPRINTS:
            return
        elif key:
            self._count_refused()
            raise InvalidKey(www_authenticate=_bearer(error="invalid_token"))
        elif self.open and blueprint != "keys":
            g.principal = OPEN
        else:
            raise MissingKey(www_authenticate=_bearer())

    def _refuse_guessing(self) -> None:
        """429 instead of a lookup once this address had RATE_LIMIT_INVALID_KEYS refused keys (asked
        only when a key must be looked up: a key this process knows costs nothing here)."""
        address = get_remote_address()
        for limit in self.refused_limit:
            try:
                allowed = self.limiter.limiter.test(limit, "refused-keys", address)
            except Exception:  # noqa: BLE001 - the limiter's storage away: keys are still checked
                return
            if not allowed:
                raise TooManyKeysRefused(retry_after=limit.get_expiry())

    def _count_refused(self) -> None:
        address = get_remote_address()
        for limit in self.refused_limit:
            with contextlib.suppress(Exception):
                self.limiter.limiter.hit(limit, "refused-keys", address)

    def _from_session(self, req: Request) -> Principal | None:
        """The dashboard's caller: the key its session cookie stands for. A state-changing request
        made with the cookie must carry the page's CSRF token (X-CSRF-Token)."""
        digest = session.get("key") if session else None
        if not digest:
            return None
        lifetime = current_app.permanent_session_lifetime
        found = self.keys.authenticate_digest(digest) if self.keys.session_valid(session, lifetime) else None
        if found is None:  # the key revoked, the session signed out or past its lifetime
            session.clear()
            return None
        if req.method in STATE_CHANGING:
            token = req.headers.get("X-CSRF-Token", "")
            if not hmac.compare_digest(token.encode(), str(session.get("csrf", "")).encode()):
                raise CsrfFailed()
        return found

    def headers(self, response: Response) -> Response:
        req = request._get_current_object()  # type: ignore[attr-defined]
        h = response.headers
        if req.blueprint in ("api-docs", "swagger_ui_assets"):
            h.extend(_DOCS_HEADERS)
            h["Content-Security-Policy"] = DOCS_CSP.format(nonce=g.get("csp_nonce", ""))
        elif req.blueprint == "dashboard":
            h.extend(_COMMON_HEADERS)
            h["Content-Security-Policy"] = DASHBOARD_CSP
        else:
            h.extend(_API_HEADERS)  # new names: appended, no search for earlier values
        h.setdefault("Cache-Control", "no-store")
        if self.allowed_origins:
            _cors(req, response, self.allowed_origins)
        if self.limiter.enabled:
            _rate_limit_headers(response, self.limiter)
        return response


def apply_limits(limiter: Limiter, config: Any, blueprints: list[Any]) -> None:
    """One shared bucket for writes and one for reads, per key, across these blueprints."""
    write = _limit_for(config["RATE_LIMIT_SUBMIT"])
    read = _limit_for(config["RATE_LIMIT_READ"])
    write_limit = limiter.shared_limit(write, scope="write", methods=list(STATE_CHANGING))
    read_limit = limiter.shared_limit(read, scope="read", methods=["GET"])
    for blueprint in blueprints:
        write_limit(blueprint)
        read_limit(blueprint)


def _limit_for(default: str) -> Callable[[], str]:
    def limit() -> str:
        caller = g.get("principal")
        return caller.rate_limit if caller is not None and caller.rate_limit else default

    return limit


def _rate_key() -> str:
    caller = g.get("principal")
    if caller is not None and caller.key_id is not None:
        return f"key:{caller.key_id}"
    return f"address:{get_remote_address()}"


def _bearer(**params: str) -> WWWAuthenticate:
    return WWWAuthenticate("Bearer", {"realm": "tasker", **params})


def _refuse_cross_site(req: Request, allowed_origins: set[str]) -> None:
    """A state-changing request from a page of another origin (a form post, a fetch) is refused."""
    origin = req.headers.get("Origin")
    if origin and origin != req.host_url.rstrip("/") and origin not in allowed_origins:
        if "*" not in allowed_origins:
            raise Forbidden(f"Requests from the origin {origin[:100]!r} are not allowed (see CORS_ORIGINS).")
    if req.mimetype in FORM_TYPES:
        raise UnsupportedMediaType("Content-Type must be application/json (or no body at all).")


def _cors(req: Request, response: Response, allowed_origins: set[str]) -> None:
    origin = req.headers.get("Origin")
    if not origin:
        return
    if origin not in allowed_origins and "*" not in allowed_origins:
        return
    h = response.headers
    h["Access-Control-Allow-Origin"] = origin if origin in allowed_origins else "*"
    h.add("Vary", "Origin")
    h["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    if req.method == "OPTIONS":
        h["Access-Control-Allow-Methods"] = "GET, POST, PATCH, DELETE"
        h["Access-Control-Allow-Headers"] = REQUEST_HEADERS
        h["Access-Control-Max-Age"] = "600"
    # Never Access-Control-Allow-Credentials: keys travel in headers, not cookies.


def _rate_limit_headers(response: Response, limiter: Limiter) -> None:
    """The IETF httpapi RateLimit-Policy field on every limited answer; on a 429 also RateLimit
    (remaining, reset) and Retry-After. Remaining and reset cost a second round trip to the
    limiter's storage, so a request within its limit is not made to pay for them."""
    current = limiter.current_limit
    if current is None:
        return
    name = "read" if request.method == "GET" else "write"
    response.headers["RateLimit-Policy"] = f'"{name}";q={current.limit.amount};w={current.limit.get_expiry()}'
    if response.status_code != 429:
        return
    try:
        reset = max(1, math.ceil(current.reset_at - time.time()))
        remaining = current.remaining
    except Exception:  # noqa: BLE001 - the storage went away meanwhile: say a second
        reset, remaining = 1, 0
    response.headers["RateLimit"] = f'"{name}";r={remaining};t={reset}'
    response.headers["Retry-After"] = str(reset)
