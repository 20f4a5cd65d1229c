"""What metrics cost a submit: POST /run-task at 16 connections, metrics on and off, interleaved.

Two Tasker gunicorns (gunicorn.conf.py, 4 processes each) on one throwaway PostgreSQL database and
private Redis: one as shipped (METRICS_ENABLED=true: prometheus-client's multiprocess files, the
request histogram, the submit counter), one with METRICS_ENABLED=false. wrk runs on each in turn,
ROUNDS times (on, off, on, off, ...), so the machine's drift hits both alike; prints each round
and the median ratio on/off. No worker runs.

Usage: python bench/metrics_cost.py [--seconds 10] [--rounds 3]
"""

import argparse
import statistics

from harness import BODY, stack, wrk


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with stack() as s:
        ports = {
            "on": s.gunicorn("run:app", "/health", {"METRICS_ENABLED": "true"}),
            "off": s.gunicorn("run:app", "/health", {"METRICS_ENABLED": "false"}),
        }
        results: dict[str, list] = {"on": [], "off": []}
        for port in ports.values():
            wrk(f"http://127.0.0.1:{port}/run-task", min(2, args.seconds), "POST", BODY)  # warm-up
        for round_ in range(args.rounds):
            for name, port in ports.items():
                load = wrk(f"http://127.0.0.1:{port}/run-task", args.seconds, "POST", BODY)
                results[name].append(load)
                print(f"round {round_ + 1}, metrics {name}: {load}", flush=True)
    on = statistics.median(r.requests_per_second for r in results["on"])
    off = statistics.median(r.requests_per_second for r in results["off"])
    print(
        f"submit with metrics: on {on:.0f} req/s, off {off:.0f} req/s (medians), ratio on/off {on / off:.3f}"
    )


if __name__ == "__main__":
    main()
