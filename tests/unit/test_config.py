from __future__ import annotations

import pytest

from config import ConfigError, load_config
from tests.support import ROOT


def test_defaults_are_the_embedded_stack(tmp_path):
    config = load_config(env={"TASKER_DATA_DIR": str(tmp_path)})
    assert config["APP_ENV"] == "development"
    assert config["DATABASE_URL"] == f"sqlite:///{tmp_path}/tasker.db"
    assert config["CELERY_BROKER_URL"] == "filesystem://"
    assert config["REDIS_URL"] is None
    assert config["CACHE_TTL_SECONDS"] == 3600
    assert config["OPENAI_BASE_URL"] == "https://api.openai.com/v1"
    assert config["LOG_FILE"] is None


SECRET = "s" * 32


def test_app_env_picks_the_class():
    production = load_config(env={"APP_ENV": "production", "SECRET_KEY": SECRET})
    assert (production["LOG_LEVEL"], production["LOG_FORMAT"]) == ("INFO", "json")
    assert load_config(env={})["LOG_FORMAT"] == "text"
    assert production["AUTH_MODE"] == "keys"  # safe to expose by default
    assert load_config("testing", env={})["TESTING"] is True
    assert load_config(env={})["AUTH_MODE"] == "open"  # the local default
    # Quotas share a deployment between owners: on by default with keys, off in open mode.
    assert (production["QUOTA_UNFINISHED_TASKS"], production["QUOTA_SCHEDULES"]) == (10_000, 100)
    assert (load_config(env={})["QUOTA_UNFINISHED_TASKS"], load_config(env={})["QUOTA_SCHEDULES"]) == (0, 0)


def test_production_keys_mode_needs_a_secret_key():
    with pytest.raises(ConfigError, match="SECRET_KEY is required"):
        load_config(env={"APP_ENV": "production"})
    with pytest.raises(ConfigError, match="at least 32"):
        load_config(env={"APP_ENV": "production", "SECRET_KEY": "short"})
    assert load_config(env={"APP_ENV": "production", "AUTH_MODE": "open"})["AUTH_MODE_EXPLICIT"] is True


def test_security_settings_are_checked():
    with pytest.raises(ConfigError, match="AUTH_MODE must be keys or open"):
        load_config(env={"AUTH_MODE": "closed"})
    with pytest.raises(ConfigError, match="RATE_LIMIT_SUBMIT must look like"):
        load_config(env={"RATE_LIMIT_SUBMIT": "lots"})
    config = load_config(
        env={"OPENAI_MODEL": "gpt-x", "CORS_ORIGINS": "https://a.example, https://b.example"}
    )
    assert config["OPENAI_ALLOWED_MODELS"] == ["gpt-x"]
    assert config["CORS_ORIGINS"] == ["https://a.example", "https://b.example"]
    assert config["TRUSTED_HOSTS"] == ["localhost", "127.0.0.1"]  # open mode: DNS rebinding is refused


def test_the_data_dir_defaults_to_the_instance_folder():
    assert load_config(env={})["DATA_DIR"].endswith("/instance")


@pytest.mark.parametrize(
    ("env", "database", "broker", "cache"),
    [
        ({"DATABASE_URL": "postgresql://pg/db"}, "postgresql://pg/db", "filesystem://", None),
        ({"REDIS_URL": "redis://r/0"}, "sqlite:///", "redis://r/0", "redis://r/0"),
        ({"CELERY_BROKER_URL": "amqp://rabbit//"}, "sqlite:///", "amqp://rabbit//", None),
    ],
)
def test_any_url_that_is_set_wins_and_mixes_work(env, database, broker, cache):
    config = load_config(env=env)
    assert config["DATABASE_URL"].startswith(database)
    assert (config["CELERY_BROKER_URL"], config["REDIS_URL"]) == (broker, cache)


def test_broker_follows_redis_url_unless_set():
    env = {"REDIS_URL": "redis://cache:6379/2"}
    assert load_config(env=env)["CELERY_BROKER_URL"] == "redis://cache:6379/2"
    env["CELERY_BROKER_URL"] = "amqp://guest@rabbit//"
    assert load_config(env=env)["CELERY_BROKER_URL"] == "amqp://guest@rabbit//"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("APP_ENV", "staging", "APP_ENV must be one of"),
        ("CACHE_TTL_SECONDS", "abc", "CACHE_TTL_SECONDS must be an integer"),
        ("CACHE_TTL_SECONDS", "0", "CACHE_TTL_SECONDS must be between"),
        ("MAX_CONTENT_LENGTH", "-5", "MAX_CONTENT_LENGTH must be between"),
        ("DATABASE_URL", "mysql://x/y", "DATABASE_URL must start with"),
        (
            "DATABASE_URL",
            "postgresql+asyncpg://u:secret@h/db",
            "got 'postgresql\\+asyncpg://u:\\*\\*\\*@h/db'",
        ),
        ("CELERY_BROKER_URL", "sqs://x", "CELERY_BROKER_URL must start with"),
        ("CELERY_TASK_SENT_EVENT", "sometimes", "CELERY_TASK_SENT_EVENT must be true or false"),
        ("REDIS_URL", "localhost:6379", "REDIS_URL must start with"),
        ("OPENAI_BASE_URL", "ftp://x", "OPENAI_BASE_URL must start with"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL must be one of"),
        ("OPENAI_READ_TIMEOUT_SECONDS", "nan", "OPENAI_READ_TIMEOUT_SECONDS must be between"),
    ],
)
def test_a_bad_value_names_the_setting(name, value, message):
    with pytest.raises(ConfigError, match=message):
        load_config(env={name: value})


