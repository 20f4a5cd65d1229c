"""Worker entry point.

`celery -A celery_worker.celery worker --loglevel=info`, or `python celery_worker.py`.
"""

import os
import sys

if int(os.environ.get("WORKER_METRICS_PORT") or 0):
    # A worker serving its own /metrics adds up what its pool processes record in
    # PROMETHEUS_MULTIPROC_DIR. It must be in the environment before the process starts: the
    # `celery` command loads its plugins (Flower's among them) and with them prometheus_client
    # before this module runs. It is emptied here, before any task records anything.
    from config import metrics_dir

    if not os.environ.get(metrics_dir.VARIABLE):
        sys.exit("configuration error: WORKER_METRICS_PORT needs PROMETHEUS_MULTIPROC_DIR (a directory)")
    metrics_dir.prepare()

from app import create_app  # after the metrics directory is chosen
from config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    sys.exit(f"configuration error: {exc}")
celery = app.extensions["celery"]

if __name__ == "__main__":
    celery.worker_main(["worker", "--loglevel=INFO", *sys.argv[1:]])
