"""The one container of Tasker's services: built once by app/wiring.py, held by the Flask app
(`app.extensions["tasker"]`) for the routes and bound to the Celery app for the tasks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.core import redact
from app.core.beat.housekeeping import Housekeeping
from app.core.beat.presence import WorkerPresence
from app.core.beat.recovery import Recovery
from app.core.beat.scheduler import Scheduler
from app.core.cache_manager import CacheManager
from app.core.database_manager import DatabaseManager
from app.core.endings import Endings
from app.core.http_targets import HttpTargets
from app.core.keys import KeyManager
from app.core.live.streams import StreamHub
from app.core.metrics import Snapshot
from app.core.monitor import Monitor
from app.core.pauses import Pauses
from app.core.rate_limits import RateLimits
from app.core.schedule_manager import ScheduleManager
from app.core.sealing import Sealer
from app.core.served import ServedTypes
from app.core.task_manager import TaskManager
from app.core.webhooks import Deliveries
from app.core.workflows.manager import WorkflowManager
from app.tasks.callbacks import TaskCallbacks

if TYPE_CHECKING:  # the registry's declarations import the tasks' base, which imports this
    from app.tasks.registry import Registry


@dataclass(frozen=True)
class Tasker:
    settings: Mapping[str, Any]
    registry: Registry
    db: DatabaseManager
    cache: CacheManager
    endings: Endings
    tasks: TaskManager  # the use cases; also what .delay() and send_task() from Python submit through
    callbacks: TaskCallbacks  # what a task's run writes
    schedules: ScheduleManager
    workflows: WorkflowManager
    monitor: Monitor
    scheduler: Scheduler
    recovery: Recovery
    housekeeping: Housekeeping
    keys: KeyManager
    redactor: redact.Redactor
    presence: WorkerPresence
    snapshot: Snapshot
    streams: StreamHub
    deliveries: Deliveries
    served: ServedTypes  # the task types live workers serve
    sealer: Sealer  # opens what a type keeps out of its parameters (http_request's credential headers)
    http_targets: HttpTargets  # who http_request may call
    pauses: Pauses  # paused queues
    rate_limits: RateLimits  # named rate limits
