"""The dashboard: server-rendered pages (Jinja) with one small script of its own, no build step.

Each page is rendered here with what it needs to start (its title, the CSRF token, the task id);
the script then reads and changes everything through the public API (/api/v1), with the
caller's rights, and follows changes live over the API's event streams. Nothing is loaded from
outside Tasker (no CDN), and the Content-Security-Policy allows scripts and styles from these
static files only.

In keys mode a person signs in once with an API key: the session cookie (signed, HttpOnly,
SameSite=Strict) keeps the key's digest, never the key, and the API accepts it with the page's
CSRF token on every state-changing call.
"""

from __future__ import annotations

import re
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from app.api.errors import error_response
from app.api.security import OPEN
from app.core.keys import KeyManager
from app.models.task import TaskStatus
from app.models.workflow import WorkflowStatus

PAGES = {
    "tasks": "Tasks",
    "workflows": "Workflows",
    "submit": "Submit",
    "schedules": "Schedules",
    "queues": "Queues and workers",
}


# Where a sign-in may send the browser: a page of this dashboard, as the sign-in redirect names it
# (request.path). Nothing else: `/\\evil`, a tab or newline, `//host` or a scheme would let a link to
# the sign-in page send the person off-site once they typed their key.
SAFE_NEXT = re.compile(r"/(dashboard/[A-Za-z0-9/_.-]*)?")


def safe_next(value: Any) -> str:
    """`value` if it is a path of this dashboard, else "/"."""
    if isinstance(value, str) and SAFE_NEXT.fullmatch(value) and "//" not in value and ".." not in value:
        return value
    return "/"


def create_dashboard(keys: KeyManager, open_mode: bool, no_priorities: str | None = None) -> Blueprint:
    """The dashboard's pages; `no_priorities` names a broker that ignores priorities (the submit
    form says so)."""
    bp = Blueprint(
        "dashboard",
        __name__,
        template_folder="templates",
        static_folder="static",
        static_url_path="/dashboard/static",
    )

    def page(template: str, name: str, **context: Any) -> Any:
        if not open_mode and g.get("principal") is None:
            return redirect(url_for("dashboard.login", next=request.path))
        caller = g.principal or OPEN
        return render_template(
            template,
            page=name,
            pages=PAGES,
            title=context.pop("title", PAGES.get(name, "Task")),
            csrf=session.get("csrf", "") if not open_mode else "",
            signed_in=not open_mode,
            owner=caller.owner,
            admin=caller.admin,
            statuses=[status.value for status in TaskStatus],
            **context,
        )

    @bp.get("/")
    def tasks() -> Any:
        return page("tasks.html", "tasks")

    @bp.get("/dashboard/tasks/<uuid:task_id>")
    def task(task_id: Any) -> Any:
        return page("task.html", "task", task_id=str(task_id), title="Task")

    @bp.get("/dashboard/workflows")
    def workflows() -> Any:
        return page(
            "workflows.html", "workflows", workflow_statuses=[status.value for status in WorkflowStatus]
        )

    @bp.get("/dashboard/workflows/<uuid:workflow_id>")
    def workflow(workflow_id: Any) -> Any:
        return page("workflow.html", "workflow", workflow_id=str(workflow_id), title="Workflow")

    @bp.get("/dashboard/submit")
    def submit() -> Any:
        return page("submit.html", "submit", no_priorities=no_priorities)

    @bp.get("/dashboard/schedules")
    def schedules() -> Any:
        return page("schedules.html", "schedules")

    @bp.get("/dashboard/queues")
    def queues() -> Any:
        return page("queues.html", "queues")

    _add_sign_in(bp, keys, open_mode)
    return bp


def _add_sign_in(bp: Blueprint, keys: KeyManager, open_mode: bool) -> None:
    """Keys mode: the sign-in page, and the session it makes (the key's digest and a CSRF token)."""

    @bp.get("/dashboard/login")
    def login() -> Any:
        if open_mode:
            return redirect(url_for("dashboard.tasks"))
        csrf = session.get("csrf", "")
        return render_template("login.html", page="login", pages={}, title="Sign in", csrf=csrf)

    @bp.post("/dashboard/login")
    def sign_in() -> Response:
        body = request.get_json(silent=True)
        key = body.get("key") if isinstance(body, dict) else None
        if not isinstance(key, str) or not key.strip():
            return error_response(400, "Give your API key.", "validation_error", {"key": ["Missing data."]})
        found = keys.authenticate(key.strip())
        if found is None:
            message = "That API key is not valid (unknown, revoked or mistyped)."
            return error_response(401, message, "unauthorized", {"key": ["Not a valid API key."]})
        keys.start_session(session, key.strip())
        return jsonify({"owner": found.owner, "admin": found.admin, "next": safe_next(body.get("next"))})

    @bp.post("/dashboard/logout")
    def sign_out() -> Response:
        """Ends the session on the server too: a copy of the cookie is refused from now on."""
        keys.end_session(session, current_app.permanent_session_lifetime)
        return Response(status=204)
