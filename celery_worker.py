"""Worker entry point.

`celery -A celery_worker.celery worker --loglevel=info`, or `python celery_worker.py`.
"""

from app import create_app

app = create_app()
celery = app.extensions["celery"]

if __name__ == "__main__":
    celery.worker_main(["worker", "--loglevel=INFO"])
