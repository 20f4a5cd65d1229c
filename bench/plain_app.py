"""The limit the HTTP benchmarks compare Tasker with: plain Flask endpoints of the same shape
(parse the JSON body or the query string, answer a constant), served with the same gunicorn
settings."""

from flask import Flask, request

app = Flask(__name__)
TASK_UUID = "00000000-0000-4000-8000-000000000000"


@app.post("/run-task")
def run_task() -> dict:
    body = request.get_json()
    assert isinstance(body, dict)
    return {"task_uuid": TASK_UUID}


@app.get("/get-task-output")
def get_task_output() -> dict:
    assert request.args.get("task_uuid")
    return {"task_output": {"status": "COMPLETED", "result": 3, "error": None}}
