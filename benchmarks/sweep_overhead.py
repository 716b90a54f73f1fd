"""Where a sweep's wall time goes: Ray start, base-model training, inside trials (unlearning, the unlearning
of earlier seeds past the budget where ASHA stopped a trial, evaluation) and the rest (scheduling, Tuner
set-up, MLflow, report) and the cores left idle.

    python benchmarks/sweep_overhead.py [EXPERIMENT] [--profile P] [--trials N] [--workdir DIR]

Times are slot-seconds (wall × concurrent trial slots), because trials and base models run in parallel
on every core: a fraction is the share of all the machine's slot time that a part used. Base models
are trained fresh (a new work directory) so their cost is included."""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

from sweeper import config, tuning
from sweeper.sweep import run_sweep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiment", nargs="?", default="quickstart")
    ap.add_argument("--profile")
    ap.add_argument("--trials", type=int)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--timeline", metavar="FILE", help="write the idle cores every 0.5 s beside the sweep's "
                    "progress lines (CSV: seconds, idle cores, the last line said): where the idle time is")
    args = ap.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="sweeper-bench-"))
    exp = config.load(args.experiment, args.profile)

    timers = _time_bookkeeping()
    idle0 = _idle_core_seconds()
    t0 = time.perf_counter()
    tuning.start()
    ray_start = time.perf_counter() - t0
    slots = tuning.slots().concurrent
    t1 = time.perf_counter()
    sampler = _Timeline(t0) if args.timeline else None
    result = run_sweep(exp, workdir=workdir, trials=args.trials, progress=sampler.say if sampler else lambda _: None)
    sweep_wall = time.perf_counter() - t1
    if sampler:
        sampler.write(Path(args.timeline))
    tuning.stop()
    wall = time.perf_counter() - t0
    idle = _idle_core_seconds() - idle0

    rows = pd.read_csv(result.report_dir / "trials.csv")
    searched = rows[~rows.method.isin(["none", "retrain"])]
    last = searched.sort_values("budget").groupby(["method", "trial_id"]).tail(1)
    n_tune = int((last.phase == "tune").sum())
    inside = float(last["trial/seconds"].sum())
    # per-seed means; cost/trial_seconds counts every run of a trial that starts over per checkpoint (scratch,
    # compressed), whose cost/seconds is its last run's alone (rows written before it existed: cost/seconds)
    spent = last["cost/trial_seconds"].fillna(last["cost/seconds"]) if "cost/trial_seconds" in last else last["cost/seconds"]
    unlearning = float((spent * last["n_seeds"]).sum())
    # seeds in step (sweeper/instep.py) leave no unlearning past ASHA's stop; the code before them did
    from sweeper import trial  # (the code under test: an editable install finds a module absent from PYTHONPATH's copy)
    in_step = hasattr(trial, "InStep")
    past_stop = 0.0 if in_step else _past_stop(last, exp.budgets[-1])
    manifests = [json.loads(p.read_text()) for p in (workdir / "base").glob("*/manifest.json")]
    base = sum(sum(m["train_seconds"].values()) for m in manifests)
    refs = float(rows[rows.method.isin(["none", "retrain"])].groupby("trial_id")["trial/seconds"].max().sum())
    total = wall * slots
    parts = {
        "ray start": ray_start * slots,
        "base models (training)": base,
        "trials: unlearning (tuning + fresh)": unlearning,
        "trials: unlearning by earlier seeds past ASHA's stop (estimated)": past_stop,
        "trials: evaluation + loading (incl. references)": inside - unlearning - past_stop + refs,
    }
    # cores that ran nothing at all (the kernel's idle + iowait time, /proc/stat): slots left empty at phase
    # barriers, while the driver alone works (Tuner set-up, MLflow, the report), or waiting on the disk;
    # the machine must be otherwise idle for this to be the sweep's
    parts["idle cores (nothing ran; /proc/stat)"] = min(idle, total) if idle == idle else 0.0
    parts["rest (driver, scheduling, Tuner set-up, MLflow, report on busy cores)"] = total - sum(parts.values())
    import sweeper
    print(f"sweeper from {Path(sweeper.__file__).parent}")
    print(f"experiment {exp.name} (profile {exp.profile}): {len(exp.methods)} methods x "
          f"{args.trials or exp.trials} trials on {len(exp.seeds)} tuning seeds, {len(exp.fresh_seeds)} fresh seeds, "
          f"{slots} slots; wall {wall:.1f}s (sweep {sweep_wall:.1f}s); {n_tune} tuning trials, "
          f"{len(last) - n_tune} fresh runs")
    print(f"{'part':<62}{'slot-s':>9}{'fraction':>10}")
    for name, seconds in parts.items():
        print(f"{name:<62}{seconds:>9.1f}{seconds / total:>10.1%}")
    outside = total - sum(v for k, v in parts.items() if k.startswith(("base models", "trials:")))
    print(f"{'outside trials and base models':<62}{outside:>9.1f}{outside / total:>10.1%}")
    print("\nthe driver's bookkeeping, one by one (wall seconds in the driver; calls):")
    for name, (seconds, calls) in timers.items():
        print(f"  {name:<60}{seconds:>9.2f}{calls:>7}")


