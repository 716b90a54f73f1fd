"""Per-method views of a summary (report.summary): the answer over each method's budgets in words, against
retraining and against retraining from scratch (`equivalence.csv`), the Pareto front, and hyperparameter
importance over its tuning trials (docs/architecture.md, Statistics and verdicts)."""
from __future__ import annotations

import json
import math

import pandas as pd

from .judge import BETTER, NOT_BETTER
from .selection import REFERENCES, SCRATCH, _usable

MIN_TRIALS_FOR_IMPORTANCE = 20


def pareto_front(summary: pd.DataFrame) -> list[bool]:
    """Non-dominated (removal up, cost down) among rows that keep accuracy (status ok), per attack."""
    flags = []
    for _, r in summary.iterrows():
        if r.get("status") != "ok" or not math.isfinite(r.get("removal", math.nan)):
            flags.append(False)
            continue
        level = summary.discovery == r.discovery if "discovery" in summary else True
        peers = summary[(summary.attack == r.attack) & level & (summary.status == "ok")]
        dominated = ((peers.cost_fraction <= r.cost_fraction) & (peers.removal >= r.removal)
                     & ((peers.cost_fraction < r.cost_fraction) | (peers.removal > r.removal))).any()
        flags.append(not dominated)
    return flags


def equivalence(summary: pd.DataFrame) -> pd.DataFrame:
    """Per (attack, method): the three-way answer over its budgets, in words ("equivalent from budget b",
    "worse at every budget", "worse at b1, b2; inconclusive at b3", "inconclusive"), and the smallest
    equivalent budget (empty when there is none)."""
    out = []
    searched = summary[~summary.method.isin(REFERENCES)]
    for (attack, level, method), g in searched.groupby(["attack", "discovery", "method"], sort=True):
        eq = g[g.verdict == "equivalent"]
        better = g[g.vs_scratch == BETTER] if "vs_scratch" in g else g.iloc[:0]
        out.append({"attack": attack, "discovery": level, "method": method, "verdict": _in_words(g),
                    "smallest_equivalent_budget": f"{eq.budget.min():g}" if not eq.empty else "",
                    "best_removal": g.removal.max(), "tuning_cost_retrains": g.tuning_cost_retrains.iloc[0],
                    "vs_scratch": _scratch_in_words(g, method),
                    "better_than_scratch_from": f"{better.budget.min():g}" if not better.empty else ""})
    return pd.DataFrame(out)


def _scratch_in_words(g: pd.DataFrame, method: str) -> str:
    """Whether the method ever beats retraining from scratch at equal cost, and from which budget: "better from
    budget b", else each answer with its budgets ("not better at 0.02; inconclusive at 0.04, 0.06"), "... at every
    budget" when one answer holds at all of them."""
    if method == SCRATCH:
        return "(the baseline)"
    judged = g[g.vs_scratch.isin([BETTER, NOT_BETTER, "inconclusive"])] if "vs_scratch" in g else g.iloc[:0]
    if judged.empty:
        return "no comparison"
    better = judged[judged.vs_scratch == BETTER]
    if not better.empty:
        return f"better from budget {better.budget.min():g}"
    answers = [(v, judged[judged.vs_scratch == v].budget) for v in (NOT_BETTER, "inconclusive")]
    answers = [(v, b) for v, b in answers if not b.empty]
    if len(answers) == 1 and len(judged) == len(g):
        return f"{answers[0][0]} at every budget"
    return "; ".join(f"{v} at {', '.join(f'{x:g}' for x in b)}" for v, b in answers)


def _in_words(g: pd.DataFrame) -> str:
    judged = g[g.verdict.isin(["equivalent", "worse", "inconclusive"])]
    if judged.empty:
        return "no verdict (" + ", ".join(sorted(set(g.status.dropna()))) + ")"
    eq = judged[judged.verdict == "equivalent"]
    if not eq.empty:
        return f"equivalent from budget {eq.budget.min():g}"
    worse = judged[judged.verdict == "worse"]
    if len(worse) == len(judged):
        return "worse at every budget" if len(judged) == len(g) else \
            f"worse at every judged budget ({', '.join(f'{b:g}' for b in worse.budget)})"
    if worse.empty:
        return "inconclusive"
    rest = judged[judged.verdict == "inconclusive"]
    return (f"worse at {', '.join(f'{b:g}' for b in worse.budget)}; "
            f"inconclusive at {', '.join(f'{b:g}' for b in rest.budget)}")


def importance(tune: pd.DataFrame, space_of) -> pd.DataFrame:
    """Per method, Optuna's parameter importances over its tuning trials' final objectives; below
    MIN_TRIALS_FOR_IMPORTANCE trials it says so instead of printing noise."""
    from .. import spaces

    out = []
    searched = _usable(tune[~tune.method.isin(REFERENCES)])
    if "discovery" not in searched:
        searched = searched.assign(discovery=1.0)
    for (attack, level, method), g in searched.groupby(["attack", "discovery", "method"], sort=True):
        final = g.sort_values("budget").groupby("trial_id").tail(1)
        if len(final) < MIN_TRIALS_FOR_IMPORTANCE:
            out.append({"attack": attack, "discovery": level, "method": method, "parameter": "-",
                        "importance": f"too few trials ({len(final)} < {MIN_TRIALS_FOR_IMPORTANCE})"})
            continue
        trials = [(json.loads(h), v) for h, v in zip(final.hparams, final.objective)]
        try:
            scores = spaces.importances(space_of(method), trials)
        except Exception as e:  # a space edited since the sweep ran, a constant objective, ...
            scores = {"-": f"not computed ({type(e).__name__})"}
        out += [{"attack": attack, "discovery": level, "method": method, "parameter": k,
                 "importance": round(v, 3) if isinstance(v, float) else v} for k, v in scores.items()]
    return pd.DataFrame(out, columns=["attack", "discovery", "method", "parameter", "importance"])


