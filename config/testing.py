from config.base import BaseConfig


class TestingConfig(BaseConfig):
    NAME = "testing"
    TESTING = True
    DEFAULT_LOG_LEVEL = "WARNING"
    RATE_LIMITS_BY_DEFAULT = False  # the suite makes many requests from one address; limit tests turn them on
