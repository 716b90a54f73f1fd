"""Intervals and tests of the report: is a method's removal as good as retraining's, and how sure are we?
(docs/architecture.md, Statistics and verdicts.)"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from ..metrics import EQUIVALENT_ACC  # noqa: F401  (re-exported: report.EQUIVALENT_ACC)
from ..registry import attacks
from .selection import REFERENCES

EFFECTIVE_SE = 3.0      # removal is computed only when poisoned − retrain effect exceeds 3 standard errors
# The verdict's test (docs/architecture.md, Statistics and verdicts): SEED_CONTRAST, a one-sample t test over
# fresh seeds of each seed's contrast against its own references (report.contrast), valid whatever the
# seed-to-seed spread of removal. T_TEST and POOLED_GUS name the intervals of earlier reports: a t interval of
# per-seed removals, and for Gaussian poisoning every poison of the fresh seeds pooled (kept as the
# descriptive `removal_pooled*` columns: it assumes every seed removes the same fraction, so it is no test).
T_TEST, POOLED_GUS, SEED_CONTRAST = "t over seeds", "pooled GUS", "seed contrast t"


def t_interval(values) -> tuple[float, float, float]:
    """Mean and Student-t 95% interval; NaN bounds with fewer than two finite values."""
    x = np.asarray([v for v in values if isinstance(v, (int, float)) and math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    if len(x) < 2:
        return float(x.mean()), math.nan, math.nan
    half = student_t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def noninferior(ci_low: float, acc: float, retrain_acc: float, delta: float) -> bool:
    """docs/architecture.md, Statistics and verdicts: "equivalent to retrain" is the lower 95% bound of removal above
    1 − δ and accuracy within EQUIVALENT_ACC of retrain's."""
    return bool(math.isfinite(ci_low) and ci_low > 1 - delta and acc >= retrain_acc - EQUIVALENT_ACC)


def verdict(ci_low: float, ci_high: float, acc: float, retrain_acc: float, delta: float) -> str:
    """The three-way answer against retraining at margin δ (docs/architecture.md, Statistics and verdicts):
    `equivalent` (lower 95% bound of removal above 1 − δ and accuracy kept), `worse` (upper bound below 1 − δ:
    significantly short of retraining, the paper's claim), else `inconclusive` (too few seeds, or too noisy,
    to say either)."""
    if noninferior(ci_low, acc, retrain_acc, delta):
        return "equivalent"
    if math.isfinite(ci_high) and ci_high < 1 - delta:
        return "worse"
    return "inconclusive"


def _exact_retrain_effect(attack: str) -> float | None:
    """The attack's known effect on a retrained model (0 for Gaussian noise), None when it must be measured."""
    return getattr(attacks.get(attack), "RETRAIN_EFFECT", None) if attack in attacks else None


def test_for(attack: str, fresh: pd.DataFrame) -> str:
    """POOLED_GUS where every poison has a GUS score and the retrain effect is exactly 0, else T_TEST."""
    exact = _exact_retrain_effect(attack)
    return POOLED_GUS if exact == 0 and "gus/sum" in fresh and fresh["gus/sum"].notna().any() else T_TEST


def pooled_removal(mine: pd.DataFrame, poisoned: pd.DataFrame) -> tuple[float, float, float]:
    """Removal 1 − m_u / m_p from GUS pooled over every poison of the fresh seeds (m = −mean score, each
    score N(0, 1) given its model, so SE(m) = 1/√N), with a delta-method 95% interval."""
    n_u, n_p = float(mine["gus/n_valid"].sum()), float(poisoned["gus/n_valid"].sum())
    if n_u == 0 or n_p == 0:
        return math.nan, math.nan, math.nan
    m_u, m_p = -float(mine["gus/sum"].sum()) / n_u, -float(poisoned["gus/sum"].sum()) / n_p
    if not m_p > 0:
        return math.nan, math.nan, math.nan
    r = 1 - m_u / m_p
    se = math.sqrt((1 / n_u) / m_p**2 + (m_u**2 / m_p**4) / n_p)
    return r, r - 1.96 * se, r + 1.96 * se


