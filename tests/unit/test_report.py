"""Report statistics on hand-made checkpoint rows (the numbers are chosen so each rule can fail)."""
import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sweeper import config, report


def test_t_interval_matches_the_textbook_formula():
    mean, lo, hi = report.t_interval([0.8, 0.9, 1.0])
    half = stats.t.ppf(0.975, 2) * 0.1 / math.sqrt(3)
    assert mean == pytest.approx(0.9) and lo == pytest.approx(0.9 - half) and hi == pytest.approx(0.9 + half)
    assert math.isnan(report.t_interval([0.5])[1])


def ref(method, phase, seed, effect, acc=0.98, se=0.005):
    return {"attack": "gaussian", "method": method, "trial_id": method, "phase": phase, "seed": seed,
            "run_status": "FINISHED", "hparams": "{}", "budget": 0.0 if method == "none" else 1.0,
            "attack/effect": effect, "attack/effect_se": se, "acc/val": acc, "acc/test": acc, "removal": 0.0,
            "objective": 0.0, "cost/fraction": 0.0, "cost/units": 0, "cost/seconds": 0.0, "mia/auc": 0.5,
            "gus/sum": -effect * 100, "gus/n_valid": 100}


def trial(tid, budget, objective, removal, phase="tune", seed=None, source=None, acc=0.98, lr=0.1):
    return {**ref("gd", phase, seed, 0.1, acc), "method": "gd", "trial_id": tid, "budget": budget,
            "objective": objective, "removal": removal, "hparams": json.dumps({"lr": lr}),
            "source_trial": source, "cost/fraction": budget, "n_seeds": 3}


def rows(fresh_removals=(0.95, 0.97, 0.96), fresh_acc=0.98, gus=None):
    """Each fresh gd row's effect is the one its removal implies against the seed's references (m_poisoned
    0.3, m_retrain 0: m = 0.3 · (1 − removal)), with a within-seed SE of 0.005. Without `gus` (poisons per
    seed) the rows carry no GUS sums; with it, each row's GUS sum is the one its effect implies."""
    out = [ref("none", "tune", None, 0.3), ref("retrain", "tune", None, 0.0)]
    out += [ref(m, "fresh", s, e) for s in (10, 11, 12) for m, e in (("none", 0.3), ("retrain", 0.0))]
    out += [trial("a", 0.02, 0.5, 0.5), trial("a", 0.04, 0.99, 0.99),          # a wins both budgets
            trial("b", 0.02, 0.2, 0.2), trial("b", 0.04, -1.2, 0.99, lr=1.0)]  # b: accuracy penalty
    out += [trial(f"a-fresh{s}", b, r, r, "fresh", s, "a", fresh_acc) for s, r in zip((10, 11, 12), fresh_removals)
            for b in (0.02, 0.04)]
    frame = pd.DataFrame(out)
    effect = np.where(frame.method == "none", 0.3, np.where(frame.method == "retrain", 0.0,
                                                             0.3 * (1 - frame.removal)))
    frame = frame.assign(**{"attack/effect": effect})
    if gus is None:
        return frame.drop(columns=["gus/sum", "gus/n_valid"])
    return frame.assign(**{"gus/sum": -effect * gus, "gus/n_valid": gus})


def test_verdicts_test_the_seed_contrast_and_pooled_gus_only_describes():
    """Seeds that disagree (removal 0.80, 1.15, 0.96) but many poisons: pooling every poison gives a narrow
    interval that would call this "equivalent"; it assumes every seed removes the same fraction, so the
    verdict is the seed contrast's, which says the seeds cannot decide yet."""
    spread = (0.80, 1.15, 0.96)
    s = report.summarize(rows(fresh_removals=spread, gus=20_000))
    gd = s[(s.method == "gd") & (s.budget == 0.04)].iloc[0]
    assert gd.verdict_test == "seed contrast t" and gd.verdict == "inconclusive" and gd.verdict_open
    assert gd.removal == pytest.approx(np.mean(spread))  # ratio of means; m_poisoned is the same on every seed
    assert gd.removal_ci_low < 0.9 < gd.removal_ci_high
    assert gd.removal_pooled == pytest.approx(np.mean(spread)) and gd.removal_pooled_ci_low > 0.9  # narrow, not used
    assert gd.removal_pooled_ci_high - gd.removal_pooled_ci_low < gd.removal_ci_high - gd.removal_ci_low
    assert gd.removal_tau > 0.1  # the seeds' own spread, reported


