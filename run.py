"""API entry point: `gunicorn -c gunicorn.conf.py run:app`, or `python run.py [--worker]`."""

import atexit
import sys

from app import create_app
from app.launcher import serve
from config import ConfigError, metrics_dir

if __name__ == "__main__":
    # Before the app is made (it loads prometheus_client, which picks its mode from the
    # environment): the API, the worker and beat started beside it record into one directory,
    # and the API's /metrics adds them all up.
    path, made_here = metrics_dir.prepare()
    if made_here:
        atexit.register(metrics_dir.remove, path)  # also after a configuration error below

try:
    app = create_app()
except ConfigError as exc:
    sys.exit(f"configuration error: {exc}")

if __name__ == "__main__":
    sys.exit(serve(app, sys.argv[1:]))
