from config.base import BaseConfig


class TestingConfig(BaseConfig):
    NAME = "testing"
    TESTING = True
    DEFAULT_LOG_LEVEL = "WARNING"