def test_an_open_row_says_how_far_it_sits_and_how_many_seeds_its_spread_would_need():
    """The open row above: its distance from 1 − δ and contrast.margin's projection, in summary.csv
    (verdict_seeds_needed, computed from the same contrast) and in the printed table's last line; a decided
    row projects nothing."""
    from sweeper.report import contrast

    spread = (0.80, 1.15, 0.96)
    s = report.summarize(rows(fresh_removals=spread))
    gd = s[(s.method == "gd") & (s.budget == 0.04)].iloc[0]
    m_u = [0.3 * (1 - r) for r in spread]
    c = contrast.contrast(m_u, [0.005] * 3, [0.3] * 3, [0.005] * 3)
    need = contrast.margin(c).seeds_needed
    assert gd.verdict_open and 3 < need < 10_000 and gd.verdict_seeds_needed == need
    text = report.table(s, 0.1)
    assert f"gd@0.04 {gd.removal:.2f}" in text and f"{gd.removal - 0.9:+.2f} from the margin" in text
    assert f"about {need:.0f} seeds would decide it" in text
    decided = report.summarize(rows())
    assert decided[decided.method == "gd"].verdict_seeds_needed.isna().all() and "undecided" not in report.table(decided, 0.1)


def test_pooled_gus_calibration_retrain_reads_worse_at_most_five_percent_of_the_time():
    """Retraining's fresh seeds under the pooled test: every poison's score is N(0, 1) on θ_retrain and
    N(−0.25, 1) on θ_poisoned (the quickstart's scale: 3 seeds x 240 poisons)."""
    rng = np.random.default_rng(1)
    false_worse, n = 0, 240 * 3
    for _ in range(4000):
        mine = pd.DataFrame({"gus/sum": [rng.normal(0, 1, n).sum()], "gus/n_valid": [n]})
        poisoned = pd.DataFrame({"gus/sum": [rng.normal(-0.25, 1, n).sum()], "gus/n_valid": [n]})
        _, lo, hi = report.pooled_removal(mine, poisoned)
        false_worse += report.verdict(lo, hi, 0.98, 0.98, 0.1) == "worse"
    assert false_worse / 4000 <= 0.05, false_worse


def test_the_report_states_the_smallest_resolvable_delta_and_the_seeds_delta_needs():
    r = rows(fresh_removals=(0.95, 0.97, 0.96))
    fresh_retrain = (r.method == "retrain") & (r.phase == "fresh")
    r.loc[fresh_retrain, "attack/effect"] = [0.03, -0.03, -0.015]  # retrain's own effect: removal 0.9, 1.1, 1.05
    s = report.summarize(r)
    retrain = s[s.method == "retrain"].iloc[0]
    assert retrain.removal_ci_high - retrain.removal_ci_low > 0.2
    res = report.resolution(s, 0.1).iloc[0]
    assert res.test == "seed contrast t" and res.n_fresh == 3
    # retrain reads "equivalent" at margin δ exactly when its lower bound exceeds 1 − δ
    assert res.smallest_delta == pytest.approx(1 - retrain.removal_ci_low)
    need = res["fresh_seeds_for_delta_0.1"]
    half = (retrain.removal_ci_high - retrain.removal_ci_low) / 2
    sd = half * math.sqrt(3) / stats.t.ppf(0.975, 2)
    assert stats.t.ppf(0.975, need - 1) * sd / math.sqrt(need) < 0.1  # enough
    assert need > 3 and stats.t.ppf(0.975, need - 2) * sd / math.sqrt(need - 1) >= 0.1  # and no more than needed


def test_selection_then_fresh_measurement():
    s = report.summarize(rows())
    gd = s[(s.method == "gd") & (s.budget == 0.04)].iloc[0]
    assert gd.trial_id == "a" and gd.removal_tuning == 0.99
    assert gd.removal == pytest.approx(0.96) and gd.n_fresh == 3 and gd.n_trials == 2
    assert gd.tuning_cost_retrains == pytest.approx((0.04 + 0.04) * 3)  # both trials ran to 0.04, 3 seeds
    assert gd.equivalent_to_retrain and gd.verdict_look == 1  # contrast significantly below 0, accuracy kept
    assert gd.removal_ci_low > 0.9 and not gd.verdict_open


