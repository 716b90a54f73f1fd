"""From a row's fresh-seed runs to its verdict: each fresh seed's unlearned effect paired with that seed's own
references, the looks of the fresh phase, the accuracy condition at each look (docs/architecture.md,
Statistics and verdicts). The test itself is `contrast`'s; this module only assembles its inputs."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import pandas as pd

from . import contrast
from .stats import EQUIVALENT_ACC, _exact_retrain_effect

ALPHA = contrast.ALPHA  # each side of the verdict, over all looks together (Bonferroni: α / K per look)
BETTER, NOT_BETTER = "better", "not better"  # against scratch at the same budget (summary._judge_scratch)


@dataclass(frozen=True)
class Judged:
    """What the summary row shows of a verdict: the estimate and interval the verdict used, the seeds it
    used (those of the look that decided it, else of the last look held), τ̂, and whether it is still open."""
    verdict: str | None        # worse / equivalent / inconclusive; None: fewer than 3 fresh seeds
    look: int | None           # 1-based look that decided it (frozen there); None while open
    open: bool                 # undecided at the last look evaluated: more seeds could decide it
    seeds: tuple[int, ...]     # the fresh seeds the verdict used
    removal: float
    ci_low: float
    ci_high: float
    tau: float
    t: float
    seeds_needed: float        # open rows: fresh seeds at which D's current mean and spread would decide it
                               # (contrast.margin: a projection, about even odds; inf: none would); else NaN


def seed_table(attack: str, mine: pd.DataFrame, fresh: pd.DataFrame, order: list[int],
               exact_retrain: bool = True) -> pd.DataFrame:
    """One line per fresh seed that has the row's run and both references: m_u, se_u, m_p, se_p, m_r, se_r
    and the test accuracies of the row's model and of retrain, in the order of `order` (the fresh seeds as
    the experiment lists them: looks take them in that order). `exact_retrain`: see stats.attack_worked."""
    cols = ["seed", "attack/effect", "attack/effect_se", "acc/test"]
    u = mine[cols].rename(columns={"attack/effect": "m_u", "attack/effect_se": "se_u", "acc/test": "acc_u"})
    refs = fresh[fresh.method.isin(["none", "retrain"])]
    p = refs[refs.method == "none"][cols[:3]].rename(columns={"attack/effect": "m_p", "attack/effect_se": "se_p"})
    r = refs[refs.method == "retrain"][cols].rename(columns={"attack/effect": "m_r", "attack/effect_se": "se_r",
                                                             "acc/test": "acc_r"})
    t = u.merge(p, on="seed").merge(r, on="seed")
    exact = _exact_retrain_effect(attack) if exact_retrain else None
    if exact is not None:  # known exactly (Gaussian: 0); retrain's own run still gives its accuracy
        t["m_r"], t["se_r"] = exact, 0.0
    rank = {s: i for i, s in enumerate(order)}
    t = t.dropna(subset=["m_u", "se_u", "m_p", "se_p", "m_r", "se_r"])  # a seed the test cannot use (NaN effect)
    t = t[t.seed.isin(rank)].assign(_rank=lambda d: d.seed.map(rank)).sort_values("_rank")
    return t.drop(columns="_rank").reset_index(drop=True)


def kept(acc_u: float, acc_r: float) -> bool:
    """The main verdict's accuracy condition: test accuracy within EQUIVALENT_ACC of the reference's."""
    return acc_u >= acc_r - EQUIVALENT_ACC


def judge(table: pd.DataFrame, order: list[int], looks: list[int], n_looks: int, delta: float,
          accuracy: Callable[[float, float], bool] = kept) -> Judged:
    """The sequential verdict over `looks` (cumulative counts of `order`; `n_looks` of them planned, which
    sets the per-look level) on the seeds of `table`. `accuracy(mean acc_u, mean acc_r)` at a look: the condition
    an equivalent row must also meet there (`kept`; the comparison with scratch asks for more)."""
    within = [table.seed.isin(order[:n]).to_numpy() for n in looks]
    acc_ok = [bool(w.any() and accuracy(table.acc_u[w].mean(), table.acc_r[w].mean())) for w in within]
    arr = {k: table[k].to_numpy(dtype=float) for k in ("m_u", "se_u", "m_p", "se_p", "m_r", "se_r")}
    seq = contrast.sequential(**arr, rounds=[int(w.sum()) for w in within], n_looks=n_looks, delta=delta,
                              alpha=ALPHA, acc_kept=acc_ok)
    used = tuple(int(s) for s in table.seed[: seq.n_used])
    c = seq.contrast
    need = contrast.margin(c).seeds_needed if seq.open else math.nan
    return Judged(seq.verdict, seq.look, seq.open, used, c.removal, c.ci_low, c.ci_high, c.tau, c.t, need)
