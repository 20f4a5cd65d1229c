"""API entry point: `gunicorn -c gunicorn.conf.py run:app`, or `python run.py [--worker]`."""

import sys

from app import create_app
from app.launcher import serve

app = create_app()

if __name__ == "__main__":
    sys.exit(serve(app, sys.argv[1:]))
