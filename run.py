"""API entry point: `gunicorn -c gunicorn.conf.py run:app`, or `python run.py [--worker]`."""

import sys

if __name__ == "__main__":
    # Before the app (and prometheus_client) is imported: the API, the worker and beat started
    # beside it record into one directory, and the API's /metrics adds them all up.
    import atexit

    from config import metrics_dir

    path, made_here = metrics_dir.prepare()
    if made_here:
        atexit.register(metrics_dir.remove, path)  # also after a configuration error below

from app import create_app
from app.launcher import serve
from config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    sys.exit(f"configuration error: {exc}")

if __name__ == "__main__":
    sys.exit(serve(app, sys.argv[1:]))
