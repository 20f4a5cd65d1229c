"""Concurrency keys: at most `limit` tasks of one key run at a time, across every worker.

A task type declares one (`@task(concurrency={"key": "owner", "limit": 2})`) and a submit may
narrow it (a lower limit, another strategy) or, for a type that declares none, give one. The key
is the type's name with what `key` picks: "global" (one key for every owner), "owner" (one per
owner), or {"$param": "/customer_id"} (one per owner and value of that parameter).

The slot is the row itself (app/models/concurrency.py): a task of the key is WAITING with no
message in the broker until a transaction admits it (PENDING with a slot number under its
limit, unique among the key's PENDING, STARTED and RETRYING rows), and published after that
commit. The write that ends a task frees its slot by leaving those statuses, and in the same
transaction the next waiting task of the key is admitted (app/core/endings.py); the recovery
sweep's pass is the fallback. Admissions of one key take turns (a transaction-scoped lock).

Strategies, applied by the submit:
- queue: wait for a slot (the default);
- cancel_in_progress: the key's unfinished tasks are cancelled (running ones asked to stop), the
  new one runs when their slots free;
- cancel_newest: a submit that finds every slot held is CANCELLED at once, with the reason;
- keep_newest_queued: the key's waiting tasks are cancelled (replaced by the newest).
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from jsonpointer import JsonPointer, JsonPointerException
from sqlalchemy.engine import Connection, Row

from app.core.broker import Broker, Message
from app.core.errors import BrokerUnavailable, InvalidInput
from app.core.live.changes import LIST_STREAMS, TASK_STREAMS, Watch
from app.core.ports import Registry
from app.models import concurrency as concurrency_model
from app.models.task import TaskStatus

logger = logging.getLogger(__name__)

STRATEGIES = ("queue", "cancel_in_progress", "cancel_newest", "keep_newest_queued")
KEYS = ("global", "owner")
MAX_LIMIT = 1000
MAX_KEY_LENGTH = 300
CANDIDATES = 50  # waiting tasks an admission looks at (the oldest), to choose by owner and priority
KEY_RULE = 'Must be "global", "owner" or {"$param": "/a/json/pointer"}.'
LIMIT_RULE = f"Must be a whole number, 1 to {MAX_LIMIT}."
STRATEGY_RULE = f"Must be one of: {', '.join(STRATEGIES)}."


@dataclass(frozen=True)
class ConcurrencySpec:
    key: str  # "global", "owner", or a JSON Pointer into the parameters (starting with /, or "")
    limit: int
    strategy: str = "queue"

    @property
    def by_param(self) -> bool:
        return self.key not in KEYS

    def as_json(self) -> dict[str, Any]:
        key: Any = {"$param": self.key} if self.by_param else self.key
        return {"key": key, "limit": self.limit, "strategy": self.strategy}

    def key_of(self, type_name: str, owner: str, parameters: dict[str, Any], field: str) -> str:
        """The key a task of `type_name`, `owner` and `parameters` runs under: InvalidInput naming
        the parameter when the key's is missing or not a string, number or boolean."""
        if self.key == "global":
            return type_name
        key = f"{type_name}:owner={owner}"
        if self.by_param:
            where = f"{field}{self.key.replace('/', '.')}"
            try:
                value = JsonPointer(self.key).resolve(parameters)
            except JsonPointerException:
                rule = f"Required: {type_name}'s concurrency key is made of it ({self.key})."
                raise InvalidInput(f"Invalid {where}: {rule}", {where: [rule]}) from None
            if value is None or isinstance(value, (dict, list)):
                rule = f"Must be a string, number or boolean: {type_name}'s concurrency key is made of it."
                raise InvalidInput(f"Invalid {where}: {rule}", {where: [rule]})
            key += f":{self.key}={value if isinstance(value, str) else json.dumps(value)}"
        if len(key) > MAX_KEY_LENGTH:  # a long value: its hash keeps keys apart and short
            key = key[: MAX_KEY_LENGTH - 65] + "#" + hashlib.sha256(key.encode()).hexdigest()
        return key


def parse(value: Any, field: str = "concurrency") -> ConcurrencySpec:
    """A concurrency object checked: InvalidInput naming `field`.key, .limit or .strategy."""
    if not isinstance(value, dict):
        rule = 'Must be an object: {"key": ..., "limit": n, "strategy": ...}.'
        raise InvalidInput(f"Invalid {field}: {rule}", {field: [rule]})
    problems: dict[str, list[str]] = {}
    unknown = sorted(set(value) - {"key", "limit", "strategy"})
    for name in unknown:
        problems[f"{field}.{name}"] = ["Unknown field."]
    key = checked_key(value.get("key", "global"))
    if key is None:
        problems[f"{field}.key"] = [KEY_RULE]
    limit = value.get("limit")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        problems[f"{field}.limit"] = [LIMIT_RULE]
    strategy = value.get("strategy", "queue")
    if strategy not in STRATEGIES:
        problems[f"{field}.strategy"] = [STRATEGY_RULE]
    if problems:
        first, rules = next(iter(problems.items()))
        raise InvalidInput(f"Invalid {first}: {rules[0]}", problems)
    assert key is not None and isinstance(limit, int)
    return ConcurrencySpec(key, limit, strategy)


