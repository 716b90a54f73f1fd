"""The verdict against retraining (sweeper.report.contrast) on simulated fresh seeds: false "worse" and
false "equivalent" at the margin for every attack kind, seed-to-seed spread and design, today's pooled
test failing where the issue says it fails, and the contrast's own arithmetic (docs/architecture.md,
Statistics and verdicts). Simulators: tests/verdict_sim.py, shared with benchmarks/verdict_simulation.py."""
import functools
import math

import numpy as np
import pytest
from scipy.special import expit, logit
from scipy.stats import t as student_t

import verdict_sim as vs
from sweeper.attacks._surrogate import wilson
from sweeper.errors import SweeperError
from sweeper.report import contrast as C

SIMS, DELTA, ALPHA = 4000, 0.1, 0.025
ROUNDS = vs.ROUNDS
DESIGNS = ("3", "6", "12", "adaptive")
SPREADS = {"gaussian": (0.0, 0.2, 0.3, 0.4), "backdoor": (0.0, 0.5, 1.0), "witches_brew": (0.0, 0.5, 1.0)}
assert tuple(SPREADS) == vs.KINDS
# (true removal, the wrong verdict at it): "worse" is wrong at removal ≥ 1 − δ, "equivalent" at ≤ 1 − δ.
WRONG = ((0.9, C.WORSE), (1.0, C.WORSE), (0.9, C.EQUIVALENT), (0.85, C.EQUIVALENT))
# Cells measured to fail at the stated design (strict: they must keep failing until the test changes).
# Backdoor at logit SD 1: D_s is right-skewed (skewness 0.8 at the margin), and the lower tail of a t test on
# right-skewed data rejects too often; the rate falls only slowly with seeds (0.044 at 24, 0.040 at 48).
# Skewness corrections of the critical values, widening only (never below the plain t), were simulated on these
# cells (same seeds; a pass needs at most 164 of 4,000 = 0.041): the one-term Cornish–Fisher shift of the
# studentized mean, γ(2q² + 1)/(6√n) (Johnson 1978's first-order term), with sample skewness g1 0.0465 / 0.0405 at
# 6 / 12 seeds, with G1 0.0447 / 0.0395; Hall's (1992) monotone transform with g1 0.0435 / 0.0385, with G1 0.0413
# / 0.0377; bootstrap-t (999 resamples) 0.0513 / 0.0393. None passes at 6 seeds, and the four analytic ones cost
# power elsewhere (Witches' Brew at 3 seeds, "worse" at removal 0.13, mean over σ: 0.61 → 0.29–0.43). With the
# true skewness (0.81) the Cornish–Fisher shift gives 0.029 / 0.027: the failure is the estimate. The sweeps that
# wrongly read "equivalent" are those whose seeds missed D's right tail, so their sample skewness is about 0 (mean
# −0.06 at 6 seeds, against 0.30 over all sweeps): a correction from the row's own seeds cannot see it.
FAILS = {("backdoor", 1.0, "6", 0.9, C.EQUIVALENT): 0.055, ("backdoor", 1.0, "12", 0.9, C.EQUIVALENT): 0.049}


@functools.lru_cache(maxsize=None)
def cell(kind: str, spread: float, removal: float) -> dict:
    """Decisions of SIMS simulated sweeps per design (verdict_sim.cell)."""
    return vs.cell(kind, spread, removal, SIMS, DELTA, ALPHA)[1]


def cases():
    for kind, spreads in SPREADS.items():
        for spread in spreads:
            for design in DESIGNS:
                for removal, wrong in WRONG:
                    key = (kind, spread, design, removal, wrong)
                    mark = [pytest.mark.xfail(strict=True, reason=f"measured false {wrong} rate {FAILS[key]}: "
                                              "t test on right-skewed per-seed contrasts")] if key in FAILS else []
                    yield pytest.param(*key, marks=mark, id="-".join(map(str, key)))


@pytest.mark.parametrize("kind,spread,design,removal,wrong", list(cases()))
def test_a_wrong_verdict_is_rare_at_the_margin_and_beyond(kind, spread, design, removal, wrong):
    """Pass: the 99% Clopper–Pearson upper bound of the wrong verdict's rate is at most 0.05 (accuracy
    kept: the worst case for a false "equivalent")."""
    decision = cell(kind, spread, removal)[design]
    k = int((decision == (1 if wrong == C.WORSE else -1)).sum())
    assert vs.clopper_pearson(k, SIMS)[1] <= 0.05, (k / SIMS, kind, spread, design, removal, wrong)


