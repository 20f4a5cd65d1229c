# The API, the worker, beat and Flower share this image; docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TASKER_DATA_DIR=/var/lib/tasker

WORKDIR /app
COPY requirements.txt .
# The code stays root's: the user the services run as can write only its data directory (and
# /tmp), so the root filesystem can be mounted read-only (docker-compose.yml does).
RUN pip install -r requirements.txt \
    && useradd --no-create-home --home-dir /nonexistent --uid 10001 tasker \
    && install -d -o tasker -g tasker -m 0700 /var/lib/tasker

COPY . .
USER 10001

EXPOSE 5000
# Liveness of the API (the default command); compose gives the other services checks of their own.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["python", "deploy/healthcheck.py"]
CMD ["gunicorn", "-c", "gunicorn.conf.py", "run:app"]