class _Timeline:
    """Idle cores sampled every 0.5 s, each beside the last progress line said by then."""

    def __init__(self, t0: float):
        import threading

        self.t0, self.last, self.rows = t0, "", []
        self.stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def say(self, line: str) -> None:
        self.last = line

    def _sample(self) -> None:
        before, t = _idle_core_seconds(), time.perf_counter()
        while not self.stop.wait(0.5):
            now, t2 = _idle_core_seconds(), time.perf_counter()
            self.rows.append((round(t2 - self.t0, 2), round((now - before) / (t2 - t), 2), self.last[:150]))
            before, t = now, t2

    def write(self, path: Path) -> None:
        self.stop.set()
        pd.DataFrame(self.rows, columns=["seconds", "idle_cores", "last_line"]).to_csv(path, index=False)


def _time_bookkeeping() -> dict[str, list]:
    """Wrap the driver's bookkeeping to time it: the listener's MLflow writes and Optuna mirror per Tune event,
    the plain runs' MLflow writes, the summary, the importance computation and the report's rendering. The
    same functions run; only a clock is read around them."""
    import functools

    from sweeper import listener, phases
    from sweeper.report import render
    from sweeper.tuning import studies

    timers: dict[str, list] = {}

    def timed(owner, attr: str, name: str) -> None:
        real = getattr(owner, attr)
        timers[name] = [0.0, 0]

        @functools.wraps(real)
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return real(*a, **k)
            finally:
                timers[name][0] += time.perf_counter() - t
                timers[name][1] += 1
        setattr(owner, attr, wrapper)

    timed(listener.Listener, "trial_started", "tuning trial started (MLflow run created)")
    timed(listener.Listener, "trial_result", "tuning checkpoint (kept for the run's end)")
    timed(listener.Listener, "trial_finished", "tuning trial ended (MLflow writes queued or made, progress)")
    timed(studies.Study, "record", "the Optuna mirror (in the MLflow writer thread since issue 23)")
    timed(phases, "_log_plain", "plain run logged (references, fresh runs)")
    timed(render, "summarize", "report: summary and verdicts")
    timed(render, "importance", "report: parameter importance")
    timed(render, "html_page", "report: html page")
    timed(render, "plot_removal", "report: removal plot")
    timed(render, "plot_pareto", "report: Pareto plot")
    return timers


def _idle_core_seconds() -> float:
    """Seconds all cores spent idle or waiting on I/O since boot (Linux's /proc/stat; NaN elsewhere)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return float("nan")
    return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")


def _past_stop(last: pd.DataFrame, largest: float) -> float:
    """A tuning trial runs its seeds one after another and reports a checkpoint when its last seed reaches
    it (trial.run_trial), so when ASHA stops it at budget b its earlier seeds have already unlearned on to
    the largest budget: inside the trial's seconds, but not in its cost/seconds (the pooled row at b). For
    an anytime method that is (n_seeds − 1) × cost/seconds × (largest − b) / b, at the rate it had up to
    b; a fixed-cost method's cost does not grow with the budget (counted as none). A `scratch` trial on the
    compressed schedule is counted as anytime: an underestimate (its earlier seeds made one run per remaining
    budget)."""
    from sweeper import methods as _methods
    from sweeper.registry import methods

    tune = last[(last.phase == "tune") & (last.budget < largest - 1e-9)]
    anytime = tune[[_methods.kind(methods.get(m)) == "anytime" for m in tune.method]]
    return float(((anytime.n_seeds - 1) * anytime["cost/seconds"] * (largest - anytime.budget) / anytime.budget).sum())


if __name__ == "__main__":
    main()