def resolution(summary: pd.DataFrame, delta: float = 0.1) -> pd.DataFrame:
    """Per attack: the smallest δ this sweep can resolve and, roughly, the fresh seeds δ = `delta` would need.
    The retrain row is a method exactly as good as retraining: it reads "equivalent" at margin δ only when
    its lower bound exceeds 1 − δ, so the smallest such δ is 1 − its lower bound; the seeds needed scale its
    interval's half-width as a t interval's (a projection, not a promise). Also how many searched rows are
    still open (undecided at the last look)."""
    out = []
    searched = summary[~summary.method.isin(REFERENCES)]
    for attack, g in summary[summary.method == "retrain"].groupby("attack", sort=True):
        r = g.iloc[0]
        n = int(r.n_fresh) if pd.notna(r.n_fresh) else 0
        lo, hi = r.removal_ci_low, r.removal_ci_high
        smallest = 1 - lo if pd.notna(lo) and math.isfinite(lo) else math.nan
        half = (hi - lo) / 2 if pd.notna(lo) and pd.notna(hi) and math.isfinite(hi - lo) else math.nan
        mine = searched[searched.attack == attack]
        open_rows = int(mine.verdict_open.fillna(False).astype(bool).sum()) if "verdict_open" in mine else 0
        out.append({"attack": attack, "test": r.get("verdict_test") or SEED_CONTRAST, "n_fresh": n,
                    "smallest_delta": smallest, f"fresh_seeds_for_delta_{delta:g}": _seeds_needed(half, n, delta),
                    "rows_open": open_rows, "rows_judged": int(mine.verdict.isin(["worse", "equivalent", "inconclusive"]).sum())})
    return pd.DataFrame(out)


def _seeds_needed(half: float, n: int, delta: float) -> float:
    """Fresh seeds at which an interval of half-width `half` from `n` seeds would fall below `delta`, its
    per-seed spread held at the estimate and scaled as a t interval's (a projection)."""
    if not math.isfinite(half) or n < 2:
        return math.nan
    sd = half * math.sqrt(n) / student_t.ppf(0.975, n - 1)
    k = 2
    while student_t.ppf(0.975, k - 1) * sd / math.sqrt(k) >= delta and k < 10_000:
        k += 1
    return float(k)


def pooled_z(rows: pd.DataFrame, prefix: str = "") -> float:
    """GUS z-score of all poisons in `rows` together: the sum of their N(0, 1) scores over √N. `prefix`:
    of a subset of the poisons (`identified/`, `unidentified/`: the trial's discovery parts)."""
    total, n = f"{prefix}gus/sum", f"{prefix}gus/n_valid"
    if total not in rows or rows[n].sum() == 0:
        return math.nan
    return float(rows[total].sum() / math.sqrt(rows[n].sum()))


def attack_worked(refs: pd.DataFrame, attack: str, exact_retrain: bool = True) -> bool | None:
    """docs/architecture.md, Removal: m_poisoned − m_retrain above EFFECTIVE_SE standard errors, pooled
    over the seeds in `refs`; None when a reference it needs was not measured (its runs failed): then
    nobody can say. `exact_retrain` False: the `retrain` rows' effect is measured even where the attack
    knows retraining's exactly (the rows are another reference's: retrain_identified)."""
    none, retrain = refs[refs.method == "none"], refs[refs.method == "retrain"]
    if none.empty:
        return None
    exact = _exact_retrain_effect(attack) if exact_retrain else None
    se2 = float((none["attack/effect_se"] ** 2).sum()) / len(none) ** 2
    if exact is None:
        if retrain.empty:
            return None
        m_retrain = float(retrain["attack/effect"].mean())
        se2 += float((retrain["attack/effect_se"] ** 2).sum()) / len(retrain) ** 2
    else:
        m_retrain = exact
    gap = float(none["attack/effect"].mean()) - m_retrain
    return math.isfinite(gap) and math.isfinite(se2) and gap > EFFECTIVE_SE * math.sqrt(se2)
