"""OpenWeatherMap's current weather, summarised in the fields clients need."""

from __future__ import annotations

from typing import Any

import requests

from app.tasks import http
from app.tasks.errors import TaskFailed

SERVICE = "OpenWeather API"
# Tasker's unit names -> OpenWeatherMap's (which calls kelvin "standard").
UNITS = {"metric": "metric", "imperial": "imperial", "kelvin": "standard"}


def current_weather(
    session: requests.Session, upstream: http.Upstream, city: str, units: str
) -> dict[str, Any]:
    """The weather in `city` now; raises TaskFailed (unknown city, bad key) or TransientError."""
    if not upstream.api_key:
        raise TaskFailed("OPENWEATHER_API_KEY is not set on the worker, so weather cannot run.")
    response = http.send(
        session,
        "GET",
        f"{upstream.base_url}/weather",
        SERVICE,
        upstream.timeout,
        params={"q": city, "appid": upstream.api_key, "units": UNITS[units]},
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
