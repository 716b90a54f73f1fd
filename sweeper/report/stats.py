"""Intervals and tests of the report: is a method's removal as good as retraining's, and how sure are we?
(docs/architecture.md, Statistics and verdicts.)"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from ..registry import attacks

EFFECTIVE_SE = 3.0      # removal is computed only when poisoned − retrain effect exceeds 3 standard errors
EQUIVALENT_ACC = 0.02   # "equivalent to retrain" also needs test accuracy within 0.02 of retrain's
# Which test each verdict uses, and why (docs/architecture.md, Statistics and verdicts). Removal per fresh seed
# is always paired with that seed's own references (trial.SeedEvaluator). "t over seeds": a Student-t 95% interval of the
# per-seed removals; the only valid choice when the effect of a seed is one number with seed-to-seed spread
# (success rates, error rates). "pooled GUS": for Gaussian poisoning every poison's score is an exact N(0, 1)
# draw on a model that never saw its noise (m_retrain := 0), so removal = 1 − m_unlearned / m_poisoned with both
# means pooled over all poisons of the fresh seeds and a delta-method 95% interval. With 3 seeds x 240
# poisons that interval is ~2x narrower than the t interval over 3 per-seed values (whose t quantile is
# 4.3); it describes these fresh seeds' poisons, not a new draw of seeds.
T_TEST, POOLED_GUS = "t over seeds", "pooled GUS"


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
    """Per attack: the smallest δ this sweep can resolve and the fresh seeds δ = `delta` would need. A
    method exactly as good as retraining is called equivalent only if its lower bound, 1 − half-width,
    exceeds 1 − δ; the half-width it would get is estimated by the retrain row's own (same test)."""
    out = []
    for attack, g in summary[summary.method == "retrain"].groupby("attack", sort=True):
        r = g.iloc[0]
        n = int(r.n_fresh) if pd.notna(r.n_fresh) else 0
        pooled = r.get("verdict_test") == POOLED_GUS
        lo, hi = (r.removal_pooled_ci_low, r.removal_pooled_ci_high) if pooled else (r.removal_ci_low, r.removal_ci_high)
        half = (hi - lo) / 2 if pd.notna(lo) and pd.notna(hi) else math.nan
        out.append({"attack": attack, "test": r.get("verdict_test") or T_TEST, "n_fresh": n,
                    "smallest_delta": half, f"fresh_seeds_for_delta_{delta:g}": _seeds_needed(half, n, pooled, delta)})
    return pd.DataFrame(out)


def _seeds_needed(half: float, n: int, pooled: bool, delta: float) -> float:
    """Fresh seeds whose half-width would fall below `delta`: 1/√n scaling (pooled poisons), or the
    t interval's (per-seed sd held at its estimate)."""
    if not math.isfinite(half) or n < 2:
        return math.nan
    if pooled:
        return float(max(2, math.ceil(n * (half / delta) ** 2)))
    sd = half * math.sqrt(n) / student_t.ppf(0.975, n - 1)
    k = 2
    while student_t.ppf(0.975, k - 1) * sd / math.sqrt(k) >= delta and k < 10_000:
        k += 1
    return float(k)


def pooled_z(rows: pd.DataFrame) -> float:
    """GUS z-score of all poisons in `rows` together: the sum of their N(0, 1) scores over √N."""
    if "gus/sum" not in rows or rows["gus/n_valid"].sum() == 0:
        return math.nan
    return float(rows["gus/sum"].sum() / math.sqrt(rows["gus/n_valid"].sum()))


def attack_worked(refs: pd.DataFrame, attack: str) -> bool | None:
    """docs/architecture.md, Removal: m_poisoned − m_retrain above EFFECTIVE_SE standard errors, pooled
    over the seeds in `refs`; None when a reference it needs was not measured (its runs failed): then
    nobody can say."""
    none, retrain = refs[refs.method == "none"], refs[refs.method == "retrain"]
    if none.empty:
        return None
    exact = _exact_retrain_effect(attack)
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
