"""POST /run-task at 16 and 64 connections: Tasker against a plain Flask endpoint, same gunicorn
settings, with group commit (SUBMIT_BATCH_MAX, default) and without it (SUBMIT_BATCH_MAX=1).

Starts Tasker under gunicorn (gunicorn.conf.py, 4 processes) twice, on a throwaway PostgreSQL
database and a private redis-server, and bench/plain_app.py the same way; runs wrk on each
for SECONDS (after a 2 s warm-up) and prints one line per connection count: requests/s, p50,
p99, errors, and the ratios Tasker/limit. No worker runs: the messages wait in the private Redis.

With --keys, Tasker runs as it would on a network: AUTH_MODE=keys, rate limits on (in Redis),
the unfinished-tasks quota on, and every request carries an API key whose own rate limit is
high enough never to refuse one; the figure is then the cost of checking them.

With --ceiling a fourth server runs bench/ceiling_app.py: Tasker whose batches are settled
without being written, the rate no way of persisting could beat.

With --broker rabbitmq the messages go to a vhost of the benchmark's own on the machine's
RabbitMQ (publisher confirms on, as always on RabbitMQ) instead of the private Redis.

With --endpoint v1 the submits are POST /api/v1/tasks (a 202 with the task resource) instead
of the reference's POST /run-task; the limit is the same plain Flask endpoint.

Usage: python bench/submit.py [--seconds 10] [--keys] [--connections 16,64] [--broker rabbitmq] [--ceiling]
                              [--endpoint run-task|v1]
"""

import argparse
import contextlib
import subprocess
import sys

from harness import BODY, ROOT, SUBMITS, CpuMeter, rabbit_vhost, stack, wrk

# The servers whose CPU is counted besides the API's, by process name.
BROKERS = {
    "redis": {"postgres": "PostgreSQL", "redis-server": "Redis"},
    "rabbitmq": {"postgres": "PostgreSQL", "beam.smp": "RabbitMQ", "redis-server": "Redis"},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--keys", action="store_true", help="API keys, rate limits and quotas on")
    parser.add_argument("--connections", default="16,64", help="comma-separated wrk connection counts")
    parser.add_argument("--broker", choices=["redis", "rabbitmq"], default="redis")
    parser.add_argument("--ceiling", action="store_true", help="also Tasker with no write (ceiling_app.py)")
    parser.add_argument("--endpoint", choices=sorted(SUBMITS), default="run-task", help="Tasker's submit")
    args = parser.parse_args()
    seconds = args.seconds
    with stack() as s, contextlib.ExitStack() as cleanup:
        if args.broker == "rabbitmq":
            s.env["CELERY_BROKER_URL"] = cleanup.enter_context(rabbit_vhost())
        headers: dict[str, str] = {}
        if args.keys:
            s.env.update(
                {"AUTH_MODE": "keys", "RATE_LIMIT_ENABLED": "true", "QUOTA_UNFINISHED_TASKS": "100000000"}
            )
            subprocess.run(
                [sys.executable, "init_db.py"], cwd=ROOT, env=s.env, check=True, capture_output=True
            )
            made = subprocess.run(
                [sys.executable, "-m", "flask", "--app", "run", "keys", "create", "--name", "bench",
                 "--rate-limit", "1000000/second"],
                cwd=ROOT, env=s.env, check=True, capture_output=True, text=True,
            )  # fmt: skip
            headers["Authorization"] = f"Bearer {made.stdout.strip()}"
        servers = {}
        apps = [
            ("batched", "run:app", "/health", None),
            ("unbatched", "run:app", "/health", {"SUBMIT_BATCH_MAX": "1"}),
            ("plain Flask", "bench.plain_app:app", "/get-task-output?task_uuid=x", None),
        ]
        if args.ceiling:
            apps.append(("no write", "bench.ceiling_app:app", "/health", None))
        for name, app, ready, env in apps:
            # No restart after max_requests during the run: the CPU meter counts live processes.
            port = s.gunicorn(app, ready, {"GUNICORN_CMD_ARGS": "--max-requests 0", **(env or {})})
            servers[name] = (port, s.started[-1].pid)
        mode = ("keys+limits" if args.keys else "open") + ("" if args.broker == "redis" else ", RabbitMQ")
        mode += "" if args.endpoint == "run-task" else f", {args.endpoint}"
        path, body = SUBMITS[args.endpoint]
        for connections in (int(c) for c in args.connections.split(",")):
            results, cpu = {}, {}
            for name, (port, pid) in servers.items():
                # The plain Flask endpoint answers any path; it is the limit for both submits.
                url, sent = (f"http://127.0.0.1:{port}{path}", body) if name != "plain Flask" else (
                    f"http://127.0.0.1:{port}/run-task", BODY)  # fmt: skip
                wrk(url, min(2, seconds), "POST", sent, headers, connections)  # warm-up: pools, caches
                meter = CpuMeter({"API": pid}, BROKERS[args.broker])
                meter.start()
                results[name] = wrk(url, seconds, "POST", sent, headers, connections)
                used = meter.stop()
                done = results[name].requests_per_second * max(1, round(seconds))
                cpu[name] = ", ".join(f"{label} {used[label] / done * 1e6:.0f}" for label in used)
            limit = results["plain Flask"].requests_per_second
            print(
                f"submit ({mode}, {connections} connections): batched {results['batched']} | unbatched "
                f"{results['unbatched']} | plain Flask {results['plain Flask']} | ratio batched "
                f"{results['batched'].requests_per_second / limit:.2f}, unbatched "
                f"{results['unbatched'].requests_per_second / limit:.2f}"
            )
            if args.ceiling:
                ceiling = results["no write"]
                print(f"  no write (ceiling): {ceiling} | ratio {ceiling.requests_per_second / limit:.2f}")
            print("  CPU per request (us): " + " | ".join(f"{name}: {text}" for name, text in cpu.items()))


if __name__ == "__main__":
    main()
