from config.base import BaseConfig


class ProductionConfig(BaseConfig):
    """API keys, JSON logs and a Secure session cookie by default (config/settings.py)."""

    NAME = "production"