def test_equivalence_needs_the_lower_bound_and_the_accuracy():
    wide = report.summarize(rows(fresh_removals=(0.7, 1.2, 0.95)))
    assert not wide[(wide.method == "gd") & (wide.budget == 0.04)].iloc[0].equivalent_to_retrain
    lossy = report.summarize(rows(fresh_acc=0.95))
    assert not lossy[(lossy.method == "gd") & (lossy.budget == 0.04)].iloc[0].equivalent_to_retrain
    eq = report.equivalence(report.summarize(rows()))
    assert eq.iloc[0].smallest_equivalent_budget == "0.02" and eq.iloc[0].verdict == "equivalent from budget 0.02"


def test_three_way_verdict_separates_worse_from_too_few_seeds():
    assert report.verdict(0.95, 1.05, 0.98, 0.98, 0.1) == "equivalent"
    assert report.verdict(0.95, 1.05, 0.90, 0.98, 0.1) == "inconclusive"  # removal fine, accuracy lost
    assert report.verdict(0.20, 0.60, 0.98, 0.98, 0.1) == "worse"         # upper bound below 1 − δ
    assert report.verdict(0.20, 1.40, 0.98, 0.98, 0.1) == "inconclusive"  # too wide to say
    assert report.verdict(float("nan"), float("nan"), 0.98, 0.98, 0.1) == "inconclusive"
    worse = report.summarize(rows(fresh_removals=(0.30, 0.35, 0.32)))
    gd = worse[worse.method == "gd"]
    assert set(gd.verdict) == {"worse"} and not gd.equivalent_to_retrain.any()
    assert report.equivalence(worse).iloc[0].verdict == "worse at every budget"
    wide = report.summarize(rows(fresh_removals=(0.1, 1.2, 0.6)))
    assert report.equivalence(wide).iloc[0].verdict == "inconclusive"


def test_retrain_as_calibration_reads_worse_at_most_five_percent_of_the_time():
    """Simulated fresh seeds of retraining itself (true removal 1, per-seed sd as in the quickstart):
    the verdict's false "worse" rate stays within the 2.5% a one-sided 95% bound allows (bar: 5%)."""
    rng = np.random.default_rng(0)
    for n, sd in ((3, 0.26), (5, 0.26), (3, 0.05)):
        draws = rng.normal(1.0, sd, size=(4000, n))
        false_worse = 0
        for x in draws:
            _, lo, hi = report.t_interval(x)
            false_worse += report.verdict(lo, hi, 0.98, 0.98, 0.1) == "worse"
        assert false_worse / len(draws) <= 0.05, (n, sd, false_worse)


def test_ineffective_attack_gives_no_removal():
    r = rows()
    r.loc[r.method == "none", "attack/effect"] = 0.005  # within 3 standard errors of 0 (pooled SE 0.005 / √3)
    s = report.summarize(r)
    assert set(s.status) == {"attack_ineffective"} and s[s.method == "gd"].removal.isna().all()


def test_pareto_marks_non_dominated_points():
    s = pd.DataFrame({"attack": ["x"] * 3, "status": ["ok"] * 3, "cost_fraction": [0.02, 0.04, 0.06],
                      "removal": [0.3, 0.2, 0.5]})
    assert report.pareto_front(s) == [True, False, True]


def test_importance_says_when_there_are_too_few_trials():
    imp = report.importance(pd.DataFrame([trial("a", 0.02, 0.5, 0.5)]), lambda m: config.search_space(m))
    assert "too few trials (1 < 20)" in imp.iloc[0].importance


def test_importance_ranks_the_parameter_that_matters():
    tune = pd.DataFrame([trial(f"t{i}", 0.1, -abs(math.log10(lr) + 2), 0.0, lr=lr)
                         for i, lr in enumerate([10 ** (-4 + 3 * k / 24) for k in range(25)])])
    imp = report.importance(tune, lambda m: config.search_space(m))
    assert list(imp.parameter) == ["lr"] and imp.iloc[0].importance == pytest.approx(1.0)


@pytest.mark.parametrize("n", [3, 5])
def test_t_interval_covers_the_true_mean_95_percent_of_the_time(n):
    """2,000 simulated experiments of n fresh seeds each (normal noise, seeded)."""
    import numpy as np

    rng = np.random.default_rng(1234 + n)
    true_mean, sd, reps = 0.7, 0.2, 2000
    covered = 0
    for _ in range(reps):
        _, lo, hi = report.t_interval(rng.normal(true_mean, sd, n).tolist())
        covered += lo <= true_mean <= hi
    assert 0.93 <= covered / reps <= 0.97


