"""The verdict against retraining: a t test over fresh seeds on a linear contrast, valid whatever the seeds
do (docs/architecture.md, Statistics and verdicts).

Per fresh seed s, with m the attack's effect (larger = more poison) on the unlearned model (u), that
seed's poisoned model (p) and its retrained model (r):

    D_s = (m_u − m_r) − δ·(m_p − m_r)

Its mean is (1 − R − δ)·E[m_p − m_r] with R = 1 − E[m_u − m_r] / E[m_p − m_r], the removal this module
estimates and prints (a ratio of means, never a mean of per-seed ratios, which is unstable on seeds whose
gap m_p − m_r is near 0). A one-sample t test on D_s (df = n − 1) decides "worse" (D significantly > 0,
removal below 1 − δ) and "equivalent on removal" (D significantly < 0), each one-sided at α. Seeds are
independent draws of (poison, base model, data order), so the test holds for any seed-to-seed spread τ
of the true removal; nothing is pooled within a seed.

The removal's interval is Fieller's (Fieller 1954) from the same t at the same level (two-sided 1 − 2α):
the set of ρ for which the t test of a_s − ρ·g_s (a = m_p − m_u, g = m_p − m_r) does not reject. D is
−(a − (1 − δ)·g), so "worse" ⇔ upper bound < 1 − δ and "equivalent on removal" ⇔ lower bound > 1 − δ
whenever the set is a bounded interval. It is bounded exactly when the gap g itself is significant at that
level; otherwise it is a union of two rays or the whole line, reported as (−inf, +inf) with
`bounded` False, and the verdict still comes from the D test.

Variance floor. The variance used for a_s − ρ·g_s is max(s², w(ρ)), s² the seeds' sample variance and
w(ρ) = mean_s(se_u² + (1 − ρ)²·se_p² + ρ²·se_r²) the within-seed variance from each run's own
`attack/effect_se`; for D that is w(1 − δ) = mean_s(se_u² + δ²·se_p² + (1 − δ)²·se_r²). Flooring only
widens, so the test stays valid, and seeds that agree exactly (rates of 0 or 1) never give a zero width.
Deviation from issue 20, which asked for Agresti–Coull for rates: the floor uses the attack's own logged
effect_se (Wilson half-width / 1.96 for success rates, positive at rates 0 and 1; 1/√N for Gaussian GUS),
which sweeps written before this change already hold.

Fewer than MIN_SEEDS fresh seeds, or a mean gap ≤ 0 (the attack did not work; the D test's sign would
flip), give no verdict; the interval is still computed from 2 seeds.

τ̂ (description only, never used to narrow anything): if the per-seed removal r_s is independent of g_s,
Var(a_s − R·g_s) = E[g²]·τ² + within-seed noise, so τ̂ = sqrt(max(0, s²(R̂) − w(R̂)) / mean_s(g_s²)), a
moment estimate with R̂ plugged in.

Sequential looks (adaptive fresh seeds): looks after cumulative seed counts `rounds`, e.g. (3, 6, 12, 24);
each look tests at α/K per side, K the looks planned (Bonferroni: the chance that any look errs is at most
the sum of the looks' chances, whatever their correlation; Jennison & Turnbull 2000). A row's verdict is
frozen at the look that decides it; later seeds are ignored for that row. A row equivalent on removal at a
look whose accuracy was lost stops there too: decided "not equivalent" (verdict INCONCLUSIVE, reason
ACCURACY). One round (n,) is the fixed design at α.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
from scipy.stats import t as student_t

from ..errors import SweeperError

DELTA = 0.1        # default margin: "as good as retraining" means removal above 1 − δ
ALPHA = 0.025      # one-sided level of each side of the test
MIN_SEEDS = 3      # fewer fresh seeds: no verdict (the t quantile at 1 df is 12.7; one seed has no spread)
WORSE, EQUIVALENT, INCONCLUSIVE = "worse", "equivalent", "inconclusive"
# Why a sequential row ended where it did (SequentialVerdict.reason).
REMOVAL, ACCURACY, OPEN, TOO_FEW, NO_GAP = "removal", "accuracy", "open", "too few seeds", "no gap"
_INPUTS = ("m_u", "se_u", "m_p", "se_p", "m_r", "se_r")


@dataclass(frozen=True)
class Contrasts:
    """The vectorised result: one entry per row of the inputs' leading shape."""
    n: np.ndarray          # fresh seeds used (all six inputs finite)
    removal: np.ndarray    # R̂ = mean(a) / mean(g)
    ci_low: np.ndarray     # Fieller bounds at two-sided 1 − 2α; ±inf when unbounded, NaN below 2 seeds
    ci_high: np.ndarray
    bounded: np.ndarray    # the gap is significant: the Fieller set is an interval
    d_mean: np.ndarray     # mean of D_s
    d_se: np.ndarray       # sqrt(max(s²_D, within) / n)
    t: np.ndarray          # d_mean / d_se: > t_crit "worse", < −t_crit "equivalent on removal"
    t_crit: np.ndarray     # t quantile 1 − α at n − 1 df
    floored: np.ndarray    # the within-seed floor set D's variance
    tau: np.ndarray        # τ̂, descriptive
    gap: np.ndarray        # mean(m_p − m_r)
    decision: np.ndarray   # +1 worse, −1 equivalent on removal, 0 neither or not judged
    judged: np.ndarray     # n ≥ min_seeds and gap > 0: a verdict may be given


