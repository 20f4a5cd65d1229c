from config.base import BaseConfig


class DevelopmentConfig(BaseConfig):
    NAME = "development"
    DEBUG = False  # the debugger would turn an error into an HTML page, not JSON
