"""API entry point: `gunicorn -c gunicorn.conf.py run:app`, or `python run.py [--worker]`."""

import sys

if __name__ == "__main__":
    # Before the app (and prometheus_client) is imported: the API, the worker and beat started
    # beside it record into one directory, and the API's /metrics adds them all up.
    from config import metrics_dir

    METRICS_DIR = metrics_dir.prepare()

from app import create_app
from app.launcher import serve
from config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    sys.exit(f"configuration error: {exc}")

if __name__ == "__main__":
    try:
        code = serve(app, sys.argv[1:])
    finally:
        if METRICS_DIR[1]:
            metrics_dir.remove(METRICS_DIR[0])
    sys.exit(code)