def checked_key(value: Any) -> str | None:
    """The key's kind ("global", "owner") or its parameter's JSON Pointer; None for anything else."""
    if value in KEYS:
        return value
    if isinstance(value, dict) and set(value) == {"$param"} and isinstance(value["$param"], str):
        pointer = value["$param"]
        try:
            JsonPointer(pointer)
        except JsonPointerException:
            return None
        return pointer if pointer else None
    return None


def narrowed(
    declared: ConcurrencySpec | None, given: Any, field: str = "concurrency"
) -> ConcurrencySpec | None:
    """What a submit runs under: the type's declaration, narrowed by the submit's `given` (a lower
    limit, another strategy; its key stays), or `given` alone for a type that declares none."""
    if given is None:
        return declared
    if declared is not None and isinstance(given, dict) and "limit" not in given:
        given = given | {"limit": declared.limit}
    spec = parse(given, field)
    if declared is None:
        return spec
    if "key" in given and spec.key != declared.key:
        rule = f"The task type declares its key ({json.dumps(declared.as_json()['key'])}); a submit keeps it."
        raise InvalidInput(f"Invalid {field}.key: {rule}", {f"{field}.key": [rule]})
    if spec.limit > declared.limit:
        rule = f"At most {declared.limit}, the task type's own limit: a submit may lower it, not raise it."
        raise InvalidInput(f"Invalid {field}.limit: {rule}", {f"{field}.limit": [rule]})
    strategy = spec.strategy if "strategy" in given else declared.strategy
    return ConcurrencySpec(declared.key, spec.limit, strategy)


class Admissions:
    """Admits the waiting tasks of a key while its slots allow, in the caller's transaction, and
    publishes them after its commit."""

    def __init__(self, registry: Registry, broker: Broker, watch: Watch):
        self.registry = registry
        self.broker = broker
        self.watch = watch

    def publish(self, messages: list[Message]) -> None:
        """After the commit that admitted them: one the broker does not take stays PENDING, and the
        recovery sweep publishes it again."""
        for message in messages:
            try:
                self.broker.enqueue(message)
            except BrokerUnavailable as exc:
                logger.warning(
                    "admitted task %s not published (%s); the sweep will", message.task_id, exc.message
                )
            self.watch.announce(message.task_id, TaskStatus.PENDING, LIST_STREAMS)

    def admit(self, conn: Connection, key: str) -> list[Message]:
        """Owner round robin (the owner holding fewest of the key's slots first), then priority,
        then age. The caller holds the key's lock (concurrency_model.lock)."""
        candidates = concurrency_model.waiting(conn, key, CANDIDATES)
        if not candidates:  # the usual case for an ending: nothing waits
            return []
        holders = concurrency_model.held(conn, key)
        taken = {row.concurrency_slot for row in holders}
        per_owner = Counter(row.owner for row in holders)
        admitted: list[Message] = []
        while candidates and len(taken) < max(row.concurrency_limit for row in candidates):
            best = min(candidates, key=lambda row: (per_owner[row.owner], -row.priority, row.created_at))
            candidates.remove(best)
            slot = next((s for s in range(best.concurrency_limit) if s not in taken), None)
            if slot is None or not concurrency_model.take(conn, best.id, slot):
                continue
            taken.add(slot)
            per_owner[best.owner] += 1
            admitted.append(self.message(best))
        return admitted

    def admit_keys(self, conn: Connection, keys: Iterable[str]) -> list[Message]:
        """The waiting tasks of each of `keys` admitted, key by key (in order), each under its lock."""
        admitted: list[Message] = []
        for key in sorted(set(keys)):
            self.lock(conn, key)
            admitted += self.admit(conn, key)
        return admitted

    def set_aside(self, task_id: uuid.UUID, admitted: list[Message]) -> None:
        """After the commit that set a task aside as WAITING (a paused queue, a rate limit's later
        turn) and admitted its key's next tasks: readers told, the admitted published."""
        self.watch.announce(task_id, TaskStatus.WAITING, TASK_STREAMS)
        self.publish(admitted)

    def message(self, row: Row) -> Message:
        """The message of an admitted task (its row's name, parameters, priority, limits, secrets)."""
        task_type = self.registry.resolve(row.name)
        return Message(
            task_type, row.id, row.parameters, row.priority, row.timeout_seconds, sealed=row.sealed
        )

    @staticmethod
    def lock(conn: Connection, key: str) -> None:
        concurrency_model.lock(conn, key)