def test_the_pooled_gus_test_of_today_calls_a_method_at_the_margin_worse_too_often_when_seeds_differ():
    """issue 20: stats.pooled_removal + stats.verdict at τ = 0.3, 3 seeds, removal 0.9: the 99% lower bound
    of false "worse" is above 0.05; the contrast on the same seeds stays within it."""
    rng = np.random.default_rng(20)
    x = vs.gaussian(rng, SIMS, 3, 0.9, 0.3)
    old = int((vs.old_verdicts("gaussian", x, 3) == C.WORSE).sum())
    assert vs.clopper_pearson(old, SIMS)[0] > 0.05, old / SIMS
    new = int((C.contrasts(**x).decision == 1).sum())
    assert vs.clopper_pearson(new, SIMS)[1] <= 0.05, new / SIMS


@pytest.mark.parametrize("kind", ["gaussian", "backdoor", "witches_brew"])
def test_retrain_itself_reads_worse_at_most_alpha_of_the_time(kind):
    """Gaussian: retrain's GUS is an N(0, 1/√240) draw (true removal 1); rates: m_u = m_r, the same model."""
    _, decisions = vs.cell(kind, 0.0 if kind == "gaussian" else 0.5, 1.0, SIMS, DELTA, ALPHA, retrain=True)
    for design in DESIGNS:
        worse = int((decisions[design] == 1).sum())
        assert worse / SIMS <= ALPHA, (kind, design, worse)


def test_the_simulated_rates_use_the_wilson_se_of_rate_metrics():
    for n in (4, 108):
        k = np.arange(n + 1)
        expected = [(hi - lo) / (2 * 1.96) for lo, hi in (wilson(int(i), n) for i in k)]
        np.testing.assert_allclose(vs.wilson_se(k, n), expected, rtol=1e-12, atol=1e-15)
    assert vs.wilson_se(np.array([0, 4]), 4).min() > 0.1  # positive at rates 0 and 1


@pytest.mark.parametrize("removal", [0.13, 0.85, 0.9, 1.0])
def test_the_unlearned_rate_is_centred_so_that_the_estimand_is_the_stated_removal(removal):
    """A large Monte Carlo of the true rates (no binomial noise) against the quadrature's centre."""
    rng = np.random.default_rng(7)
    sigma, p, r = 1.0, vs.BACKDOOR["poisoned"], vs.BACKDOOR["retrain"]
    c = vs.unlearned_centre(removal, sigma, p, r)
    m_p, m_r, m_u = (expit(centre + sigma * rng.standard_normal(2_000_000)).mean()
                     for centre in (logit(p), logit(r), c))
    assert 1 - (m_u - m_r) / (m_p - m_r) == pytest.approx(removal, abs=0.002)


def two_seeds_identical():
    se = vs.wilson_se(np.array([0, 108]), 108)  # rate 0 and rate 1 on 108 points
    return dict(se_u=[se[1]] * 2, m_p=[1.0, 1.0], se_p=[se[1]] * 2, m_r=[0.0, 0.0], se_r=[se[0]] * 2)


def test_seeds_that_agree_exactly_still_get_a_positive_width_and_two_seeds_no_verdict():
    """issue 20's tiny GPT-2 sweep: 2 fresh seeds whose rates agree exactly printed `gd 0.000 ± 0.000 worse`
    and `retrain 1.000 ± 0.000 equivalent`."""
    gd = C.contrast(m_u=[1.0, 1.0], **two_seeds_identical())
    retrain = C.contrast(m_u=[0.0, 0.0], **{**two_seeds_identical(), "se_u": two_seeds_identical()["se_r"]})
    for c, removal in ((gd, 0.0), (retrain, 1.0)):
        assert c.n == 2 and c.removal == removal and c.floored and c.verdict_by_removal is None
        assert C.verdict(c, acc_kept=True) is None
        assert 0.05 < c.ci_high - c.ci_low < math.inf and c.ci_low < removal < c.ci_high
    three = {k: v + v[:1] for k, v in two_seeds_identical().items()}
    c3 = C.contrast(m_u=[0.0] * 3, **{**three, "se_u": three["se_r"]})
    assert c3.d_se > 0 and 0 < c3.ci_high - c3.ci_low < math.inf
    assert C.verdict(c3, acc_kept=True) == C.EQUIVALENT and C.verdict(c3, acc_kept=False) == C.INCONCLUSIVE
    assert C.sequential(m_u=[0.0, 0.0], **{**two_seeds_identical(), "se_u": two_seeds_identical()["se_r"]},
                        rounds=ROUNDS).reason == C.TOO_FEW


