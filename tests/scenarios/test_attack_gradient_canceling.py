"""Gradient Canceling as its authors run it: poisons are added points, unbounded, optimised so that the
classifier weight's clean + poison gradient vanishes at θ_low; the remaining cancel loss is recorded and
checked; effect = held-out error rate. On a linear victim it drops test accuracy (the issue's bar: 5 points
below θ_retrain, mean of seeds 0-2, in a fast test); on the small CNN it does not (an xfail kept as a
measurement, run by hand: pytest -m measurement)."""
import inspect
import statistics

import pytest
import torch

from sweeper import config
from sweeper.attacks import gradient_canceling as gc
from sweeper.attacks._surrogate import hold_out
from sweeper.datasets.digits import load
from sweeper.errors import SweeperError
from sweeper.basecache import base_models

DEFAULTS = {k: p.default for k, p in inspect.signature(gc.craft).parameters.items() if k not in ("train", "seed")}


@pytest.fixture(scope="module")
def train():
    return load().train


@pytest.fixture(scope="module")
def crafted(train):
    return gc.craft(train, seed=0)  # the defaults: a fraction of a second


def test_poisons_are_added_unbounded_and_the_clean_set_is_kept_whole(train, crafted):
    clean, held = hold_out(train, round(0.1 * len(train)), 0)
    n = len(clean)
    assert torch.equal(crafted.forget, torch.arange(n, n + round(0.03 * n)))
    assert torch.equal(crafted.retain.x, clean.x) and torch.equal(crafted.retain.y, clean.y)
    x = crafted.forget_set.x
    assert x.min() < 0 or x.max() > 1  # no pixel box, as in the authors' code
    assert not torch.equal(x, crafted.context["poison_base"])  # the optimisation moved them
    same = (crafted.context["poison_base"].flatten(1)[:, None] == clean.x.flatten(1)[None]).all(-1)
    assert torch.equal(crafted.forget_set.y, clean.y[same.float().argmax(1)])  # their own labels (relabel off)
    with pytest.warns(UserWarning, match="gc/cancelled = 0"):  # inside the box the clean gradient stays
        boxed = gc.craft(train, seed=0, box=True, steps=20)
    assert boxed.forget_set.x.min() >= 0 and boxed.forget_set.x.max() <= 1


def test_theta_low_is_stationary_for_the_linear_weights_on_clean_plus_poisons(train, crafted):
    """Recomputed here from θ_low and the stored (float32) poisons, not read from what craft recorded."""
    clean, _ = hold_out(train, round(0.1 * len(train)), 0)
    low, _ = gc.low_target(train, clean, seed=0, ball=DEFAULTS["ball"], early_epochs=DEFAULTS["early_epochs"],
                           num_classes=10)
    low = low.double()
    g_clean = gc.weight_grad(low, clean.x.double(), clean.y)
    poisons = crafted.forget_set
    g_total = g_clean + gc.weight_grad(low, poisons.x.double(), poisons.y)
    assert g_total.norm() < 1e-2 * g_clean.norm()
    ctx = crafted.context
    assert ctx["cancelled"] and 0 <= ctx["cancel_loss"] <= DEFAULTS["max_cancel"]
    assert ctx["cancel_loss"] == pytest.approx(float(g_total.square().sum() / g_clean.square().sum()), abs=1e-4)
    assert gc.effect(low.float(), ctx)["gc/cancel_loss"] == ctx["cancel_loss"]


def test_a_cancel_loss_above_the_threshold_is_reported_not_accepted(train):
    with pytest.warns(UserWarning, match="recorded as gc/cancelled = 0"):
        poor = gc.craft(train, seed=0, steps=5)
    assert not poor.context["cancelled"] and poor.context["cancel_loss"] > DEFAULTS["max_cancel"]
    model = config.load("digits_gc_linear").scenario.build_model(load(), 0)
    assert gc.effect(model, poor.context)["gc/cancelled"] == 0.0


