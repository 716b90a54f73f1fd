"""Simulated fresh seeds for the verdict's calibration (tests/unit/test_verdict_calibration.py) and its
benchmark (benchmarks/verdict_simulation.py): per-seed effects of the unlearned, poisoned and retrained
models, drawn as the attacks measure them, for many simulated sweeps at once (arrays (sims, n_seeds)).

- Gaussian poisoning (pooled scores): per seed the poisoned effect μ_p ~ N(0.28, 0.08) (the quickstart's
  scale, issue 20), the true removal r ~ N(R, τ), the unlearned effect (1 − r)·μ_p; each model's measured
  effect is the mean of 240 N(μ, 1) GUS scores, drawn directly as N(μ, 1/√240) (se = 1/√240, as
  attacks/gaussian.py logs it); the retrain effect is exactly 0 (RETRAIN_EFFECT).
- Success rates (backdoor, Witches' Brew): per seed and model the true rate is logit-normal with SD σ
  around a centre, each measured as a binomial over the scenario's points with the Wilson se of
  attacks/_surrogate.py rate_metrics. The unlearned centre is solved so that the estimand
  1 − E[m_u − m_r] / E[m_p − m_r] equals R exactly: E[expit(c + σZ)] by 80-point Gauss–Hermite quadrature
  (exact to ~1e-12, where a Monte Carlo solve would leave ~1e-3 of noise in R; a test checks it against a
  large Monte Carlo). The three models' logits are drawn independently (no credit for the unlearned model
  resembling its own poisoned model).
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit, logit
from scipy.stats import beta

from sweeper.report import contrast, stats

POISONS = 240                   # the quickstart's poisons per seed: 20% of 1,197 training images
GAUSS_EFFECT, GAUSS_SD = 0.28, 0.08
# The digits backdoor (experiments/backdoor.yaml): 105-110 triggered points per fresh seed (10% of the
# 1,197 training images held out, those of other classes than the target; measured on seeds 100-102: 105,
# 108, 109), so 108. Its measured rates are 1.000 poisoned and 0.000 retrained on every seed, where
# logit-normal spread is moot; 0.95 / 0.05 keep the test off that degenerate edge.
BACKDOOR = dict(points=108, poisoned=0.95, retrain=0.05)
# Witches' Brew: 4 targets per seed (experiments/witches_brew.yaml). An effective attack is assumed (0.9 of
# targets flipped on θ_poisoned, 0.05 on θ_retrain): at digits scale it does not work at all.
WITCHES = dict(points=4, poisoned=0.9, retrain=0.05)
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(80)


def wilson_se(k, n, z: float = 1.96):
    """(high − low) / (2z) of the Wilson interval, clipped to [0, 1]: rate_metrics's attack/effect_se."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (np.minimum(1.0, centre + half) - np.maximum(0.0, centre - half)) / (2 * z)


def mean_rate(centre: float, sigma: float) -> float:
    """E[expit(centre + σZ)], Z ~ N(0, 1)."""
    return float((_WEIGHTS * expit(centre + sigma * _NODES)).sum() / _WEIGHTS.sum())


def unlearned_centre(removal: float, sigma: float, poisoned: float, retrain: float) -> float:
    """The logit centre c of the unlearned rate with E[m_u] = E[m_r] + (1 − R)(E[m_p] − E[m_r])."""
    e_p, e_r = mean_rate(logit(poisoned), sigma), mean_rate(logit(retrain), sigma)
    goal = e_r + (1 - removal) * (e_p - e_r)
    return brentq(lambda c: mean_rate(c, sigma) - goal, -40, 40, xtol=1e-13)


def gaussian(rng, sims: int, seeds: int, removal: float, tau: float, *, retrain: bool = False) -> dict:
    """Per-seed effects under Gaussian poisoning. retrain=True: the row is retraining itself (its GUS is an
    N(0, 1/√240) draw on a model that never saw the noise: true removal 1)."""
    mu_p = rng.normal(GAUSS_EFFECT, GAUSS_SD, (sims, seeds))
    mu_u = np.zeros_like(mu_p) if retrain else (1 - rng.normal(removal, tau, (sims, seeds))) * mu_p
    se = np.full_like(mu_p, 1 / np.sqrt(POISONS))
    return dict(m_u=mu_u + rng.normal(0, 1, mu_u.shape) * se, se_u=se, m_p=mu_p + rng.normal(0, 1, mu_p.shape) * se,
                se_p=se, m_r=np.zeros_like(mu_p), se_r=np.zeros_like(mu_p))


