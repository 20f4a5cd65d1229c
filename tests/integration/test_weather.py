"""The weather task against a real local HTTP server at OPENWEATHER_BASE_URL."""

from __future__ import annotations

import json
import time

from werkzeug import Request, Response

from tests.support import wait_for_output

PATH = "/owm/weather"


def owm_body(city="London", temp=11.3):
    return {
        "name": city,
        "sys": {"country": "GB"},
        "main": {"temp": temp, "feels_like": 10.1, "humidity": 81, "pressure": 1012},
        "weather": [{"description": "light rain"}],
        "wind": {"speed": 4.6},
    }


class Script:
    def __init__(self, *steps):
        self.steps = steps
        self.calls = []

    def __call__(self, request: Request) -> Response:
        status, body, headers = self.steps[min(len(self.calls), len(self.steps) - 1)]
        self.calls.append({"at": time.monotonic(), "args": dict(request.args)})
        return Response(json.dumps(body), status=status, headers=headers, content_type="application/json")


def serve(openai, *steps) -> Script:
    script = Script(*steps)
    openai.expect_request(PATH, method="GET").respond_with_handler(script)
    return script


def run(client, parameters):
    response = client.post("/api/v1/tasks", json={"name": "weather", "parameters": parameters})
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["queue"] == "external_api"
    return wait_for_output(client, response.get_json()["id"])


def test_current_weather(client, worker, openai):
    script = serve(openai, (200, owm_body(), {}))
    output = run(client, {"city": "London", "units": "imperial"})
    assert output == {
        "status": "COMPLETED",
        "result": {
            "city": "London", "country": "GB", "temperature": 11.3, "feels_like": 10.1, "humidity": 81,
            "pressure": 1012, "description": "light rain", "wind_speed": 4.6, "units": "imperial",
        },
        "error": None,
    }  # fmt: skip
    assert script.calls[0]["args"] == {"q": "London", "appid": "owm-test-key", "units": "imperial"}


def test_kelvin_is_openweathers_standard_and_metric_the_default(client, worker, openai):
    script = serve(openai, (200, owm_body(), {}))
    assert run(client, {"city": "London", "units": "kelvin"})["result"]["units"] == "kelvin"
    assert run(client, {"city": "London"})["result"]["units"] == "metric"
    assert [call["args"]["units"] for call in script.calls] == ["standard", "metric"]


def test_an_unknown_city_fails_at_once(client, worker, openai):
    script = serve(openai, (404, {"cod": "404", "message": "city not found"}, {}))
    output = run(client, {"city": "Atlantis"})
    assert (output["status"], output["error"]) == ("FAILED", "City not found: Atlantis")
    assert len(script.calls) == 1


def test_429_then_success(client, worker, openai):
    script = serve(
        openai, (429, {"message": "slow down"}, {"Retry-After": "1"}), (200, owm_body(temp=3.0), {})
    )
    output = run(client, {"city": "London"})
    assert (output["status"], output["result"]["temperature"]) == ("COMPLETED", 3.0)
    assert len(script.calls) == 2 and script.calls[1]["at"] - script.calls[0]["at"] >= 1.0


def test_a_bad_key_fails_with_the_upstream_reason_and_keeps_the_key_out(client, worker, openai):
    message = "Invalid API key. Please see https://openweathermap.org/faq#error401 for more info."
    script = serve(openai, (401, {"cod": 401, "message": message}, {}))
    output = run(client, {"city": "London"})
    assert (output["status"], output["error"]) == ("FAILED", f"OpenWeather API returned HTTP 401: {message}")
    assert "owm-test-key" not in output["error"]
    assert len(script.calls) == 1
