"""API entry point: `gunicorn -c gunicorn.conf.py run:app`, or `python run.py [--worker]`."""

import sys

from app import create_app
from app.launcher import serve
from config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    sys.exit(f"configuration error: {exc}")

if __name__ == "__main__":
    sys.exit(serve(app, sys.argv[1:]))