def rates(rng, sims: int, seeds: int, removal: float, sigma: float, *, points: int, poisoned: float,
          retrain: float, retrain_row: bool = False) -> dict:
    """Per-seed success rates of the three models. retrain_row=True: the row is retraining itself, whose
    unlearned model is the seed's retrained model (m_u = m_r)."""
    def measured(centre):
        k = rng.binomial(points, expit(centre + sigma * rng.standard_normal((sims, seeds))))
        return k / points, wilson_se(k, points)

    m_p, se_p = measured(logit(poisoned))
    m_r, se_r = measured(logit(retrain))
    m_u, se_u = (m_r, se_r) if retrain_row else measured(unlearned_centre(removal, sigma, poisoned, retrain))
    return dict(m_u=m_u, se_u=se_u, m_p=m_p, se_p=se_p, m_r=m_r, se_r=se_r)


def simulate(kind: str, rng, sims: int, seeds: int, removal: float, spread: float, retrain: bool = False) -> dict:
    """kind: "gaussian" (spread = τ), "backdoor" or "witches_brew" (spread = σ)."""
    if kind == "gaussian":
        return gaussian(rng, sims, seeds, removal, spread, retrain=retrain)
    scale = {"backdoor": BACKDOOR, "witches_brew": WITCHES}[kind]
    return rates(rng, sims, seeds, removal, spread, retrain_row=retrain, **scale)


ROUNDS = (3, 6, 12, 24)            # the resolve profile's looks
FIXED = (3, 6, 12)
KINDS = ("gaussian", "backdoor", "witches_brew")


def cell(kind: str, spread: float, removal: float, sims: int = 4000, delta: float = 0.1, alpha: float = 0.025,
         retrain: bool = False) -> tuple[dict, dict]:
    """One simulated cell, from one fixed draw of 24 fresh seeds per sweep (RNG seeded by the cell): the
    per-seed effects, and per design ("3", "6", "12": the first n seeds; "adaptive": ROUNDS with
    Bonferroni) the decisions through sweeper.report.contrast (+1 worse, −1 equivalent, 0 neither), plus
    "adaptive_seeds", the seeds each adaptive sweep used."""
    rng = np.random.default_rng([KINDS.index(kind), round(spread * 10), round(removal * 100), int(retrain)])
    x = simulate(kind, rng, sims, ROUNDS[-1], removal, spread, retrain=retrain)
    out = {str(n): contrast.contrasts(**{k: v[:, :n] for k, v in x.items()}, delta=delta, alpha=alpha).decision
           for n in FIXED}
    seq = contrast.sequential_contrasts(**x, rounds=ROUNDS, delta=delta, alpha=alpha)
    out["adaptive"], out["adaptive_seeds"] = seq.decision, seq.n_used
    return x, out


def old_verdicts(kind: str, x: dict, seeds: int, delta: float = 0.1) -> np.ndarray:
    """Today's verdict on the first `seeds` seeds, through sweeper.report.stats itself: pooled_removal for
    Gaussian poisoning (the GUS sums its rows hold: −m·240 over 240 poisons per seed), t_interval over
    per-seed removals (m_p − m_u)/(m_p − m_r) otherwise; then stats.verdict with accuracy kept."""
    out = []
    n = np.full(seeds, POISONS)
    for i in range(len(x["m_u"])):
        m_u, m_p, m_r = (x[k][i, :seeds] for k in ("m_u", "m_p", "m_r"))
        if kind == "gaussian":  # pooled_removal reads only these two columns' sums
            _, lo, hi = stats.pooled_removal({"gus/sum": -m_u * POISONS, "gus/n_valid": n},
                                             {"gus/sum": -m_p * POISONS, "gus/n_valid": n})
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                _, lo, hi = stats.t_interval(list((m_p - m_u) / (m_p - m_r)))
        out.append(stats.verdict(lo, hi, 0.98, 0.98, delta))
    return np.asarray(out)


def clopper_pearson(k: int, n: int, level: float = 0.99) -> tuple[float, float]:
    """Two-sided Clopper–Pearson interval of a binomial proportion k/n."""
    a = (1 - level) / 2
    lo = beta.ppf(a, k, n - k + 1) if k > 0 else 0.0
    hi = beta.ppf(1 - a, k + 1, n - k) if k < n else 1.0
    return float(lo), float(hi)
