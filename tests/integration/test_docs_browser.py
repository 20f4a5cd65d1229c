"""Swagger UI at /docs in a real browser (Debian's chromium driven by playwright), fully offline."""

from __future__ import annotations

import json


def test_docs_show_every_operation_and_try_it_out_submits_a_task(browser, base, client):
    page = browser.new_page()
    foreign: list[str] = []
    page.on("request", lambda request: None if request.url.startswith(base) else foreign.append(request.url))
    page.goto(f"{base}/docs")
    page.wait_for_selector(".opblock", timeout=20_000)

    document = client.get("/openapi.json").get_json()
    verbs = {"get", "post", "put", "patch", "delete"}
    expected = {(m.upper(), path) for path, item in document["paths"].items() for m in item if m in verbs}
    shown = set()
    for block in page.locator(".opblock").all():
        method = block.locator(".opblock-summary-method").inner_text().strip()
        path = block.locator(".opblock-summary-path").get_attribute("data-path")
        shown.add((method, path))
    assert shown == expected

    submit = page.locator("#operations-tasks-submitTask")  # Swagger UI ids come from operationId
    submit.locator(".opblock-summary").click()
    submit.get_by_role("button", name="Try it out").click()
    submit.locator("textarea.body-param__text").fill(
        json.dumps({"name": "sum", "parameters": {"a": 2, "b": 3}})
    )
    submit.get_by_role("button", name="Execute").click()
    live = submit.locator(".live-responses-table .response")
    live.wait_for(timeout=20_000)
    assert live.locator(".response-col_status").first.inner_text().strip() == "202"
    task = json.loads(submit.locator(".live-responses-table .microlight").first.inner_text())
    assert (task["name"], task["parameters"]) == ("sum_two_numbers", {"a": 2, "b": 3})
    assert client.get(f"/api/v1/tasks/{task['id']}").status_code == 200
    assert foreign == [], f"the page fetched from outside Tasker: {foreign}"
