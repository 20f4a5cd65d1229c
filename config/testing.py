from config.base import BaseConfig


class TestingConfig(BaseConfig):
    """Quieter logs, and no rate limits by default: the suite makes many requests from one address
    (limit tests turn them on; config/settings.py)."""

    NAME = "testing"
    TESTING = True
