"""Tasker's public names: what a module of task types imports. Everything else is internal.

    from tasker import RunContext, TransientError, task

    @task
    def add_tax(amount: float, rate: float = 0.2) -> float:
        return round(amount * (1 + rate), 2)

List the module in TASKER_TASK_MODULES (or as a `tasker.tasks` entry point of its package), and
the API and every worker load it (docs/own-task-types.md).
"""

from app.tasks.base import RunContext
from app.tasks.declare import task
from app.tasks.errors import TaskCancelled, TaskFailed, TransientError
from app.tasks.handles import TaskHandle
from app.tasks.hints import DeclarationError
from app.tasks.workflow_handle import WorkflowHandle
from tasker.workflows import ref, workflow

__all__ = [
    "DeclarationError",
    "RunContext",
    "TaskCancelled",
    "TaskFailed",
    "TaskHandle",
    "TransientError",
    "WorkflowHandle",
    "ref",
    "task",
    "workflow",
]
