"""Worker entry point.

`celery -A celery_worker.celery worker --loglevel=info`, or `python celery_worker.py`.
"""

import os
import sys

if int(os.environ.get("WORKER_METRICS_PORT") or 0):
    # A worker serving its own /metrics: its pool processes record into one directory (emptied
    # or made before prometheus_client is imported) that the main process adds up.
    from config import metrics_dir

    metrics_dir.prepare("tasker-worker-metrics-")

from app import create_app  # after the metrics directory is chosen
from config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    sys.exit(f"configuration error: {exc}")
celery = app.extensions["celery"]

if __name__ == "__main__":
    celery.worker_main(["worker", "--loglevel=INFO", *sys.argv[1:]])
