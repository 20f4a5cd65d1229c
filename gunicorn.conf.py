"""gunicorn settings: `gunicorn -c gunicorn.conf.py run:app`.

gthread workers suit an API that waits on PostgreSQL and Redis; each process
opens its own pools lazily after the fork (DatabaseManager checks the PID), so
nothing is shared with the master.

Metrics: the master empties (or makes) PROMETHEUS_MULTIPROC_DIR before any worker
starts, so every worker records there and /metrics adds them up (config/metrics_dir.py).
"""

import os
import sys

from config import ConfigError, load_config

# The settings as the app reads them (config/settings.py): a bad value stops gunicorn here,
# saying which, before any worker starts.
try:
    settings = load_config()
except ConfigError as exc:
    sys.exit(f"configuration error: {exc}")

bind = settings["GUNICORN_BIND"]
workers = settings["WEB_CONCURRENCY"]
worker_class = "gthread"
# Requests get GUNICORN_THREADS threads; open event streams (SSE) one each on top of those, up
# to STREAM_MAX_CONCURRENT per process, so streams never take the threads requests need.
threads = settings["GUNICORN_THREADS"] + settings["STREAM_MAX_CONCURRENT"]
timeout = 30
graceful_timeout = 30
keepalive = 5
max_requests = 20000
max_requests_jitter = 2000
control_socket_disable = True  # gunicorn 27 otherwise opens a socket under $HOME
accesslog = settings["GUNICORN_ACCESS_LOG"]
errorlog = "-"


_metrics_dir = []


def on_starting(server):
    """Refuse open mode (no API keys) on a network address unless AUTH_MODE=open says so;
    prepare the metrics directory the workers will share."""
    from config import metrics_dir
    from config.base import check_exposure

    if settings["METRICS_ENABLED"]:
        _metrics_dir.append(metrics_dir.prepare("tasker-gunicorn-metrics-"))

    hosts = [address.rsplit(":", 1)[0] for address in server.cfg.bind if not address.startswith("unix:")]
    try:
        warning = check_exposure(settings, hosts)
    except ConfigError as exc:
        server.log.error("configuration error: %s", exc)
        sys.exit(2)
    if warning:
        server.log.warning(warning)


def post_worker_init(worker):
    """On SIGTERM (a graceful stop), end this worker's open event streams first: gunicorn waits up
    to graceful_timeout for running responses, and a stream would otherwise hold it that long."""
    import signal

    from app.core.live import streams

    graceful = signal.getsignal(signal.SIGTERM)

    def stop(signum, frame):
        streams.close_all()
        graceful(signum, frame)

    signal.signal(signal.SIGTERM, stop)


def worker_int(worker):
    from app.core.live import streams

    streams.close_all()


def child_exit(server, worker):
    """A worker is gone: prometheus-client drops its live-gauge files (its counters stay)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    from config import metrics_dir

    for path, made_here in _metrics_dir:
        if made_here:
            metrics_dir.remove(path)


loglevel = settings["LOG_LEVEL"].lower()
if settings["LOG_FORMAT"] == "json":
    from gunicorn.glogging import Logger

    from app.core.logs import json_formatter  # importing it alone loads neither the app nor metrics

    class JsonLogger(Logger):
        """gunicorn's own lines (start, worker boot and exit) as JSON too, in the app's format.
        (A logconfig_dict would do it as well, but makes gunicorn format an access line per request.)"""

        def setup(self, cfg):
            super().setup(cfg)
            for handler in (*self.error_log.handlers, *self.access_log.handlers):
                handler.setFormatter(json_formatter())

    logger_class = JsonLogger
