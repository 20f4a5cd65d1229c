"""OpenWeatherMap's current weather, summarised in the fields clients need."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

from app.tasks import http
from app.tasks.errors import TaskFailed

SERVICE = "OpenWeather API"
# Tasker's unit names -> OpenWeatherMap's (which calls kelvin "standard").
UNITS = {"metric": "metric", "imperial": "imperial", "kelvin": "standard"}


@dataclass(frozen=True)
class WeatherSettings:
    base_url: str
    api_key: str
    connect_timeout: float
    read_timeout: float

    @classmethod
    def from_config(cls, config: Any) -> WeatherSettings:
        return cls(
            base_url=config["OPENWEATHER_BASE_URL"],
            api_key=config["OPENWEATHER_API_KEY"],
            connect_timeout=config["OPENWEATHER_CONNECT_TIMEOUT_SECONDS"],
            read_timeout=config["OPENWEATHER_READ_TIMEOUT_SECONDS"],
        )


def current_weather(
    session: requests.Session, settings: WeatherSettings, city: str, units: str
) -> dict[str, Any]:
    """The weather in `city` now; raises TaskFailed (unknown city, bad key) or TransientError."""
    if not settings.api_key:
        raise TaskFailed("OPENWEATHER_API_KEY is not set on the worker, so weather cannot run.")
    response = http.send(
        session,
        "GET",
        f"{settings.base_url}/weather",
        SERVICE,
        (settings.connect_timeout, settings.read_timeout),
        params={"q": city, "appid": settings.api_key, "units": UNITS[units]},
    )
    http.check(response, SERVICE, lambda r: f"City not found: {city}" if r.status_code == 404 else None)
    return summarise(response, units)


def summarise(response: requests.Response, units: str) -> dict[str, Any]:
    try:
        data = response.json()
        main, wind = data["main"], data.get("wind", {})
        return {
            "city": data["name"],
            "country": data.get("sys", {}).get("country"),
            "temperature": main["temp"],
            "feels_like": main.get("feels_like"),
            "humidity": main.get("humidity"),
            "pressure": main.get("pressure"),
            "description": (data.get("weather") or [{}])[0].get("description"),
            "wind_speed": wind.get("speed"),
            "units": units,
        }
    except (ValueError, KeyError, TypeError, AttributeError):
        raise TaskFailed(f"{SERVICE} returned a response without the current weather") from None
