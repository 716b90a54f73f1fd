"""Gradient Canceling: poisons are added points inside the pixel box, optimised to cancel the clean
gradient at θ_low; effect = held-out error rate — and whether it drops accuracy at all."""
import pytest
import torch

from sweeper.attacks import gradient_canceling as gc
from sweeper.attacks._surrogate import hold_out
from sweeper.datasets.digits import load
from sweeper.scenario import Scenario, base_models
from sweeper.training import Recipe

QUICK = {"steps": 20, "surrogate_width": 4, "surrogate_epochs": 2, "low_drop": 0.2}


@pytest.fixture(scope="module")
def train():
    return load().train


@pytest.fixture(scope="module")
def crafted(train):
    return gc.craft(train, seed=0, **QUICK)


def test_poisons_are_added_inside_the_box_and_the_clean_set_is_kept_whole(train, crafted):
    clean, held = hold_out(train, round(0.1 * len(train)), 0)
    n = len(clean)
    assert torch.equal(crafted.forget, torch.arange(n, n + round(0.03 * n)))
    assert torch.equal(crafted.retain.x, clean.x) and torch.equal(crafted.retain.y, clean.y)
    x = crafted.forget_set.x
    assert x.min() >= 0 and x.max() <= 1
    assert not torch.equal(x, crafted.context["poison_base"])  # the optimisation moved them


def test_canceling_lowers_the_gradient_norm_at_theta_low(crafted):
    ctx = crafted.context
    assert ctx["low_acc_train"] <= ctx["surrogate_acc_train"] - 0.2
    assert ctx["cancel_loss"] < 1.0  # ‖G_clean + G_poison‖² below ‖G_clean‖²: poisons cancel part of it


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


def test_mia_nonmembers_are_heldout_points_with_another_label(crafted):
    test = load().test
    out = gc.mia_nonmembers(test, crafted.context, seed=0, copies=2)
    assert len(out) == 2 * len(test) and torch.equal(out.x[: len(test)], test.x)
    assert (out.y != test.y.repeat(2)).all()
    assert torch.equal(out.y, gc.mia_nonmembers(test, crafted.context, seed=0, copies=2).y)


def test_same_seed_same_poisons(train, crafted):
    again = gc.craft(train, seed=0, **QUICK)
    assert torch.equal(again.train.x, crafted.train.x) and torch.equal(again.train.y, crafted.train.y)
    rng = torch.get_rng_state()
    other = gc.craft(train, seed=1, **QUICK)
    assert torch.equal(torch.get_rng_state(), rng)
    assert not torch.equal(other.forget_set.x, crafted.forget_set.x)


@pytest.mark.slow
@pytest.mark.xfail(strict=False, reason=(
    "measured: test accuracy θ_poisoned vs θ_retrain 0.987/0.987, 0.983/0.990, 0.983/0.980 (digits, small_cnn "
    "width 16, 60 epochs, seeds 0-2, defaults: 3% poisons, 1000 steps, θ_low at −0.5 train accuracy; crafting "
    "24-28 s); no drop above 1 point either with θ_low at −0.2, 10% poisons, 3000 steps, poisons outside the "
    "box, or digits upsampled to 16x16"))
def test_drops_test_accuracy_by_five_points_against_retrain(base_dir):
    scenario = Scenario(attack="gradient_canceling", model_params={"width": 16}, recipe=Recipe(epochs=60))
    base = base_models(scenario, 0, base_dir)
    refs = base.manifest["metrics"]
    assert refs["retrain"]["acc/test"] - refs["poisoned"]["acc/test"] >= 0.05
