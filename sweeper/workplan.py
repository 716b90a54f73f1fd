"""What a sweep's phases will run and have run, told to the estimate of time left (sweeper/progress.py):
every cell's jobs planned before the base models (`plan`), each phase's start (`enter`), each finished job
(`note`, `tune_note`), a look's fresh runs once they are known (`replan`, `planned`). The phases call these
with their progress callable; a plain callable (an API user's `print`) has no estimate and they do nothing."""
from __future__ import annotations

from typing import Callable

from .config import REDUCTION_FACTOR, Experiment
from .progress import Estimate, asha_expectation
from .report.selection import GOLD, IDENTIFIED, REFERENCES


def plan(estimate: Estimate, exp: Experiment, cell_name: Callable[[str, float], str]) -> None:
    """Plan every cell's jobs: references on the tuning seeds; each method's tuning trials at what ASHA is
    expected to let them reach; the first look's fresh runs, re-planned exactly when the look starts.
    Until then a method's fresh runs are two configurations per seed that together evaluate each budget
    once (the selection chooses one configuration per budget) and unlearn halfway between one
    configuration for every budget (the largest budget) and one per budget (their sum)."""
    seeds, budgets = len(exp.seeds), list(exp.budgets)
    fresh = exp.looks[0] if exp.looks else 0
    r_units, r_evals = _relapse_work(exp)
    reached, checkpoints = asha_expectation(budgets, REDUCTION_FACTOR)
    for scenario in exp.scenarios:
        for level in exp.discovery:
            cell = cell_name(scenario.attack, level)
            refs = (len(GOLD) if level == exp.discovery[0] else 0) + (level < 1)
            estimate.plan(f"{cell}/refs", refs, seeds * (level < 1), seeds)
            for m in exp.methods:
                estimate.plan(f"{cell}/{m}/tune", exp.trials, seeds * reached, seeds * checkpoints, stops=True)
            units = (budgets[-1] + sum(budgets)) / 2
            estimate.plan(f"{cell}/fresh", fresh * 2 * len(exp.methods), units / 2 + len(budgets) / 2 * r_units,
                          len(budgets) / 2 * (1 + r_evals))
            estimate.plan(f"{cell}/gold/fresh", fresh * refs, float(level < 1) + r_units, 1 + r_evals)


def _relapse_work(exp: Experiment) -> tuple[float, int]:
    """Units and evaluations relapse adds at each checkpoint of a fresh run (not charged to the method)."""
    return (sum(exp.relapse.lengths), len(exp.relapse.lengths)) if exp.relapse is not None else (0.0, 0)


def planned(exp: Experiment, cfg: dict) -> tuple[float, float]:
    """A fresh job's units and evaluations (one seed): unlearning to its largest selected budget (none for
    the references), its checkpoints, and relapse at each where it is on."""
    checkpoints = len(cfg.get("budgets", [])) if cfg["method"] not in REFERENCES else 1
    units = max(cfg["budgets"]) if cfg["method"] not in REFERENCES else float(cfg["method"] == IDENTIFIED)
    r_units, r_evals = _relapse_work(exp) if "relapse" in cfg else (0.0, 0)
    return units + checkpoints * r_units, checkpoints * (1 + r_evals)


def _estimate(progress) -> Estimate | None:
    return getattr(progress, "estimate", None)


def enter(progress, kind: str) -> None:
    if (est := _estimate(progress)) is not None:
        est.enter(kind)


def skip(progress, group: str, jobs: int) -> None:
    if (est := _estimate(progress)) is not None:
        est.skip(group, jobs)


def replan(progress, group: str, jobs: list[tuple[float, float]]) -> None:
    if (est := _estimate(progress)) is not None:
        est.replan(group, jobs)


def note(progress, group: str, result, n_seeds: int, units: float, evals: float | None = None) -> None:
    """A plain job finished: its units (as planned: a reference's rows carry its nominal cost, not work
    done) and evaluations, and the slot-seconds its trial measured."""
    if (est := _estimate(progress)) is None:
        return
    rows = result if isinstance(result, list) else []
    seconds = rows[-1].get("trial/seconds") if rows else None
    est.finished(group, units, evals if evals is not None else n_seeds * len(rows), seconds)
    progress.update()


def tune_note(progress, group: str, seeds: int) -> Callable[[list[dict]], None]:
    """The listener's hook for a finished tuning trial: units = the cost it reached on each seed."""
    def done(rows: list[dict]) -> None:
        if (est := _estimate(progress)) is None:
            return
        # what the trial spent, in retrains per seed (more than its last budget if it started over per checkpoint)
        units = seeds * float(rows[-1].get("cost/trial_fraction", rows[-1].get("cost/fraction", 0.0))) if rows else 0.0
        est.finished(group, units, seeds * len(rows), rows[-1].get("trial/seconds") if rows else None)
        progress.update()
    return done