@dataclass(frozen=True)
class Contrast:
    """One row's contrast (see `contrast`)."""
    n: int
    removal: float
    ci_low: float
    ci_high: float
    bounded: bool
    d_mean: float
    d_se: float
    t: float
    t_crit: float
    floored: bool
    tau: float
    gap: float
    verdict_by_removal: str | None   # WORSE, EQUIVALENT (on removal only: accuracy is the caller's) or None
    delta: float
    alpha: float


def contrasts(m_u, se_u, m_p, se_p, m_r=0.0, se_r=0.0, *, delta: float = DELTA, alpha: float = ALPHA,
              min_seeds: int = MIN_SEEDS) -> Contrasts:
    """The vectorised core: inputs broadcast to shape (..., n_seeds), seeds on the last axis; a seed with any
    non-finite input (a failed run: NaN) is left out of its row. For Gaussian poisoning pass m_r = se_r = 0
    (its retrain effect is exactly 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        n, a_bar, g_bar, g2, sample, within = _moments(m_u, se_u, m_p, se_p, m_r, se_r)
        q = np.where(n >= 2, student_t.ppf(1 - alpha, np.maximum(n - 1, 1)), np.nan)
        rho0 = 1 - delta  # D_s = −(a_s − (1 − δ)·g_s)
        s2_d, w_d = _quad(sample, rho0), _quad(within, rho0)
        d_se = np.sqrt(np.maximum(s2_d, w_d) / n)
        d_mean = -(a_bar - rho0 * g_bar)
        t = d_mean / d_se
        judged = (n >= min_seeds) & (g_bar > 0) & (d_se > 0)
        decision = np.where(judged & (t > q), 1, np.where(judged & (t < -q), -1, 0))
        removal = a_bar / g_bar
        lo, hi, bounded = _interval(n, a_bar, g_bar, q, sample, within)
        excess = np.maximum(_quad(sample, removal) - _quad(within, removal), 0.0)
        tau = np.sqrt(excess / g2)
    return Contrasts(n=n, removal=removal, ci_low=lo, ci_high=hi, bounded=bounded, d_mean=d_mean, d_se=d_se,
                     t=t, t_crit=q, floored=w_d > s2_d, tau=tau, gap=g_bar, decision=decision, judged=judged)


def _moments(*inputs):
    """Per row over its finite seeds: n, mean(a), mean(g), mean(g²), and the three moments (A, B, C) of the
    sample variance s²(ρ) and of the within-seed variance w(ρ) of a − ρ·g, each as A − 2Bρ + Cρ²."""
    x = dict(zip(_INPUTS, np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, float)) for v in inputs))))
    valid = np.logical_and.reduce([np.isfinite(v) for v in x.values()])
    z = {k: np.where(valid, v, 0.0) for k, v in x.items()}
    n = valid.sum(-1)
    a, g = z["m_p"] - z["m_u"], z["m_p"] - z["m_r"]
    a_bar, g_bar = a.sum(-1) / n, g.sum(-1) / n
    da, dg = np.where(valid, a - a_bar[..., None], 0), np.where(valid, g - g_bar[..., None], 0)
    sample = ((da * da).sum(-1) / (n - 1), (da * dg).sum(-1) / (n - 1), (dg * dg).sum(-1) / (n - 1))
    u2, p2, r2 = z["se_u"] ** 2, z["se_p"] ** 2, z["se_r"] ** 2  # w(ρ) = se_u² + (1 − ρ)²·se_p² + ρ²·se_r²
    within = ((u2 + p2).sum(-1) / n, p2.sum(-1) / n, (p2 + r2).sum(-1) / n)
    return n, a_bar, g_bar, (g * g).sum(-1) / n, sample, within


def _interval(n, a_bar, g_bar, q, sample, within):
    """Fieller's set for the floored variance max(s², w): the union of the two quadratics' sets (both hold
    ρ̂, so the union is an interval when both are). (−inf, inf) when unbounded, NaN below 2 seeds."""
    c = q * q / n
    lo_s, hi_s, ok_s = _fieller(a_bar, g_bar, c, sample)
    lo_w, hi_w, ok_w = _fieller(a_bar, g_bar, c, within)
    bounded = ok_s & ok_w
    lo = np.where(bounded, np.minimum(lo_s, lo_w), -np.inf)
    hi = np.where(bounded, np.maximum(hi_s, hi_w), np.inf)
    return np.where(n >= 2, lo, np.nan), np.where(n >= 2, hi, np.nan), bounded


def _quad(abc, rho):
    """A − 2Bρ + Cρ²: the variance of a − ρ·g from its three moments."""
    a, b, c = abc
    return a - 2 * b * rho + c * rho * rho


def _fieller(a_bar, g_bar, c, abc):
    """{ρ : (ā − ρḡ)² ≤ c·(A − 2Bρ + Cρ²)} as (low, high, bounded). The set always holds ρ̂ = ā/ḡ; it is an
    interval exactly when the leading coefficient ḡ² − cC is positive (the gap is significant)."""
    a, b, cc = abc
    lead = g_bar * g_bar - c * cc
    half = a_bar * g_bar - c * b
    const = a_bar * a_bar - c * a
    root = np.sqrt(np.maximum(half * half - lead * const, 0.0))
    ok = lead > 0
    safe = np.where(ok, lead, 1.0)
    return (half - root) / safe, (half + root) / safe, ok


def _scalar(c: Contrasts, delta: float, alpha: float, i=()) -> Contrast:
    """Row `i` of a vectorised result as a Contrast."""
    v = {f.name: np.asarray(getattr(c, f.name))[i] for f in fields(Contrasts)}
    verdict = {1: WORSE, -1: EQUIVALENT}.get(int(v["decision"]))
    return Contrast(n=int(v["n"]), removal=float(v["removal"]), ci_low=float(v["ci_low"]),
                    ci_high=float(v["ci_high"]), bounded=bool(v["bounded"]), d_mean=float(v["d_mean"]),
                    d_se=float(v["d_se"]), t=float(v["t"]), t_crit=float(v["t_crit"]), floored=bool(v["floored"]),
                    tau=float(v["tau"]), gap=float(v["gap"]), verdict_by_removal=verdict, delta=delta, alpha=alpha)


def contrast(m_u, se_u, m_p, se_p, m_r=0.0, se_r=0.0, *, delta: float = DELTA, alpha: float = ALPHA,
             min_seeds: int = MIN_SEEDS) -> Contrast:
    """One row: per-seed sequences (or scalars m_r, se_r) in, a Contrast out, through `contrasts`."""
    arrays = [np.atleast_1d(np.asarray(v, float)) for v in (m_u, se_u, m_p, se_p, m_r, se_r)]
    if any(v.ndim != 1 for v in arrays):
        raise SweeperError("contrast: one row takes one value per fresh seed (1-d sequences)")
    c = contrasts(*arrays, delta=delta, alpha=alpha, min_seeds=min_seeds)
    return _scalar(c, delta, alpha)


def verdict(c: Contrast, acc_kept: bool, min_seeds: int = MIN_SEEDS) -> str | None:
    """The fixed design's three-way answer: None below `min_seeds` seeds or without a positive gap, "worse",
    "equivalent" (removal and accuracy), else "inconclusive" (accuracy lost, or the seeds cannot say)."""
    if c.n < min_seeds or not c.gap > 0:
        return None
    if c.verdict_by_removal == WORSE:
        return WORSE
    return EQUIVALENT if c.verdict_by_removal == EQUIVALENT and acc_kept else INCONCLUSIVE


@dataclass(frozen=True)
class Sequentials:
    """The vectorised sequential result: one entry per row."""
    decision: np.ndarray   # +1 worse, −1 equivalent (removal and accuracy), 0 not decided or stopped
    stopped: np.ndarray    # decided "not equivalent": equivalent on removal at a look whose accuracy was lost
    look: np.ndarray       # the deciding look, 1-based (rounds[look − 1] seeds); 0 when not decided
    n_used: np.ndarray     # seeds at the deciding look, or at the last look done
    contrast: Contrasts    # at that look, at level α/K


@dataclass(frozen=True)
class SequentialVerdict:
    """One row's sequential answer. verdict: WORSE, EQUIVALENT, INCONCLUSIVE, or None (never judged: fewer
    than min_seeds seeds, or no positive gap). reason: REMOVAL (decided on removal, `verdict` says which
    way), ACCURACY (stopped: equivalent on removal but accuracy lost at that look; verdict INCONCLUSIVE),
    OPEN (undecided after the last look the seeds allowed), TOO_FEW or NO_GAP (verdict None)."""
    verdict: str | None
    reason: str
    look: int | None       # the deciding look, 1-based; None when not decided
    n_used: int
    stopped: bool          # no more seeds for this row: decided, or stopped on accuracy
    open: bool             # judged and undecided at the last look its seeds allowed: more seeds could decide it
    rounds: tuple[int, ...]  # the looks' seed counts, as given
    contrast: Contrast     # at the deciding (or last) look, at level α/K


def _check_rounds(rounds, n_looks: int | None) -> tuple[tuple[int, ...], int]:
    """(rounds, K). Rounds may repeat a count (a look that brought this row no new seed: it is skipped)."""
    r = tuple(int(k) for k in rounds)
    if not r or any(k < 0 for k in r) or any(b < a for a, b in zip(r, r[1:])) or any(
            k != v for k, v in zip(r, rounds)):
        raise SweeperError(f"fresh_rounds must be non-decreasing whole seed counts, got {list(rounds)}")
    k = len(r) if n_looks is None else int(n_looks)
    if k < len(r):
        raise SweeperError(f"fresh_rounds: {len(r)} looks held but only {k} planned")
    return r, k


def sequential_contrasts(m_u, se_u, m_p, se_p, m_r=0.0, se_r=0.0, *, rounds, n_looks: int | None = None,
                         delta: float = DELTA, alpha: float = ALPHA, acc_kept=True,
                         min_seeds: int = MIN_SEEDS) -> Sequentials:
    """Looks after the first rounds[k] seeds (positions on the last axis, in seed order; a NaN seed counts
    against its round but is left out of the test), each at α/K per side, K = n_looks (the looks planned;
    default len(rounds): pass it when only the first looks have been held yet). A row may hold fewer seeds
    than a round: a look with no seed more than the previous one is skipped, so a row ends at the last look
    its seeds allow. `acc_kept`: accuracy kept, one bool or one per look held (broadcast to (..., len(rounds)))."""
    rounds, k_looks = _check_rounds(rounds, n_looks)
    xs = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, float)) for v in (m_u, se_u, m_p, se_p, m_r, se_r)))
    batch, n_max = xs[0].shape[:-1], xs[0].shape[-1]
    acc = np.broadcast_to(np.asarray(acc_kept, bool), batch + (len(rounds),))
    cur, n_prev = None, np.zeros(batch, int)
    decision, stopped, look = np.zeros(batch, int), np.zeros(batch, bool), np.zeros(batch, int)
    open_ = np.ones(batch, bool)
    for k, r in enumerate(rounds):
        ck = contrasts(*(v[..., :min(r, n_max)] for v in xs), delta=delta, alpha=alpha / k_looks,
                       min_seeds=min_seeds)
        looked = open_ & (ck.n > n_prev)
        cur = ck if cur is None else Contrasts(**{f.name: np.where(looked, getattr(ck, f.name), getattr(cur, f.name))
                                                   for f in fields(Contrasts)})
        now = looked & (ck.decision != 0)
        keep = acc[..., k]
        decision = np.where(now & ((ck.decision > 0) | keep), ck.decision, decision)
        stopped |= now & (ck.decision < 0) & ~keep
        look = np.where(now, k + 1, look)
        open_ &= ~now
        n_prev = np.where(looked, ck.n, n_prev)
    return Sequentials(decision=decision, stopped=stopped, look=look, n_used=cur.n, contrast=cur)


def sequential(m_u, se_u, m_p, se_p, m_r=0.0, se_r=0.0, *, rounds, n_looks: int | None = None,
               delta: float = DELTA, alpha: float = ALPHA, acc_kept=True,
               min_seeds: int = MIN_SEEDS) -> SequentialVerdict:
    """One row's per-seed sequences (seed order) through `sequential_contrasts`."""
    arrays = [np.atleast_1d(np.asarray(v, float)) for v in (m_u, se_u, m_p, se_p, m_r, se_r)]
    if any(v.ndim != 1 for v in arrays):
        raise SweeperError("sequential: one row takes one value per fresh seed (1-d sequences)")
    s = sequential_contrasts(*arrays, rounds=rounds, n_looks=n_looks, delta=delta, alpha=alpha,
                             acc_kept=acc_kept, min_seeds=min_seeds)
    rounds, k_looks = _check_rounds(rounds, n_looks)
    c = _scalar(s.contrast, delta, alpha / k_looks)
    d, stop, k = int(s.decision), bool(s.stopped), int(s.look)
    if d or stop:
        verdict, reason = {1: WORSE, -1: EQUIVALENT, 0: INCONCLUSIVE}[d], REMOVAL if d else ACCURACY
    elif c.n < min_seeds:
        verdict, reason = None, TOO_FEW
    elif not c.gap > 0:
        verdict, reason = None, NO_GAP
    else:
        verdict, reason = INCONCLUSIVE, OPEN
    return SequentialVerdict(verdict=verdict, reason=reason, look=k or None, n_used=c.n, stopped=bool(d or stop),
                             open=reason == OPEN, rounds=rounds, contrast=c)


