"""The start-up check that keeps Redis from redelivering a message a worker still holds (scenario 8)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.core.broker import broker_class
from app.core.celery_app import celery_settings
from app.tasks.base import MAX_RETRY_DELAY_SECONDS
from config import ConfigError, load_config
from tests.conftest import ROOT, child_env
from tests.support import REGISTRY

LONGEST = max(t.time_limit for t in REGISTRY)  # process_data's hard limit


def config(**env: str) -> dict:
    return load_config("testing", {"CELERY_BROKER_URL": "redis://127.0.0.1:6379/0", **env})


def test_the_default_is_above_the_longest_hard_limit_plus_the_longest_retry_delay():
    settings = config()
    broker_class(settings).check(settings, REGISTRY, MAX_RETRY_DELAY_SECONDS)
    options = celery_settings(settings, REGISTRY.queues)["broker_transport_options"]
    assert options["visibility_timeout"] == 7200 > LONGEST + MAX_RETRY_DELAY_SECONDS


@pytest.mark.parametrize("timeout", [60, LONGEST, int(LONGEST + MAX_RETRY_DELAY_SECONDS)])
def test_a_timeout_that_is_too_short_is_refused_saying_what_to_set(timeout):
    with pytest.raises(ConfigError) as refused:
        settings = config(BROKER_VISIBILITY_TIMEOUT_SECONDS=str(timeout))
        broker_class(settings).check(settings, REGISTRY, MAX_RETRY_DELAY_SECONDS)
    message = str(refused.value)
    assert f"BROKER_VISIBILITY_TIMEOUT_SECONDS is {timeout} s" in message
    assert f"({LONGEST} s, process_data)" in message
    assert f"set it to at least {int(LONGEST + MAX_RETRY_DELAY_SECONDS) + 1}" in message


def test_other_brokers_have_no_visibility_timeout():
    settings = load_config("testing", {"BROKER_VISIBILITY_TIMEOUT_SECONDS": "60"})  # embedded filesystem
    broker_class(settings).check(settings, REGISTRY, MAX_RETRY_DELAY_SECONDS)


def test_a_worker_refuses_to_start_with_a_short_timeout(tmp_path):
    env = child_env(
        {
            "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
            "BROKER_VISIBILITY_TIMEOUT_SECONDS": "600",
            "TASKER_DATA_DIR": str(tmp_path),
        }
    )
    done = subprocess.run(
        [sys.executable, "celery_worker.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "configuration error: BROKER_VISIBILITY_TIMEOUT_SECONDS is 600 s" in done.stderr
