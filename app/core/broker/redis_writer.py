"""Publishing a task to a Redis broker with one LPUSH and none of the per-publish machinery.

`Celery.send_task` on a Redis broker ends in one LPUSH of a JSON message onto the list of
the task's queue and priority. On the way it routes, takes a producer from the pool, wraps
the publish in `ensure()`, builds the message through several layers and reprs the
arguments with `saferepr` (bench/README.md has what it cost per submit), for a message whose
shape is fixed by Celery's protocol 2 and kombu's Redis transport.

`RedisQueueWriter` writes that same message directly. `tests/integration/test_redis_publish.py`
publishes each task type both ways on a real Redis and compares the two messages field by field,
so an upgrade of Celery or kombu that changes the format fails there rather than in a
worker. Only the options Tasker uses are covered (keyword arguments, a queue, a priority,
time limits; no ETA, expiry, chain or callback). `unsupported()` lists every setting under
which send_task would write something else (a key prefix, another serializer, compression,
sent events, publish signals such as stamping); with any of them set the publisher keeps
send_task and says why at start-up. celery and kombu are pinned to 5.7.x in requirements.txt
for the same reason.
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Mapping
from typing import Any

import redis
from celery import Celery
from celery.signals import after_task_publish, before_task_publish
from celery.utils.nodenames import anon_nodename
from kombu.transport import redis as kombu_redis
from kombu.utils.json import dumps
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

ARGUMENTS_REPR_MAX = 1024  # Celery's kwargsrepr_maxsize
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


class RedisQueueWriter:
    """Task messages for kombu's Redis transport, pushed with a pooled client (fork-safe)."""

    def __init__(self, broker_url: str, transport_options: Mapping[str, Any], reply_to: str):
        # The list names are kombu's: its separator and priority steps unless the options set them.
        self.sep = transport_options.get("sep", kombu_redis.Channel.sep)
        self.steps = sorted(transport_options.get("priority_steps", kombu_redis.Channel.priority_steps))
        self.reply_to = reply_to
        self.client = redis.Redis.from_url(
            broker_url,
            socket_connect_timeout=transport_options.get("socket_connect_timeout"),
            socket_timeout=transport_options.get("socket_timeout"),
            # A dropped pooled connection (Redis restarted) is replaced at once and a Redis
            # that stays down fails the submit within about half a second. A timeout is not
            # retried: an unresponsive Redis would hold the request for each attempt.
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.2), 2, supported_errors=(redis.ConnectionError,)),
        )
        self._origin = (0, "")

    def key(self, queue: str, priority: int) -> str:
        """The Redis list holding `queue`'s messages of this kombu priority (0 is served first)."""
        step = max((s for s in self.steps if s <= priority), default=self.steps[0])
        return f"{queue}{self.sep}{step}" if step else queue

    def push(self, *args: Any, **kwargs: Any) -> None:
        """LPUSH message(*args, **kwargs): what kombu's Redis transport stores for the same
        send_task. Raises redis.RedisError when Redis cannot be reached."""
        self.client.lpush(*self.message(*args, **kwargs))

    def push_many(self, messages: list[tuple[str, str]]) -> None:
        """LPUSH several (key, message) pairs from message() in one round trip, all or none: one
        LPUSH of all of a list's messages (in their order), and MULTI/EXEC when they go to more
        than one list. Raises redis.RedisError when Redis cannot be reached."""
        by_key: dict[str, list[str]] = {}
        for key, message in messages:
            by_key.setdefault(key, []).append(message)
        if len(by_key) == 1:
            self.client.lpush(key, *by_key[key])
            return
        pipe = self.client.pipeline(transaction=True)
        for key, values in by_key.items():
            pipe.lpush(key, *values)
        pipe.execute()

    def message(
        self,
        name: str,
        task_id: str,
        kwargs: dict[str, Any],
        queue: str,
        priority: int,
        time_limit: int | None = None,
        soft_time_limit: int | None = None,
        headers: dict[str, Any] | None = None,
    ) -> tuple[str, str]:
        """The list to LPUSH onto, and what kombu's Redis transport stores for
        `send_task(name, kwargs=kwargs, ...)`; `headers` are added to Celery's, as send_task's
        `headers=` adds them."""
        body = dumps([[], kwargs, _EMBED]).encode()
        message = {
            "body": base64.b64encode(body).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": self._headers(name, task_id, kwargs, time_limit, soft_time_limit) | (headers or {}),
            "properties": {
                "correlation_id": task_id,
                "reply_to": self.reply_to,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": priority,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
        return self.key(queue, priority), dumps(message)

    def _headers(
        self,
        name: str,
        task_id: str,
        kwargs: dict[str, Any],
        time_limit: int | None,
        soft_time_limit: int | None,
    ) -> dict[str, Any]:
        """Celery's protocol 2 headers for a first delivery with keyword arguments only."""
        kwargs_repr = repr(kwargs)
        if len(kwargs_repr) > ARGUMENTS_REPR_MAX:
            kwargs_repr = kwargs_repr[: ARGUMENTS_REPR_MAX - 3] + "..."
        return {
            "lang": "py",
            "task": name,
            "id": task_id,
            "shadow": None,
            "eta": None,
            "expires": None,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [time_limit, soft_time_limit],
            "root_id": task_id,
            "parent_id": None,
            "argsrepr": "()",
            "kwargsrepr": kwargs_repr,
            "origin": self.origin(),
            "ignore_result": None,
            "replaced_task_nesting": 0,
            "stamped_headers": None,
            "stamps": {},
        }

    def origin(self) -> str:
        """Celery's `gen<pid>@<host>` for the current process (it changes after a fork)."""
        pid = os.getpid()
        if self._origin[0] != pid:
            self._origin = (pid, anon_nodename())
        return self._origin[1]


def unsupported(celery: Celery) -> list[str]:
    """What send_task would honour that RedisQueueWriter does not; empty when the writer may be used."""
    conf = celery.conf
    found = []
    if not str(conf.broker_url).startswith("redis://"):
        found.append("a broker URL other than redis:// (kombu applies rediss:// TLS options itself)")
    if (conf.broker_transport_options or {}).get("global_keyprefix"):
        found.append("broker_transport_options['global_keyprefix']")
    for name, plain in (("task_serializer", "json"), ("task_protocol", 2), ("task_compression", None)):
        if conf[name] != plain:
            found.append(f"{name}={conf[name]!r}")
    if conf.task_send_sent_event:
        found.append("task_send_sent_event (a task-sent event per publish)")
    if conf.task_routes:
        found.append("task_routes")
    if before_task_publish.receivers or after_task_publish.receivers:
        found.append("receivers of before_task_publish or after_task_publish (stamping, tracing)")
    return found