@pytest.mark.parametrize(
    ("url", "kind"),
    [("redis://h/0", "redis"), ("rediss://h/0", "redis"), ("amqp://g@h//", "amqp"),
     ("pyamqp://g@h//", "amqp"), ("filesystem://", "filesystem")],
)  # fmt: skip
def test_the_broker_kind_is_decided_once_from_the_url(url, kind):
    assert load_config(env={"CELERY_BROKER_URL": url})["BROKER_KIND"] == kind


def test_the_supported_database_drivers_are_named():
    with pytest.raises(ConfigError) as refused:
        load_config(env={"DATABASE_URL": "postgresql+asyncpg://h/db"})
    assert "postgresql://, postgres://, postgresql+psycopg2://, sqlite://, sqlite+pysqlite://" in str(
        refused.value
    )


def test_worker_concurrency_sizes_a_worker_started_without_the_option():
    from app.core.celery_app import celery_settings

    assert (
        celery_settings(load_config("testing", {}), ["default"])["worker_concurrency"] is None
    )  # a core each
    configured = load_config("testing", {"WORKER_CONCURRENCY": "6"})
    assert celery_settings(configured, ["default"])["worker_concurrency"] == 6
    with pytest.raises(ConfigError, match="WORKER_CONCURRENCY"):
        load_config("testing", {"WORKER_CONCURRENCY": "many"})


def test_task_timeout_and_retry_attempts_shape_the_task_types():
    from app.core.retries import RetryPolicy
    from app.wiring import registry_of

    defaults = registry_of(load_config("testing", {}))
    assert (defaults.resolve("sum").time_limit, defaults.resolve("sum").soft_time_limit) == (45, 30)
    assert defaults.resolve("weather").retry_policy == RetryPolicy(max_retries=3, on="transient")
    assert defaults.resolve("process_data").retry_policy == RetryPolicy(max_retries=0, on="transient")
    tuned = registry_of(load_config("testing", {"DEFAULT_TASK_TIMEOUT": "300", "MAX_RETRY_ATTEMPTS": "0"}))
    assert tuned.resolve("find_longest_consecutive_letters").time_limit == 300
    assert tuned.resolve("sum").soft_time_limit == 200
    assert tuned.resolve("query_chatgpt").max_retries == 0
    assert tuned.resolve("query_chatgpt").time_limit == 270  # its own limits stay
    for setting, value in (
        ("DEFAULT_TASK_TIMEOUT", "1"),
        ("MAX_RETRY_ATTEMPTS", "11"),
        ("MAX_RETRY_ATTEMPTS", "x"),
    ):
        with pytest.raises(ConfigError, match=setting):
            load_config("testing", {setting: value})


def test_the_env_example_and_the_settings_reference_are_written_from_the_declarations():
    """Neither is edited by hand: a setting declared, changed or removed shows in both (make settings)."""
    from config import reference
    from config.settings import DECLARED

    assert reference.main(["--check"]) == 0
    page = reference.REFERENCE.read_text()
    rows = {line.split("`")[1]: line for line in page.splitlines() if line.startswith("| `")}
    assert set(rows) == {setting.name for setting in DECLARED}
    assert all(("*tuning:*" in rows[s.name]) == s.tuning for s in DECLARED)  # operator or tuning
    example = reference.ENV_EXAMPLE.read_text()
    assert all((f"# {s.name}=" in example) != s.secret for s in DECLARED)


def test_every_setting_read_in_the_code_is_declared():
    """A variable read straight from the environment is one of the declared settings (or the
    process's own: Celery's and gunicorn's are theirs)."""
    import re

    from config.settings import NAMES

    read = set()
    for path in [*ROOT.glob("app/**/*.py"), *ROOT.glob("config/*.py"), *ROOT.glob("*.py")]:
        read |= set(re.findall(r"os\.environ\.get\(\s*[\"']([A-Z_]+)[\"']", path.read_text()))
        read |= set(re.findall(r"os\.environ\[[\"']([A-Z_]+)[\"']\]", path.read_text()))
    assert read - NAMES == set(), f"read but not declared in config/settings.py: {sorted(read - NAMES)}"