def test_a_diverging_step_is_an_error(train):
    with pytest.raises(SweeperError, match="diverged.*lr=10"):
        gc.craft(train, seed=0, lr=10.0)


def test_effect_is_the_heldout_error_rate(crafted):
    ctx = crafted.context

    class Fixed(torch.nn.Module):  # right on every held-out point but the first ten
        def forward(self, x):
            y = ctx["eval_y"].clone()
            y[:10] = (y[:10] + 1) % 10
            return torch.nn.functional.one_hot(y, 10).float()

    m = gc.effect(Fixed(), ctx)
    n = len(ctx["eval_y"])
    assert m["attack/effect"] == m["gc/error"] == pytest.approx(10 / n) and m["gc/accuracy"] == 1 - m["gc/error"]
    assert m["attack/effect_se"] == pytest.approx(((10 / n) * (1 - 10 / n) / n) ** 0.5)
    assert gc.ACCURACY_IS_EFFECT and gc.RETRAIN_EFFECT is None


def test_mia_nonmembers_are_heldout_points_labelled_as_the_poisons_were(crafted):
    test = load().test
    out = gc.mia_nonmembers(test, crafted.context, seed=0, copies=2)  # relabel off: their own labels
    assert len(out) == 2 * len(test) and torch.equal(out.x[: len(test)], test.x)
    assert torch.equal(out.y, test.y.repeat(2))
    relabelled = {**crafted.context, "relabel": True}
    out = gc.mia_nonmembers(test, relabelled, seed=0, copies=2)
    assert (out.y != test.y.repeat(2)).all()
    assert torch.equal(out.y, gc.mia_nonmembers(test, relabelled, seed=0, copies=2).y)


def test_same_seed_same_poisons(train, crafted):
    again = gc.craft(train, seed=0)
    assert torch.equal(again.train.x, crafted.train.x) and torch.equal(again.train.y, crafted.train.y)
    rng = torch.get_rng_state()
    other = gc.craft(train, seed=1)
    assert torch.equal(torch.get_rng_state(), rng)
    assert not torch.equal(other.forget_set.x, crafted.forget_set.x)


def _drops(experiment: str, base_dir: str) -> list[float]:
    """Test accuracy of θ_retrain minus θ_poisoned for seeds 0-2 of a bundled experiment's scenario."""
    scenario = config.load(experiment).scenario
    refs = [base_models(scenario, seed, base_dir).manifest["metrics"] for seed in (0, 1, 2)]
    return [r["retrain"]["acc/test"] - r["poisoned"]["acc/test"] for r in refs]


def test_drops_test_accuracy_of_a_linear_victim_by_five_points_against_retrain(base_dir):
    """The acceptance bar of the issue, on digits_gc_linear as shipped (about 3 s for the three seeds).
    Measured: 0.217, 0.327, 0.207 (θ_poisoned 0.733/0.630/0.753 vs θ_retrain 0.950/0.957/0.960)."""
    assert statistics.mean(_drops("digits_gc_linear", base_dir)) >= 0.05


@pytest.mark.measurement  # a non-strict xfail passes whatever it measures: run by hand (-m measurement), not in CI
@pytest.mark.xfail(strict=False, reason=(
    "measured: test accuracy θ_poisoned vs θ_retrain 0.987/0.987, 0.980/0.990, 0.993/0.980 (gradient_canceling.yaml: "
    "digits, small_cnn width 16, 60 epochs, seeds 0-2; poisons crafted against the linear θ_low, cancel loss "
    "< 1.1e-6 on each): poisons that make a linear model stationary do not move a CNN trained from scratch. "
    "The removed CNN-surrogate variant measured 0.987/0.987, 0.983/0.990, 0.983/0.980 (and no drop above 1 "
    "point with θ_low at -0.2, 10% poisons, 3000 steps, poisons outside the box, or 16x16 digits)"))
def test_drops_test_accuracy_of_the_small_cnn_by_five_points_against_retrain(base_dir):
    assert statistics.mean(_drops("gradient_canceling", base_dir)) >= 0.05
