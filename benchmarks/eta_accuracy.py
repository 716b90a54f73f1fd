"""How good the progress line's estimate of time left is (issue 22): run a sweep, record every estimate the
driver made, and compare each with the time that was really left.

    python benchmarks/eta_accuracy.py [EXPERIMENT] [--profile P] [--workdir DIR]

"x% of the way" is x% of the sweep's wall time from `run_sweep`'s start to its return (Ray's start and the
report included: what a person waiting sees). At each point the estimate in force is the last one made
before it; its error is (estimate − truth) / truth. Base models are trained fresh (a new work directory)."""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from sweeper import config
from sweeper.progress import Board
from sweeper.sweep import run_sweep

POINTS = (0.25, 0.5, 0.75)


def errors(history: list[tuple[float, float, float | None]], start: float, end: float) -> dict[float, tuple]:
    """At each point of POINTS: (seconds truly left, the estimate in force, its relative error)."""
    out = {}
    for p in POINTS:
        t = start + p * (end - start)
        made = [(when, left) for when, _, left in history if when <= t and left is not None]
        truth = end - t
        if made:  # the last estimate, counted down to t (what a person reading it would expect)
            when, left = made[-1]
            estimate = left - (t - when)
            out[p] = (truth, estimate, (estimate - truth) / truth)
        else:
            out[p] = (truth, None, None)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiment", nargs="?", default="quickstart")
    ap.add_argument("--profile")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--trace", help="also write every estimate's parts (per kind: work left, pace) to this JSON file")
    args = ap.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="sweeper-eta-"))
    trace: list[dict] = []
    board = Board(lambda line: trace.append({"t": time.monotonic(), "line": line[:120]}), tty=False)
    update = board.update

    def traced() -> None:  # the estimate's parts at each update, for --trace
        update()
        done, left = board.estimate.work()
        trace.append({"t": time.monotonic(), "left": board.history[-1][2], "kind": board.estimate._kind,
                      "work_left": left, "work_done": done, "rates": board.estimate.rates(),
                      "pace": {k: board.estimate.pace(k, done) for k in left}})
    board.update = traced
    start = time.monotonic()
    run_sweep(config.load(args.experiment, args.profile), workdir=workdir, progress=board)
    end = time.monotonic()
    if args.trace:
        Path(args.trace).write_text(json.dumps({"start": start, "end": end, "trace": trace}, indent=0))
    print(f"{args.experiment} ({args.profile or 'default profile'}): {end - start:.1f} s wall, "
          f"{len(board.history)} estimates")
    for p, (truth, estimate, error) in errors(board.history, start, end).items():
        if estimate is None:
            print(f"  {p:.0%} of the way: {truth:.1f} s left, no estimate yet")
        else:
            print(f"  {p:.0%} of the way: {truth:.1f} s left, estimated {estimate:.1f} s ({error:+.0%})")


if __name__ == "__main__":
    main()