def random_rows(rng, rows=20_000, seeds=12):
    """Random per-seed effects with 2 to 12 finite seeds per row (NaN after), gaps from clearly positive to
    none, spreads from below to above the within-seed floor."""
    n = rng.integers(2, seeds + 1, rows)
    pad = np.arange(seeds) >= n[:, None]
    gap = rng.uniform(-0.05, 0.5, (rows, 1)) + rng.normal(0, rng.uniform(0, 0.2, (rows, 1)), (rows, seeds))
    m_r = rng.uniform(0, 0.2, (rows, seeds))
    keep = rng.uniform(-0.2, 1.3, (rows, 1)) + rng.normal(0, rng.uniform(0, 0.3, (rows, 1)), (rows, seeds))
    x = dict(m_u=m_r + (1 - keep) * gap, m_p=m_r + gap, m_r=m_r,
             se_u=rng.uniform(0.005, 0.1, (rows, seeds)), se_p=rng.uniform(0.005, 0.1, (rows, seeds)),
             se_r=rng.uniform(0, 0.1, (rows, seeds)))
    return {k: np.where(pad, np.nan, v) for k, v in x.items()}, n


def t_of(x, rho):
    """The floored t statistic of a_s − ρ·g_s, computed the slow way (for the Fieller bounds)."""
    out = []
    for i, r in enumerate(rho):
        ok = np.isfinite(x["m_u"][i])
        a = x["m_p"][i][ok] - x["m_u"][i][ok]
        g = x["m_p"][i][ok] - x["m_r"][i][ok]
        w = np.mean(x["se_u"][i][ok] ** 2 + (1 - r) ** 2 * x["se_p"][i][ok] ** 2 + r ** 2 * x["se_r"][i][ok] ** 2)
        v = max(np.var(a - r * g, ddof=1), w)
        out.append((a - r * g).mean() / math.sqrt(v / ok.sum()))
    return np.asarray(out)


def test_the_fieller_interval_and_the_verdict_agree_on_random_inputs():
    rng = np.random.default_rng(3)
    x, n = random_rows(rng)
    c = C.contrasts(**x, delta=DELTA, alpha=ALPHA)
    assert (c.n == n).all()
    both = c.bounded & c.judged
    edge = 1 - DELTA
    np.testing.assert_array_equal((c.decision == 1)[both], (c.ci_high < edge)[both])
    np.testing.assert_array_equal((c.decision == -1)[both], (c.ci_low > edge)[both])
    counts = [int((both & (c.decision == d)).sum()) for d in (1, -1, 0)]
    assert min(counts) > 500, counts  # every kind of answer occurs
    assert 500 < int((~c.bounded & (c.n >= 3)).sum()), "unbounded sets occur"
    assert np.isinf(c.ci_low[~c.bounded & (c.n >= 2)]).all() and ~(c.decision[~c.judged] != 0).any()
    assert ((c.decision != 0) & ~c.bounded).any()  # a verdict from D even where the gap is not significant
    # The bounds are where the floored t test of a − ρg sits exactly at its critical value.
    pick = np.flatnonzero(c.bounded)[:200]
    sub = {k: v[pick] for k, v in x.items()}
    for bound in (c.ci_low, c.ci_high):
        np.testing.assert_allclose(np.abs(t_of(sub, bound[pick])), c.t_crit[pick], rtol=1e-6)
    inside = t_of(sub, c.removal[pick])
    np.testing.assert_allclose(inside, 0, atol=1e-9)


def test_the_scalar_wrapper_equals_the_vectorised_core():
    rng = np.random.default_rng(4)
    x, n = random_rows(rng, rows=50)
    batch = C.contrasts(**x)
    seq = C.sequential_contrasts(**x, rounds=ROUNDS)
    for i in range(50):
        row = {k: v[i][:n[i]] for k, v in x.items()}  # the compact row (no NaN padding)
        one = C.contrast(**row)
        for f in ("n", "removal", "ci_low", "ci_high", "bounded", "d_mean", "d_se", "t", "t_crit", "tau", "gap"):
            assert getattr(one, f) == pytest.approx(getattr(batch, f)[i], nan_ok=True, rel=1e-12), (i, f)
        assert one.verdict_by_removal == {1: C.WORSE, -1: C.EQUIVALENT}.get(int(batch.decision[i]))
        s = C.sequential(**row, rounds=ROUNDS)
        assert s.n_used == seq.n_used[i] and (s.look or 0) == seq.look[i]
        assert s.contrast.t == pytest.approx(seq.contrast.t[i], nan_ok=True)


def test_one_round_is_the_fixed_design():
    x = vs.gaussian(np.random.default_rng(5), SIMS, 6, 0.5, 0.3)
    fixed = C.contrasts(**x).decision
    assert (fixed != 0).sum() > 1000
    np.testing.assert_array_equal(C.sequential_contrasts(**x, rounds=[6]).decision, fixed)


