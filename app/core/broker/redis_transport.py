"""kombu 5.7.0's Redis transport, with a worker that survives a Redis restart, and cheaper publishing.

Selected for Tasker's Celery app only, through Celery's `broker_transport` setting
(app/core/broker/redis_broker.py); kombu's own `redis://` transport is left as it is for the rest of
the process. The two changes are apart: `SurvivingChannel` is the bug fix, `Channel` adds the
client caching on top of it. tests/integration/test_redis_transport.py reproduces both crashes on
stock kombu (the canary: it fails once kombu fixes them, and this module can go).

The bug (kombu 5.7.0; reported upstream in the same shape as celery/celery#10205, worker stops
after a Redis connection reset, and celery/kombu#970, restore_unacked failing on close):

When the broker connection drops while a worker holds an unacknowledged message, Celery
closes the dead connection twice: `Connection.collect()` first (which detaches the
transport from its connection when a step of the channel's close fails), then
`Connection.close()`. The second close tries to put the unacknowledged messages back and
builds a new Redis client from the detached transport's settings, which are gone:
AttributeError, which Celery does not expect there, and the worker process exits with
"Unrecoverable error" instead of reconnecting.

The same detached channel also receives the acknowledgements of tasks that finish after the
loss, and fails them the same way. Here every Redis command on a detached channel fails as a
connection error, which Celery logs and survives, and the QoS skips the restore on close
with a warning instead of trying it. Nothing is lost: the messages
stay in Redis's unacked index, which kombu restores after the visibility timeout, and the
recovery sweep republishes their PENDING rows, and requeues their STARTED rows, well
before that. If Redis lost its data in the restart there is nothing to restore anyway.
"""

from __future__ import annotations

import logging
from typing import Any

import redis as redis_py
from kombu.transport import redis

logger = logging.getLogger(__name__)


class QoS(redis.QoS):
    def restore_unacked(self, client: Any = None) -> Any:
        if client is None and getattr(self.channel.connection, "client", None) is None:
            logger.warning(
                "broker connection lost: %d unacknowledged message(s) left for the recovery sweep",
                len(self._delivered),
            )
            self._delivered.clear()
            return None
        return super().restore_unacked(client)


class SurvivingChannel(redis.Channel):
    """The bug fix: a detached channel fails as a connection error, and its QoS restores nothing."""

    QoS = QoS

    def _create_client(self, asynchronous: bool = False) -> Any:
        self._check_attached()
        return super()._create_client(asynchronous=asynchronous)

    def _check_attached(self) -> None:
        if getattr(self.connection, "client", None) is None:
            # A channel of a connection Celery already dropped: an ack of a message it had taken
            # (the task finished after the loss) must fail as a connection error, which Celery
            # logs and survives, not as an AttributeError, which stops the worker.
            raise redis_py.ConnectionError("this channel's broker connection was closed")


class Channel(SurvivingChannel):
    """One client per channel for the synchronous commands, kept for the pool it was made on.

    kombu builds a new Redis client object for every message it publishes (bench/README.md
    has what it cost per submit); the client is only a handle on the channel's connection pool,
    so one does for every publish until the pool is replaced after a disconnect.
    """

    _sync_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)
        self._check_attached()
        client = self._sync_client
        if client is None or client.connection_pool is not self._pool:
            client = self._sync_client = super()._create_client()
        return client


class Transport(redis.Transport):
    Channel = Channel
