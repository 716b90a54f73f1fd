"""Relapse (sweeper/relapse.py): benign fine-tuning of a copy of the model at each checkpoint of a fresh run.
Each test fails on a wrong implementation: relapse data that holds a poison or a forget point, a relapse
that depends on anything but the seed, one that touches the trial's own model or checkpoints, one that
teaches the noise back (GUS of relapsed θ_retrain leaves N(0, 1): a KS test, shown able to fail)."""
import torch
from scipy import stats

from sweeper import relapse
from sweeper.attacks import gaussian
from sweeper.basecache import base_models
from sweeper.trial import SeedEvaluator, run_trial

SPEC = {"lengths": [0.02, 0.1], "lr": None}
TIMERS = {"cost/seconds", "cost/trial_seconds", "trial/seconds", "cost/relapse_seconds"}


def config(scenario, base_dir, method, **kw):
    return {"scenario": scenario.as_dict(), "method": method, "base_dir": base_dir, "budgets": [0.02, 0.04], **kw}


def strip(rows, relapsed=True):
    return [{k: v for k, v in r.items() if k not in TIMERS and (relapsed or not k.startswith("relapse"))} for r in rows]


def test_relapse_data_holds_no_poison_and_no_forget_point(tiny_scenario, base_dir):
    """At discovery level 0.25 the forget set is a quarter of the poisons and the retain set holds the rest:
    the relapse data holds none of either, and every clean training point."""
    base = base_models(tiny_scenario, 0, base_dir)
    p = base.poisoning
    clean = SeedEvaluator(base, torch.device("cpu"), 0.25).clean
    rows = {tuple(x.flatten().tolist()) for x in clean.x}
    poisons = set(p.forget.tolist())
    assert len(clean) == len(p.train) - len(poisons)
    assert not any(tuple(p.train.x[i].flatten().tolist()) in rows for i in poisons)
    assert all(tuple(p.train.x[i].flatten().tolist()) in rows for i in range(len(p.train)) if i not in poisons)


def test_relapse_leaves_the_trials_checkpoints_bit_identical(tiny_scenario, base_dir):
    plain = run_trial(config(tiny_scenario, base_dir, "gd"))
    with_relapse = run_trial(config(tiny_scenario, base_dir, "gd", relapse=SPEC))
    assert strip(plain) == strip(with_relapse, relapsed=False)
    assert all(r["relapse0.1/steps"] > r["relapse0.02/steps"] > 0 and r["relapse0.1/dtheta"] > 0 for r in with_relapse)


def test_relapse_is_deterministic_per_seed(tiny_scenario, base_dir):
    a = run_trial(config(tiny_scenario, base_dir, "gd", relapse=SPEC))
    b = run_trial(config(tiny_scenario, base_dir, "gd", relapse=SPEC))
    assert strip(a) == strip(b)
    base = base_models(tiny_scenario, 0, base_dir)
    model, clean = base.model("poisoned"), SeedEvaluator(base, torch.device("cpu")).clean
    one, _ = relapse.fine_tune(model, clean, tiny_scenario.recipe, 0.05, 5, seed=0)
    other, _ = relapse.fine_tune(model, clean, tiny_scenario.recipe, 0.05, 5, seed=1)
    assert any(not torch.equal(x, y) for x, y in zip(one.state_dict().values(), other.state_dict().values()))


def test_relapse_length_is_a_fraction_of_retraining_and_costs_the_method_nothing(tiny_scenario, base_dir):
    (row,) = run_trial(config(tiny_scenario, base_dir, "retrain", relapse={"lengths": [0.1], "lr": 0.01}))
    base = base_models(tiny_scenario, 0, base_dir)
    batch = min(tiny_scenario.recipe.batch_size, len(base.poisoning.retain))
    assert row["relapse0.1/steps"] == round(0.1 * base.retrain_units) // (3 * batch)
    assert row["cost/units"] == base.retrain_units and row["cost/relapse_seconds"] > 0


def _scores(model, context):
    grads = gaussian.input_gradients(model, context["clean_x"], context["y"])
    scores, valid = gaussian.gus_scores(grads, context["noise"], context["eps"])
    return scores[valid].numpy()


def test_relapse_of_theta_retrain_keeps_gus_standard_normal_and_a_leak_would_show(tiny_scenario, base_dir):
    """θ_retrain never saw the noise, and relapse data holds no poison: after relapse its GUS scores are still
    N(0, 1) (KS test). The positive control fine-tunes it the same way on the *poisoned* training set: the
    noise leaks in, and the same test rejects (so the first check can fail)."""
    base = base_models(tiny_scenario, 0, base_dir)
    p, recipe = base.poisoning, tiny_scenario.recipe
    n = relapse.steps(1.0, base.retrain_units, recipe.batch_size)  # as long as a whole retraining
    clean = SeedEvaluator(base, torch.device("cpu")).clean
    relapsed, _ = relapse.fine_tune(base.model("retrain"), clean, recipe, recipe.lr, n, seed=0)
    assert stats.kstest(_scores(relapsed, p.context), "norm").pvalue > 0.01
    leaked, _ = relapse.fine_tune(base.model("retrain"), p.train, recipe, recipe.lr, n, seed=0)
    assert stats.kstest(_scores(leaked, p.context), "norm").pvalue < 0.01
