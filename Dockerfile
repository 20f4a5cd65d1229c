# The API and the worker share this image; docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt \
    && useradd --create-home --uid 10001 tasker

COPY --chown=tasker:tasker . .
USER tasker

EXPOSE 5000
CMD ["gunicorn", "-c", "gunicorn.conf.py", "run:app"]
