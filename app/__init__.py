"""The app factory: builds the managers, the Celery app and the routes from one config."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask

from app.api.docs import add_links, init_docs
from app.api.errors import register_error_handlers
from app.api.routes import create_routes
from app.api.schedules import create_schedule_routes
from app.api.v1 import create_v1_routes
from app.core.cache_manager import CacheManager
from app.core.celery_app import CeleryPublisher, check_visibility_timeout, create_celery
from app.core.database_manager import DatabaseManager
from app.core.logs import configure_logging
from app.core.schedule_manager import ScheduleManager
from app.core.task_manager import TaskManager
from app.tasks import task_functions  # noqa: F401 - registers the Celery tasks
from app.tasks.callbacks import TaskCallbacks, make_task_class
from app.tasks.registry import REGISTRY
from app.tasks.task_functions import MAX_RETRY_DELAY_SECONDS
from config import load_config


@dataclass(frozen=True)
class Tasker:
    """What `app.extensions["tasker"]` holds."""

    db: DatabaseManager
    cache: CacheManager
    tasks: TaskManager
    schedules: ScheduleManager


def create_app(config_name: str | None = None, overrides: Mapping[str, Any] | None = None) -> Flask:
    """Build the app for `config_name` (default: $APP_ENV, else development)."""
    app = Flask(__name__)
    app.config.update(load_config(config_name))
    app.config.update(overrides or {})
    app.json.sort_keys = False
    configure_logging(app.config["LOG_LEVEL"], app.config["LOG_FILE"])

    check_visibility_timeout(app.config, REGISTRY, MAX_RETRY_DELAY_SECONDS)
    db = DatabaseManager(app.config["DATABASE_URL"], app.config["DATABASE_POOL_SIZE"])
    cache = CacheManager.from_url(app.config["REDIS_URL"], app.config["CACHE_TTL_SECONDS"])
    task_cls = make_task_class(TaskCallbacks(db, cache), app.config)
    celery = create_celery(app.import_name, app.config, task_cls, REGISTRY.queues)
    task_manager = TaskManager(db, cache, REGISTRY, CeleryPublisher(celery))
    schedule_manager = ScheduleManager(db, REGISTRY, task_manager)
    # Beat's tasks (recovery sweep, due tasks, schedules) work through the same managers.
    task_cls.task_manager = task_manager
    task_cls.schedule_manager = schedule_manager

    app.extensions["tasker"] = Tasker(db, cache, task_manager, schedule_manager)
    app.extensions["celery"] = celery
    api = init_docs(app)
    api.register_blueprint(create_routes(task_manager))
    for blueprint in create_v1_routes(task_manager):
        api.register_blueprint(blueprint)
    api.register_blueprint(create_schedule_routes(schedule_manager))
    add_links(api)
    register_error_handlers(app)
    return app
