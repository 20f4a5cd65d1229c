"""Worker entry point.

`celery -A celery_worker.celery worker --loglevel=info`, or `python celery_worker.py`.
"""

import sys

from app import create_app
from config import ConfigError, load_config, metrics_dir

try:
    settings = load_config()
    if settings["WORKER_METRICS_PORT"]:
        # A worker serving its own /metrics adds up what its pool processes record in
        # PROMETHEUS_MULTIPROC_DIR. It must be in the environment before the process starts:
        # the `celery` command loads its plugins (Flower's among them) and with them
        # prometheus_client before this module runs. It is emptied here, before any task
        # records anything.
        if not settings["PROMETHEUS_MULTIPROC_DIR"]:
            raise ConfigError("WORKER_METRICS_PORT needs PROMETHEUS_MULTIPROC_DIR (a directory)")
        metrics_dir.prepare()
    app = create_app(config=settings)
except ConfigError as exc:
    sys.exit(f"configuration error: {exc}")
celery = app.extensions["celery"]

if __name__ == "__main__":
    celery.worker_main(["worker", "--loglevel=INFO", *sys.argv[1:]])