@dataclass(frozen=True)
class Margin:
    """How far an undecided row sits from a verdict. t_worse = t and t_equivalent = −t, each needing to
    exceed t_crit; to_worse = ci_high − (1 − δ) and to_equivalent = (1 − δ) − ci_low, each needing to fall
    below 0 (inf when the interval is unbounded). side: the verdict the mean points to (None at D = 0).
    seeds_needed: a projection, not a promise: the fewest seeds at which the current mean of D and its
    (floored) variance, held fixed, would reach t_crit at the same level — a true effect of that size
    would be detected at that count only about half of the time. inf when D's mean is 0 or more than
    `max_seeds` would be needed. next_round: the first of `rounds` ≥ seeds_needed, None beyond the last."""
    t_worse: float
    t_equivalent: float
    t_crit: float
    to_worse: float
    to_equivalent: float
    side: str | None
    seeds_needed: float
    next_round: int | None


def margin(c: Contrast, rounds=None, max_seeds: int = 10_000) -> Margin:
    """Distance of `c` (at the level it was computed at: α, or α/K in a sequential design) to each verdict,
    and the projected seed count (see Margin)."""
    edge = 1 - c.delta
    need = math.inf
    if c.n >= 1 and c.d_mean != 0 and math.isfinite(c.d_se) and c.d_se > 0:
        sd = c.d_se * math.sqrt(c.n)
        k = np.arange(max(MIN_SEEDS, 2), max_seeds + 1)
        hit = np.abs(c.d_mean) / (sd / np.sqrt(k)) > student_t.ppf(1 - c.alpha, k - 1)
        need = float(k[np.argmax(hit)]) if hit.any() else math.inf
    side = None if c.d_mean == 0 or not math.isfinite(c.d_mean) else (WORSE if c.d_mean > 0 else EQUIVALENT)
    later = [r for r in (rounds or ()) if r >= need]
    return Margin(t_worse=c.t, t_equivalent=-c.t, t_crit=c.t_crit, to_worse=c.ci_high - edge,
                  to_equivalent=edge - c.ci_low, side=side, seeds_needed=need,
                  next_round=later[0] if later else None)
