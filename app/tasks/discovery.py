"""Which modules declare the catalogue: Tasker's own, those TASKER_TASK_MODULES names, and those of
installed packages' `tasker.tasks` entry points. The API and every worker load the same ones.

A module that fails to import stops the start with a message naming it: a catalogue is whole or
there is none.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from importlib.metadata import entry_points

from app.tasks.declare import Declaration, declared
from app.tasks.hints import DeclarationError
from app.tasks.registry import BUILT_IN

ENTRY_POINTS = "tasker.tasks"


def task_modules(configured: Iterable[str]) -> dict[str, str]:
    """Each module to load, with where it was named (for the error that says it failed)."""
    modules = {BUILT_IN: "Tasker"}
    for name in configured:
        modules.setdefault(name, "TASKER_TASK_MODULES")
    for point in entry_points(group=ENTRY_POINTS):
        modules.setdefault(
            point.value.split(":", 1)[0].strip(), f"the {ENTRY_POINTS} entry point {point.name!r}"
        )
    return modules


def load(configured: Iterable[str]) -> list[Declaration]:
    """Import every task module; the declarations they (and their submodules) made, in order."""
    modules = task_modules(configured)
    for module, named_by in modules.items():
        try:
            importlib.import_module(module)
        except DeclarationError:
            raise  # it names the function and the rule
        except Exception as exc:  # noqa: BLE001 - whatever the module raised: the start stops, saying which
            problem = f"{type(exc).__name__}: {exc}"
            raise DeclarationError(
                f"task module {module!r} (from {named_by}) failed to import: {problem}"
            ) from None
    return [d for d in declared() if any(d.module == m or d.module.startswith(m + ".") for m in modules)]
