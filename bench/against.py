"""Plain submit throughput of this tree against an earlier revision, in interleaved runs: each round
runs bench/submit.py of one tree, then of the other (the order alternating), so a machine that
drifts (heat, a neighbour) weighs on both alike. It says whether a change to the submit path's
neighbours (workflows, here) cost plain submits anything.

The earlier revision is unpacked with `git archive` into a temporary folder and run with this
tree's venv; each run gets a throwaway database and a private Redis (bench/harness.py).

Usage: python bench/against.py REV [--rounds 3] [--seconds 5] [--connections 16]
"""

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURE = re.compile(r"batched ([\d.]+) req/s.*?unbatched ([\d.]+) req/s")


def unpacked(revision: str, into: Path) -> Path:
    archive = subprocess.run(["git", "archive", revision], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def submit_rates(tree: Path, seconds: float, connections: int) -> tuple[float, float]:
    """(batched, unbatched) requests per second of one run of `tree`'s bench/submit.py."""
    command = [sys.executable, str(tree / "bench" / "submit.py"), "--seconds", str(seconds)]
    command += ["--connections", str(connections)]
    said = subprocess.run(command, cwd=tree, check=True, capture_output=True, text=True).stdout
    found = FIGURE.search(said)
    if found is None:
        raise SystemExit(f"no figure in the output of {tree}:\n{said}")
    return float(found[1]), float(found[2])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("revision", help="the earlier revision, e.g. cded64a^")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    rates: dict[str, list[tuple[float, float]]] = {"earlier": [], "this": []}
    with tempfile.TemporaryDirectory(prefix="tasker-against-") as folder:
        trees = {"earlier": unpacked(args.revision, Path(folder)), "this": ROOT}
        for round_ in range(args.rounds):
            order = ("earlier", "this") if round_ % 2 == 0 else ("this", "earlier")
            for name in order:
                rates[name].append(submit_rates(trees[name], args.seconds, args.connections))
                batched, unbatched = rates[name][-1]
                print(f"round {round_ + 1}, {name}: batched {batched:.0f}, unbatched {unbatched:.0f} req/s")
    medians = {
        name: (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
        for name, runs in rates.items()
    }
    for index, kind in enumerate(("batched", "unbatched")):
        earlier, this = medians["earlier"][index], medians["this"][index]
        print(
            f"{kind}: {args.revision} median {earlier:.0f} req/s, this tree {this:.0f} req/s "
            f"({(this / earlier - 1) * 100:+.1f} %)"
        )


if __name__ == "__main__":
    main()
