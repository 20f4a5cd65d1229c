"""End-to-end throughput against worker processes: the same N sum tasks, submitted over HTTP (wrk,
16 connections) to Tasker under gunicorn (4 processes), completed by one worker of 1, 2 and 4
prefork processes in turn, each on a fresh PostgreSQL database and a private Redis. Prints
tasks/s per size and the speed-up over one process: the scaling curve of this machine.

Usage: python bench/worker_scaling.py [--tasks 3000] [--sizes 1,2,4]
"""

import argparse
import time

from harness import stack, tasker


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--sizes", default="1,2,4")
    args = parser.parse_args()
    rates: dict[int, float] = {}
    for size in (int(n) for n in args.sizes.split(",")):
        with stack() as s, tasker(s, concurrency=size) as t:
            start = time.perf_counter()
            accepted = t.submit(args.tasks)
            t.wait_completed(accepted)
            rates[size] = accepted / (time.perf_counter() - start)
    base = rates[min(rates)]
    curve = " | ".join(f"{size} process{'es' if size > 1 else ''}: {rate:.0f} tasks/s (x{rate / base:.2f})"
                       for size, rate in rates.items())  # fmt: skip
    print(f"worker scaling ({args.tasks} tasks): {curve}")


if __name__ == "__main__":
    main()
