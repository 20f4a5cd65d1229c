"""Pick the configuration class for an environment name (APP_ENV)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from config.base import BaseConfig, ConfigError, hide_password
from config.development import DevelopmentConfig
from config.production import ProductionConfig
from config.testing import TestingConfig

CONFIGS: dict[str, type[BaseConfig]] = {
    "development": DevelopmentConfig,
    "production": ProductionConfig,
    "testing": TestingConfig,
}

__all__ = ["CONFIGS", "ConfigError", "hide_password", "load_config"]


def load_config(name: str | None = None, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Return the settings of environment `name` (default: $APP_ENV, else development)."""
    env = os.environ if env is None else env
    name = (name or env.get("APP_ENV", "").strip() or "development").lower()
    if name not in CONFIGS:
        raise ConfigError(f"APP_ENV must be one of {', '.join(CONFIGS)}, got {name!r}")
    return CONFIGS[name].from_env(env)
