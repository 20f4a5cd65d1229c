from config.base import BaseConfig


class ProductionConfig(BaseConfig):
    NAME = "production"
    DEFAULT_LOG_LEVEL = "INFO"  # one access line per request, and each task's start and outcome
    DEFAULT_LOG_FORMAT = "json"
    DEFAULT_AUTH_MODE = "keys"