def gd_like(seeds, removal, se=0.01):
    """Per-seed Gaussian effects with a given removal and little noise."""
    m_p = np.full(seeds, 0.28) + np.linspace(-0.01, 0.01, seeds)
    return dict(m_u=(1 - removal) * m_p, se_u=[se] * seeds, m_p=m_p, se_p=[se] * seeds)


def test_a_verdict_is_frozen_at_the_look_that_decides_it():
    worse = {k: np.concatenate([gd_like(3, 0.1)[k], gd_like(21, 1.0)[k]]) for k in gd_like(1, 0)}
    s = C.sequential(**worse, rounds=ROUNDS)
    assert (s.verdict, s.reason, s.look, s.n_used, s.stopped, s.open) == (C.WORSE, C.REMOVAL, 1, 3, True, False)
    assert C.contrast(**worse).verdict_by_removal is None  # all 24 seeds would no longer say "worse"
    eq = gd_like(24, 1.0, se=0.002)  # decided at 3 seeds even at α/4
    lost = C.sequential(**eq, rounds=ROUNDS, acc_kept=[False, True, True, True])
    assert (lost.verdict, lost.reason, lost.look, lost.n_used, lost.stopped) == (C.INCONCLUSIVE, C.ACCURACY, 1, 3, True)
    kept = C.sequential(**eq, rounds=ROUNDS, acc_kept=True)
    assert (kept.verdict, kept.look, kept.contrast.alpha) == (C.EQUIVALENT, 1, ALPHA / 4)


def test_a_row_with_fewer_seeds_than_the_next_round_ends_at_its_last_seed():
    rng = np.random.default_rng(6)
    x = {k: v[0] for k, v in vs.gaussian(rng, 1, 5, 0.9, 0.0).items()}
    s = C.sequential(**x, rounds=ROUNDS)
    assert (s.verdict, s.reason, s.n_used, s.look, s.open) == (C.INCONCLUSIVE, C.OPEN, 5, None, True)
    assert s.contrast.t_crit == pytest.approx(C.contrast(**x, alpha=ALPHA / 4).t_crit)
    # The sweep at its second look of four: the row's counts so far, the level of all four looks planned.
    now = C.sequential(**x, rounds=[3, 5], n_looks=4)
    assert (now.n_used, now.contrast.alpha, now.contrast.t_crit) == (5, ALPHA / 4, s.contrast.t_crit)
    held = C.sequential(**x, rounds=[3, 3, 5], n_looks=4)  # look 2 brought this row no seed: skipped
    assert held.n_used == 5 and held.contrast.t_crit == s.contrast.t_crit
    failed = {k: np.where(np.arange(5) == 1, np.nan, v) for k, v in x.items()}  # run of seed 2 failed
    assert C.sequential(**failed, rounds=ROUNDS).n_used == 4


def test_tau_hat_describes_the_seed_to_seed_spread_of_removal():
    for tau in (0.0, 0.3):
        x = vs.gaussian(np.random.default_rng(8), 2000, 24, 0.9, tau)
        est = np.median(C.contrasts(**x).tau)
        assert abs(est - tau) < 0.06, (tau, est)


def test_the_margin_says_how_far_an_open_row_sits_and_projects_the_seeds_it_needs():
    x = {k: v[0] for k, v in vs.gaussian(np.random.default_rng(9), 1, 3, 0.6, 0.0).items()}
    c = C.contrast(**x)
    m = C.margin(c, rounds=ROUNDS)
    assert c.verdict_by_removal is None and m.side == C.WORSE and m.t_worse < m.t_crit
    assert m.to_worse == pytest.approx(c.ci_high - 0.9) and m.to_worse > 0
    sd, need = c.d_se * math.sqrt(c.n), int(m.seeds_needed)
    assert need > 3 and c.d_mean / (sd / math.sqrt(need)) > student_t.ppf(1 - ALPHA, need - 1)
    assert c.d_mean / (sd / math.sqrt(need - 1)) <= student_t.ppf(1 - ALPHA, need - 2)
    assert m.next_round == min(r for r in ROUNDS if r >= need)


def test_rounds_must_be_non_decreasing_seed_counts_within_the_looks_planned():
    x = gd_like(6, 0.5)
    for bad in ([], [6, 3], [-1, 3], [2.5, 6]):
        with pytest.raises(SweeperError, match="fresh_rounds must be"):
            C.sequential(**x, rounds=bad)
    with pytest.raises(SweeperError, match="3 looks held but only 2 planned"):
        C.sequential(**x, rounds=[3, 6, 6], n_looks=2)
