"""Publishing a batch of task messages to RabbitMQ with one wait for all of their confirms.

With publisher confirms on (`confirm_publish`), py-amqp 5.4 waits for RabbitMQ's ack after
every basic.publish (`Channel.basic_publish_confirm`), so a batch of N messages costs N round
trips. In the protocol a channel in confirm mode numbers its publishes 1, 2, 3 ... and RabbitMQ
acks or nacks them one at a time or up to a number at once (`multiple`), so a publisher may send
a batch and then wait once (RabbitMQ's tutorial 7, "publishing messages in batches"). Neither
Celery 5.7 nor kombu 5.7 offers that (celery/celery#9887 asks for it).

`ConfirmedBatches` keeps a connection of its own in each process, opened without
`confirm_publish` so that py-amqp does not wait after each publish, puts its channel in confirm
mode with `confirm_select()`, counts its publishes and hears the acks and nacks through the
channel's `events` (the hook kombu's Producer uses for basic.return). Only public methods of
py-amqp and kombu are called; what is relied on is the numbering, which is RabbitMQ's, and the
ack events' arguments, which `tests/integration/test_group_commit.py` checks against a real
RabbitMQ (a canary for an upgrade of amqp or kombu, both pinned in requirements.txt).

The messages themselves are Celery's: `send(producer, message)` is expected to call
`send_task(..., producer=producer, retry=False)`. With `task_send_sent_event` on, Celery
publishes a sent event on the same channel, which would shift the numbering: `usable()` says
so and the publisher then confirms message by message as before.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import amqp.exceptions
from celery import Celery
from kombu import Producer
from kombu.exceptions import KombuError

from app.core.errors import BrokerUnavailable

# What a publish, a drain or a reconnection can raise when RabbitMQ is away or refuses.
_FAILURES = (KombuError, OSError, amqp.exceptions.AMQPError)
_UNSENT = object()


def usable(celery: Celery) -> bool:
    """Whether every publish on the batch's channel is one of its own messages."""
    return not celery.conf.task_send_sent_event


class ConfirmedBatches:
    """Publish a batch on one channel, then wait once for RabbitMQ to confirm all of it.

    `send_confirmed` returns one outcome per message: None if RabbitMQ confirmed it, else the
    BrokerUnavailable to answer its request with. A nack is final. A lost connection is
    reconnected and the messages not yet confirmed are sent again (at most `attempts` times in
    all, within `timeout`), as kombu's own retry would: one RabbitMQ did take while its confirm
    was lost is then queued twice, and the worker runs a task's row once whatever the messages.
    """

    def __init__(self, celery: Celery, timeout: float, attempts: int = 3):
        self.celery = celery
        self.timeout = timeout
        self.attempts = attempts
        self._lock = threading.Lock()
        self._pid = 0
        self._conn: Any = None
        self._closer: weakref.finalize | None = None  # closes the connection when this object goes
        self._producer: Producer | None = None
        self._confirms = _Confirms()

    def send_confirmed(self, send: Callable[[Producer, Any], None], messages: Sequence[Any]) -> list[Any]:
        with self._lock:
            outcomes: list[Any] = [_UNSENT] * len(messages)
            deadline = time.monotonic() + self.timeout
            error: BaseException | None = None
            for attempt in range(self.attempts):
                unsent = [i for i, outcome in enumerate(outcomes) if outcome is _UNSENT]
                if not unsent or time.monotonic() >= deadline:
                    break
                if attempt:
                    time.sleep(min(0.2 * attempt, max(0.0, deadline - time.monotonic())))  # backoff
                try:
                    self._send_and_wait(send, messages, unsent, outcomes, deadline)
                    error = None
                except _FAILURES as exc:
                    error = exc
                    self._reset()  # a new channel numbers from 1 again
                except _ConfirmTimeout as exc:
                    error = exc
                    self._reset()  # late confirms must not be counted against the next batch
                    break
            if error is None:  # the time ran out between attempts
                error = _ConfirmTimeout(f"RabbitMQ did not confirm within {self.timeout:g} s")
            failed = BrokerUnavailable(str(error) or type(error).__name__)
            return [failed if outcome is _UNSENT else outcome for outcome in outcomes]

    def _send_and_wait(
        self,
        send: Callable[[Producer, Any], None],
        messages: Sequence[Any],
        indexes: list[int],
        outcomes: list[Any],
        deadline: float,
    ) -> None:
        producer = self._channel_producer()
        confirms = self._confirms
        confirms.outcomes = outcomes
        try:
            for i in indexes:
                send(producer, messages[i])
                confirms.sent += 1
                confirms.waiting[confirms.sent] = i
            while confirms.waiting:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _ConfirmTimeout(f"RabbitMQ did not confirm within {self.timeout:g} s")
                try:
                    self._conn.drain_events(timeout=remaining)
                except TimeoutError:
                    continue  # the deadline decides
        finally:
            confirms.waiting.clear()  # whatever was not confirmed stays _UNSENT

    def _channel_producer(self) -> Producer:
        """This process's producer on a channel in confirm mode (a forked child opens its own)."""
        if self._producer is None or self._pid != os.getpid():
            conn = self.celery.connection_for_write(transport_options={"confirm_publish": False})
            # One try: send_confirmed() makes the attempts (kombu's own would wait 2 s before a second).
            conn.ensure_connection(max_retries=0)
            self._pid, self._conn, self._confirms = os.getpid(), conn, _Confirms()
            # The channel's callbacks hold the _Confirms, not this object, so that it can be
            # collected (and its connection closed) when its app goes.
            self._closer = weakref.finalize(self, _close, conn, self._pid)
            channel = conn.channel()
            channel.confirm_select()
            channel.events["basic_ack"].add(self._confirms.ack)
            channel.events["basic_nack"].add(self._confirms.nack)
            self._producer = Producer(channel)
        return self._producer

    def _reset(self) -> None:
        self._conn, self._producer = None, None
        if self._closer is not None:
            self._closer()


def _close(conn: Any, pid: int) -> None:
    """Close the socket without waiting on a broker that may not answer; in a forked child the
    connection is its parent's, and is left alone."""
    if os.getpid() != pid:
        return
    try:
        conn.collect()
    except _FAILURES:
        pass  # it is closed already


class _Confirms:
    """One channel's publishes since confirm_select, and those awaiting RabbitMQ's word."""

    def __init__(self) -> None:
        self.sent = 0  # the number RabbitMQ gave the last publish (it counts from 1)
        self.waiting: dict[int, int] = {}  # a publish's number -> its message's index in the batch
        self.outcomes: list[Any] = []  # the batch's outcomes, by index

    def ack(self, delivery_tag: int, multiple: bool) -> None:
        self._settle(delivery_tag, multiple, None)

    def nack(self, delivery_tag: int, multiple: bool) -> None:
        self._settle(delivery_tag, multiple, BrokerUnavailable("RabbitMQ refused the message (nack)"))

    def _settle(self, delivery_tag: int, multiple: bool, outcome: Any) -> None:
        numbers = [n for n in self.waiting if n <= delivery_tag] if multiple else [delivery_tag]
        for number in numbers:
            index = self.waiting.pop(number, None)
            if index is not None:
                self.outcomes[index] = outcome


class _ConfirmTimeout(Exception):
    pass
