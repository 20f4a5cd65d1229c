"""gunicorn settings: `gunicorn -c gunicorn.conf.py run:app`.

gthread workers suit an API that waits on PostgreSQL and Redis; each process
opens its own pools lazily after the fork (DatabaseManager checks the PID), so
nothing is shared with the master.

Metrics: the master empties (or makes) PROMETHEUS_MULTIPROC_DIR before any worker
starts, so every worker records there and /metrics adds them up (config/metrics_dir.py).
"""

import multiprocessing
import os
import sys

bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '5000')}")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2))
worker_class = "gthread"
# Requests get GUNICORN_THREADS threads; open event streams (SSE) one each on top of those, up
# to STREAM_MAX_CONCURRENT per process, so streams never take the threads requests need.
threads = int(os.environ.get("GUNICORN_THREADS", "8")) + int(os.environ.get("STREAM_MAX_CONCURRENT", "100"))
timeout = 30
graceful_timeout = 30
keepalive = 5
max_requests = 20000
max_requests_jitter = 2000
control_socket_disable = True  # gunicorn 27 otherwise opens a socket under $HOME
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"


_metrics_dir = []


def on_starting(server):
    """Refuse open mode (no API keys) on a network address unless AUTH_MODE=open says so;
    prepare the metrics directory the workers will share."""
    from config import ConfigError, load_config, metrics_dir
    from config.base import check_exposure

    if os.environ.get("METRICS_ENABLED", "").strip().lower() not in ("false", "0", "no"):
        _metrics_dir.append(metrics_dir.prepare("tasker-gunicorn-metrics-"))

    hosts = [address.rsplit(":", 1)[0] for address in server.cfg.bind if not address.startswith("unix:")]
    try:
        warning = check_exposure(load_config(), hosts)
    except ConfigError as exc:
        server.log.error("configuration error: %s", exc)
        sys.exit(2)
    if warning:
        server.log.warning(warning)


def post_worker_init(worker):
    """On SIGTERM (a graceful stop), end this worker's open event streams first: gunicorn waits up
    to graceful_timeout for running responses, and a stream would otherwise hold it that long."""
    import signal

    from app.core import streams

    graceful = signal.getsignal(signal.SIGTERM)

    def stop(signum, frame):
        streams.close_all()
        graceful(signum, frame)

    signal.signal(signal.SIGTERM, stop)


def worker_int(worker):
    from app.core import streams

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


loglevel = os.environ.get("LOG_LEVEL", "info").lower()
_default_format = "json" if os.environ.get("APP_ENV", "").strip().lower() == "production" else "text"
if (os.environ.get("LOG_FORMAT", "").strip().lower() or _default_format) == "json":
    from gunicorn.glogging import Logger
    from pythonjsonlogger.json import JsonFormatter

    class JsonLogger(Logger):
        """gunicorn's own lines (start, worker boot and exit) as JSON too: one object per line.
        (A logconfig_dict would do it as well, but makes gunicorn format an access line per request.)
        The fields are app/core/logs.py's; that module is not imported here, as importing the app
        in the master would load prometheus_client before on_starting chooses its directory."""

        def setup(self, cfg):
            super().setup(cfg)
            formatter = JsonFormatter(
                ["levelname", "name", "message"],
                rename_fields={"levelname": "level", "name": "logger"},
                timestamp="time",
            )
            for handler in (*self.error_log.handlers, *self.access_log.handlers):
                handler.setFormatter(formatter)

    logger_class = JsonLogger