@pytest.mark.parametrize("ci_low, acc, verdict", [
    (0.901, 0.98, True),    # just above the margin 1 − δ = 0.9
    (0.899, 0.98, False),   # just below
    (0.95, 0.969, True),    # accuracy 0.011 below retrain's: within 0.02
    (0.95, 0.959, False),   # 0.021 below: not equivalent however much it removes
    (float("nan"), 0.98, False),  # no interval (one seed): no verdict
])
def test_noninferiority_verdict_on_both_sides_of_its_margins(ci_low, acc, verdict):
    assert report.noninferior(ci_low, acc, retrain_acc=0.98, delta=0.1) is verdict


def test_the_sweep_can_pick_fresh_trials_without_loading_the_rest_of_the_report():
    """`sweeper.report.selection` is what a running sweep imports: it must not pull in scipy, matplotlib
    or the other parts of the report (a fresh interpreter, so nothing was loaded before)."""
    code = ("import sys, sweeper; before = set(sys.modules); import sweeper.report.selection; "
            "new = set(sys.modules) - before; "
            "assert 'matplotlib' not in sys.modules and 'sweeper.report.render' not in sys.modules, 'render'; "
            "parts = {'sweeper.report.summary', 'sweeper.report.stats'} & new; assert not parts, sorted(parts); "
            "heavy = {m.split('.')[0] for m in new} & {'scipy', 'matplotlib'}; assert not heavy, sorted(heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_every_name_of_the_report_is_reachable_from_the_package():
    """`report.X` and `from sweeper.report import X` load the part that defines X; a typo is an AttributeError."""
    from sweeper.report import render, selection, stats, summary, table

    assert table is render.table and report.selections is selection.selections
    assert report.t_interval is stats.t_interval and report.COLUMNS is summary.COLUMNS
    for name in report.__all__:
        assert getattr(report, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'summarise'"):
        report.summarise


def level_rows(m_ri=0.2, m_u=0.24, level=0.5):
    """A discovery level's rows beside rows()'s level 1: gd tuned and re-measured at `level` (effect m_u on
    every fresh seed), and retrain_identified (effect m_ri; it saw the unidentified poisons). The gold
    references (m_poisoned 0.3, m_retrain 0) are rows()'s, shared by both levels."""
    out = [{**ref("retrain_identified", "tune", None, m_ri), "discovery": level}]
    out += [{**ref("retrain_identified", "fresh", s, m_ri), "discovery": level} for s in (10, 11, 12)]
    out += [{**trial("c", b, 0.3, 0.2), "discovery": level} for b in (0.02, 0.04)]
    out += [{**trial(f"c-fresh{s}", b, 0.2, 0.2, "fresh", s, "c"), "discovery": level, "attack/effect": m_u,
             "identified/gus/sum": -50.0, "identified/gus/n_valid": 25.0,
             "unidentified/gus/sum": -60.0, "unidentified/gus/n_valid": 75.0} for s in (10, 11, 12) for b in (0.02, 0.04)]
    return pd.DataFrame(out)


def test_levels_are_summarised_apart_and_level_1_is_as_without_them():
    alone = report.summarize(rows(), plan={"discovery": [1.0]})
    both = report.summarize(pd.concat([rows(), level_rows()], ignore_index=True), plan={"discovery": [1.0, 0.5]})
    top = both[both.discovery == 1.0].reset_index(drop=True)
    pd.testing.assert_frame_equal(top, alone, check_dtype=False)  # an all-empty column's dtype follows its neighbours
    half = both[both.discovery == 0.5].set_index(["method", "budget"])
    assert list(half.index.get_level_values(0).unique()) == ["none", "retrain", "retrain_identified", "gd"]
    assert half.loc[("gd", 0.04), "trial_id"] == "c"  # the level's own tuning picked its own trial
    assert half.loc[("none", 0.0), "removal"] == top.set_index("method").loc["none", "removal"]


def test_below_level_1_a_row_is_judged_against_retrain_identified_too():
    """m_p 0.3, m_retrain 0, m_retrain_identified 0.2, m_u 0.24 on every seed: removal against the gold is
    1 − 0.24/0.3 = 0.2, against retrain_identified 1 − 0.04/0.1 = 0.6; GUS pooled over each part apart."""
    s = report.summarize(pd.concat([rows(), level_rows()], ignore_index=True), plan={"discovery": [1.0, 0.5]})
    gd = s[(s.discovery == 0.5) & (s.method == "gd") & (s.budget == 0.04)].iloc[0]
    assert gd.removal == pytest.approx(0.2) and gd.removal_identified == pytest.approx(0.6)
    assert gd.verdict == "worse" and gd.status_identified == "ok"
    assert gd.gus_z_identified == pytest.approx(-150 / math.sqrt(75)) and gd.gus_z_unidentified == pytest.approx(-180 / math.sqrt(225))
    assert s[(s.discovery == 1.0) & (s.method == "gd")].removal_identified.isna().all()  # level 1: one reference


def test_a_retrain_identified_as_poisoned_as_none_gives_no_identified_removal():
    """Told of few poisons, retraining without them keeps the attack (m_ri = m_p): the second normalisation
    has no gap to divide by, and the row says so instead of printing a ratio of noise."""
    s = report.summarize(pd.concat([rows(), level_rows(m_ri=0.3, m_u=0.3)], ignore_index=True),
                         plan={"discovery": [1.0, 0.5]})
    gd = s[(s.discovery == 0.5) & (s.method == "gd")]
    assert (gd.status_identified == "identified_gap_small").all() and gd.removal_identified.isna().all()
    assert gd.removal.notna().all()  # the gold normalisation still has its gap


def relapsed_rows(m_p=0.2, m_u=0.15, m_r=0.0):
    """rows() with each fresh run also measured after a relapse of length 0.1: θ_poisoned's effect eroded
    from 0.3 to m_p, θ_retrain's m_r, gd's m_u on every seed."""
    frame = rows()
    fresh = frame.phase == "fresh"
    after = np.where(frame.method == "none", m_p, np.where(frame.method == "retrain", m_r, m_u))
    return frame.assign(**{"relapse0.1/attack/effect": np.where(fresh, after, np.nan),
                           "relapse0.1/attack/effect_se": np.where(fresh, 0.005, np.nan),
                           "relapse0.1/acc/test": np.where(fresh, 0.98, np.nan),
                           "relapse0.1/dtheta": np.where(fresh, 0.5, np.nan)})


def test_relapsed_removal_is_normalised_by_the_relapsed_controls():
    """After relapse θ_poisoned's effect fell to 0.2 (clean fine-tuning erodes it) and gd's is 0.15: relapsed
    removal is 1 − 0.15/0.2 = 0.25, not 1 − 0.15/0.3 = 0.5 (which would count the erosion as removal)."""
    s = report.summarize(relapsed_rows(), plan={"relapse": [0.1]}).set_index(["method", "budget"])
    gd = s.loc[("gd", 0.04)]
    assert gd["removal_relapse0.1"] == pytest.approx(0.25)
    assert gd["status_relapse0.1"] == "ok" and gd["verdict_relapse0.1"] == "worse"
    assert gd["dtheta_relapse0.1"] == pytest.approx(0.5)
    assert s.loc[("none", 0.0), "attack_effect_relapse0.1"] == pytest.approx(0.2)
    assert gd.removal == pytest.approx(0.96, abs=0.02)  # the plain removal is untouched


def test_a_relapse_that_erases_the_poisoned_models_effect_gives_no_relapsed_removal():
    s = report.summarize(relapsed_rows(m_p=0.001, m_u=0.001), plan={"relapse": [0.1]})
    gd = s[s.method == "gd"]
    assert (gd["status_relapse0.1"] == "relapse_gap_small").all() and gd["removal_relapse0.1"].isna().all()


def test_compare_shows_the_second_removals_only_where_a_sweep_measured_them():
    from sweeper import readback

    plain = report.summarize(rows())
    both = report.summarize(pd.concat([relapsed_rows(), level_rows()], ignore_index=True),
                            plan={"discovery": [1.0, 0.5], "relapse": [0.1]})
    assert readback._second(plain) == []
    assert readback._second(both) == ["removal_identified", "removal_relapse0.1"]


def with_scratch(frame, removals_by_budget, acc_by_budget):
    """`frame` plus a `scratch` tuning trial and its fresh runs at each budget, with the given removals per
    fresh seed 10, 11, 12 (effects 0.3 · (1 − removal), as the gd rows') and test accuracy."""
    extra = []
    for budget, removals in removals_by_budget.items():
        extra.append({**trial("s", budget, 0.5, float(np.mean(removals))), "method": "scratch"})
        extra += [{**trial(f"s-fresh{s}", budget, r, r, "fresh", s, "s", acc_by_budget[budget]), "method": "scratch",
                   "attack/effect": 0.3 * (1 - r)} for s, r in zip((10, 11, 12), removals)]
    return pd.concat([frame, pd.DataFrame(extra)], ignore_index=True)


def test_a_method_beats_scratch_only_as_clean_and_more_accurate():
    """gd is equivalent to retraining on removal (~0.96) at test accuracy 0.98. Scratch never saw the Gaussian
    noise, so its effect is known exactly (0, as retrain's: its measured effects are not used); at 0.02 it
    reached test accuracy 0.90 (gd is better), at 0.04 0.975 (gd is as clean but not more accurate: not better)."""
    frame = with_scratch(rows(), {0.02: (0.6, 0.7, 0.8), 0.04: (0.6, 0.7, 0.8)}, {0.02: 0.90, 0.04: 0.975})
    s = report.summarize(frame)
    gd = s[s.method == "gd"].set_index("budget")
    assert (gd.verdict == "equivalent").all()
    assert list(gd.vs_scratch) == ["better", "not better"]
    assert list(gd.removal_vs_scratch) == pytest.approx(list(gd.removal))  # m_scratch = 0 exactly, as m_retrain
    assert s[s.method == "scratch"].vs_scratch.isna().all()  # the baseline is not judged against itself
    eq = report.equivalence(s).set_index("method")
    assert eq.loc["gd", "vs_scratch"] == "better from budget 0.02" and eq.loc["gd", "better_than_scratch_from"] == "0.02"
    assert eq.loc["scratch", "vs_scratch"] == "(the baseline)"
    assert "vs_scratch" in report.table(s)


def test_against_a_measured_scratch_less_clean_is_not_better_and_no_scratch_no_comparison():
    """Backdoor has no exact retrain effect: the scratch model's measured effects are the reference. gd removes
    ~0.96 of the poisoned-to-retrain gap; scratch ~1.3 at 0.02 (gd significantly less clean: not better) and ~0.5
    at 0.04 (gd closes more than the whole gap to scratch, with the accuracy gain: better)."""
    base = rows().assign(attack="backdoor")
    frame = with_scratch(base, {0.02: (1.3, 1.31, 1.29), 0.04: (0.48, 0.52, 0.50)}, {0.02: 0.95, 0.04: 0.95})
    s = report.summarize(frame.assign(attack="backdoor"))
    gd = s[s.method == "gd"].set_index("budget")
    assert list(gd.vs_scratch) == ["not better", "better"]
    m_u = 0.3 * (1 - np.array([0.95, 0.97, 0.96]))
    m_s = 0.3 * (1 - np.array([0.48, 0.52, 0.50]))
    assert gd.loc[0.04, "removal_vs_scratch"] == pytest.approx(1 - (m_u - m_s).mean() / (0.3 - m_s).mean())
    assert gd.loc[0.02, "removal_vs_scratch_ci_high"] < 0.9 < gd.loc[0.04, "removal_vs_scratch_ci_low"]
    assert report.equivalence(s).set_index("method").loc["gd", "vs_scratch"] == "better from budget 0.04"
    plain = report.summarize(rows())
    assert plain.vs_scratch.isna().all()
    assert report.equivalence(plain).set_index("method").loc["gd", "vs_scratch"] == "no comparison"
    assert "vs_scratch" not in report.table(plain)


def test_a_comparison_with_scratch_still_open_says_so_for_the_next_look():
    """Seeds that disagree (gd removal 0.80, 1.15, 0.96): neither verdict is decided at 3 seeds, and the open
    comparison with scratch is what keeps scratch's configuration in the next look (phases._still_open)."""
    frame = with_scratch(rows(fresh_removals=(0.80, 1.15, 0.96)), {0.02: (1, 1, 1), 0.04: (1, 1, 1)},
                         {0.02: 0.90, 0.04: 0.90})
    s = report.summarize(frame)
    gd = s[s.method == "gd"]
    assert (gd.vs_scratch == "inconclusive").all() and gd.vs_scratch_open.all() and gd.verdict_open.all()
    decided = report.summarize(with_scratch(rows(), {0.02: (1, 1, 1), 0.04: (1, 1, 1)}, {0.02: 0.90, 0.04: 0.90}))
    assert not decided[decided.method == "gd"].vs_scratch_open.any()
