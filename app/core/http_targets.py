"""Who `http_request` tasks may call: hosts HTTP_TASK_ALLOWED_HOSTS names (whole, or by a
`*.example.com` pattern), through the webhooks' address policy (app/core/webhooks/policy.py):
https only unless HTTP_TASK_ALLOW_HTTP, no credentials in the URL, and no loopback, private,
link-local or metadata address unless the host is named whole. Checked at submit, and again by
the worker before it calls and at connect (a name that rebinds to an internal address is refused).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import requests

from app.core.errors import InvalidInput
from app.core.webhooks.policy import WebhookPolicy, guarded_session

SETTING = "HTTP_TASK_ALLOWED_HOSTS"


class HttpTargets:
    def __init__(
        self,
        entries: list[str],
        allow_http: bool = False,
        signing_available: Callable[[], bool] = lambda: True,
        **policy: Any,  # WebhookPolicy's own (a test's resolver)
    ):
        self.entries = frozenset(entries)
        whole = frozenset(entry for entry in self.entries if not entry.startswith("*."))
        self.policy = WebhookPolicy(allow_http, whole, self.entries, SETTING, **policy)
        self.signing_available = signing_available
        self._sessions = threading.local()

    @classmethod
    def from_config(cls, config: Mapping[str, Any], signing_available: Callable[[], bool]) -> HttpTargets:
        return cls(config["HTTP_TASK_ALLOWED_HOSTS"], config["HTTP_TASK_ALLOW_HTTP"], signing_available)

    def refusal(self, url: str) -> str | None:
        """Why `url` may not be called now (the type off, no signing secret, the address), or None."""
        if not self.entries:
            return f"http_request is off in this deployment; {SETTING} names the hosts it may call."
        if not self.signing_available():
            return "http_request calls are signed, and no signing secret is set: set WEBHOOK_SECRET."
        return self.policy.why_refused(url)

    def check(self, parameters: Mapping[str, Any], field: str = "parameters") -> None:
        """InvalidInput naming `field`.url and the rule unless `parameters["url"]` may be called."""
        reason = self.refusal(str(parameters.get("url", "")))
        if reason is not None:
            raise InvalidInput(f"{field}.url is not allowed: {reason}", {field: {"url": [reason]}})

    @property
    def session(self) -> requests.Session:
        """This thread's session, whose connections check the address they reach."""
        session = getattr(self._sessions, "session", None)
        if session is None:
            session = self._sessions.session = guarded_session(self.policy.allowed_hosts)
            session.headers["User-Agent"] = "Tasker-HTTP-Task/1"
        return session
