"""Worker entry point.

`celery -A celery_worker.celery worker --loglevel=info`, or `python celery_worker.py`.
"""

import sys

from app import create_app
from config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    sys.exit(f"configuration error: {exc}")
celery = app.extensions["celery"]

if __name__ == "__main__":
    celery.worker_main(["worker", "--loglevel=INFO", *sys.argv[1:]])
