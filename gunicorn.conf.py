"""gunicorn settings: `gunicorn -c gunicorn.conf.py run:app`.

gthread workers suit an API that waits on PostgreSQL and Redis; each process
opens its own pools lazily after the fork (DatabaseManager checks the PID), so
nothing is shared with the master.
"""

import multiprocessing
import os
import sys

bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '5000')}")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = 30
graceful_timeout = 30
keepalive = 5
max_requests = 20000
max_requests_jitter = 2000
control_socket_disable = True  # gunicorn 27 otherwise opens a socket under $HOME
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"


def on_starting(server):
    """Refuse open mode (no API keys) on a network address unless AUTH_MODE=open says so."""
    from config import ConfigError, load_config
    from config.base import check_exposure

    hosts = [address.rsplit(":", 1)[0] for address in server.cfg.bind if not address.startswith("unix:")]
    try:
        warning = check_exposure(load_config(), hosts)
    except ConfigError as exc:
        server.log.error("configuration error: %s", exc)
        sys.exit(2)
    if warning:
        server.log.warning(warning)


loglevel = os.environ.get("LOG_LEVEL", "info").lower()
