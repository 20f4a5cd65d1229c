from config.base import BaseConfig


class ProductionConfig(BaseConfig):
    NAME = "production"
    DEFAULT_LOG_LEVEL = "WARNING"
    DEFAULT_AUTH_MODE = "keys"
