"""Witches' Brew: clean-label poisons inside the ε-ball and the pixel box, disjoint subsets of each
target's adversarial class, targets from the victim's test split and a surrogate built like the victim,
a success rate with a Wilson interval and the adversarial-class probability — and whether it works at all."""

import pytest
import torch

from sweeper.attacks import Victim, witches_brew
from sweeper.attacks._surrogate import hold_out
from sweeper.datasets.digits import load
from sweeper.registry import models
from sweeper.basecache import base_models
from sweeper.scenario import Scenario
from sweeper.training import CROP_PAD, Recipe

QUICK = {"restarts": 1, "steps": 5, "surrogate_width": 4, "surrogate_epochs": 2}
TINY = {"restarts": 1, "steps": 3}  # with a victim: its own model and recipe


@pytest.fixture(scope="module")
def train():
    return load().train


@pytest.fixture(scope="module")
def crafted(train):
    return witches_brew.craft(train, seed=0, **QUICK)


def victim(name="small_cnn", recipe=Recipe(epochs=2), built=None, **params):
    """The digits scenario's Victim for model `name`; `built` collects every model its builder makes."""
    data = load()

    def build(seed):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = models.get(name)(data, **params)
        if built is not None:
            built.append(model)
        return model
    return Victim(build, recipe, data.test, data.num_classes)


@pytest.fixture(scope="module")
def crafted_for_victim(train):
    built = []
    return witches_brew.craft(train, seed=0, victim=victim(width=4, built=built), **TINY), built


def test_perturbations_stay_in_the_eps_ball_and_the_pixel_box(train, crafted):
    eps = crafted.context["eps"]
    delta = crafted.context["poison_delta"]
    assert delta.abs().max() <= eps + 1e-6 and delta.abs().max() > 0
    x = crafted.forget_set.x
    assert x.min() >= 0 and x.max() <= 1
    rest, _ = hold_out(train, 4, 0)
    assert torch.allclose(x - rest.x[crafted.forget], delta)
    others = crafted.retain_mask()
    assert torch.equal(crafted.train.x[others], rest.x[others])  # only poisons are perturbed


def test_clean_label_disjoint_subsets_of_the_adversarial_classes(train, crafted):
    ctx = crafted.context
    n_per_target = round(0.01 * (len(train) - 4))
    assert len(crafted.forget) == 4 * n_per_target == len(crafted.forget.unique())
    rest, targets = hold_out(train, 4, 0)
    assert torch.equal(crafted.train.y, rest.y)  # labels never change
    assert torch.equal(ctx["target_x"], targets.x) and (ctx["adv_y"] != ctx["target_y"]).all()
    counts = torch.bincount(crafted.forget_set.y, minlength=10)
    assert torch.equal(counts, n_per_target * torch.bincount(ctx["adv_y"], minlength=10))


def test_effect_counts_targets_sent_to_their_adversarial_class(crafted):
    ctx = crafted.context

    class Fixed(torch.nn.Module):  # predicts the adversarial class for the first three targets only
        def forward(self, x):
            out = torch.nn.functional.one_hot(ctx["target_y"], 10).float()
            out[:3] = torch.nn.functional.one_hot(ctx["adv_y"][:3], 10).float()
            return out

    m = witches_brew.effect(Fixed(), ctx)
    assert m["attack/effect"] == m["targeted/success"] == 0.75 and m["targeted/n"] == 4
    assert 0.2 < m["targeted/ci_low"] < 0.75 < m["targeted/ci_high"] < 1
    assert m["attack/effect_se"] > 0
    hit = torch.e / (torch.e + 9)  # softmax of a one-hot row at its hot class
    assert m["targeted/adv_prob"] == pytest.approx((3 * hit + 1 / (torch.e + 9)) / 4)


def test_mia_nonmembers_are_base_class_points(crafted):
    test = load().test
    out = witches_brew.mia_nonmembers(test, crafted.context, seed=0, copies=3)
    keep = torch.isin(test.y, crafted.context["adv_y"])
    assert len(out) == 3 * int(keep.sum()) and torch.isin(out.y, crafted.context["adv_y"]).all()


def test_same_seed_same_poisons(train, crafted):
    again = witches_brew.craft(train, seed=0, **QUICK)
    assert torch.equal(again.train.x, crafted.train.x) and torch.equal(again.forget, crafted.forget)
    rng = torch.get_rng_state()
    other = witches_brew.craft(train, seed=1, **QUICK)
    assert torch.equal(torch.get_rng_state(), rng)  # the global RNG is never touched
    assert not torch.equal(other.forget, crafted.forget)


def test_with_a_victim_targets_come_from_its_test_split(train, crafted_for_victim):
    crafted, _ = crafted_for_victim
    ctx, test = crafted.context, load().test
    idx = ctx["target_index"]
    assert len(idx) == 4 == len(idx.unique())
    assert torch.equal(ctx["target_x"], test.x[idx]) and torch.equal(ctx["target_y"], test.y[idx])
    assert (ctx["adv_y"] != ctx["target_y"]).all()
    # nothing is held out of the training set: every point is trained on, labels unchanged (clean label)
    assert len(crafted.train) == len(train) and torch.equal(crafted.train.y, train.y)
    assert len(crafted.forget) == 4 * round(0.01 * len(train)) == len(crafted.forget.unique())
    assert torch.isin(crafted.forget_set.y, ctx["adv_y"]).all()
    delta = crafted.train.x - train.x
    assert delta[crafted.retain_mask()].abs().max() == 0  # only poisons are perturbed
    assert 0 < delta.abs().max() <= ctx["eps"] + 1e-6
    x = crafted.forget_set.x
    assert x.min() >= 0 and x.max() <= 1
    assert torch.allclose(ctx["poison_delta"], delta[crafted.forget])


def test_adv_prob_is_a_probability_beside_the_success_rate(crafted_for_victim):
    crafted, built = crafted_for_victim
    m = witches_brew.effect(built[0], crafted.context)
    assert 0 <= m["targeted/adv_prob"] <= 1 and m["targeted/n"] == 4
    assert 0 <= m["attack/effect"] == m["targeted/success"] <= 1


@pytest.mark.parametrize("name, params", [("linear", {}), ("resnet18", {"width": 4})])
def test_the_surrogate_is_the_victims_model_trained_with_its_recipe(train, name, params):
    built = []
    recipe = Recipe(epochs=1, batch_size=128)
    crafted = witches_brew.craft(train, seed=0, victim=victim(name, recipe, built, **params), targets=1,
                                 restarts=1, steps=1)
    shapes = [p.shape for p in victim(name, **params).build(0).parameters()]
    assert len(built) == 1 and [p.shape for p in built[0].parameters()] == shapes  # the victim's architecture
    per_step = 6 * len(crafted.forget) + 3
    assert crafted.craft_units == recipe.retrain_units(len(train)) + per_step  # trained with the victim's recipe
    longer = witches_brew.craft(train, seed=0, victim=victim(name, recipe, **params), targets=1, restarts=1,
                                steps=1, surrogate_epochs=2)  # an explicit override
    assert longer.craft_units == 2 * recipe.retrain_units(len(train)) + per_step


def test_a_width_override_swaps_in_a_small_cnn(train):
    built = []
    crafted = witches_brew.craft(train, seed=0, victim=victim("linear", built=built), targets=1, restarts=1,
                                 steps=1, surrogate_width=4)
    assert built == [] and len(crafted.forget) == round(0.01 * len(train))


def test_diff_augment_shifts_and_flips_differentiably():
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    centre = torch.tensor([[0.5, 0.5, 0.0]]).repeat(3, 1)
    assert torch.allclose(witches_brew.diff_augment(x, centre), x, atol=1e-5)  # no shift, no flip: identity
    flip = torch.tensor([[0.5, 0.5, 1.0]]).repeat(3, 1)
    assert torch.allclose(witches_brew.diff_augment(x, flip), x.flip(-1), atol=1e-5)
    one_right = torch.tensor([[0.5 + 0.5 / CROP_PAD, 0.5, 0.0]]).repeat(3, 1)  # a shift of one pixel
    out = witches_brew.diff_augment(x, one_right)
    assert torch.allclose(out[..., :-1], x[..., 1:], atol=1e-5) and out[..., -1].abs().max() < 1e-6
    delta = torch.zeros_like(x, requires_grad=True)
    draws = torch.rand(3, 3, generator=torch.Generator().manual_seed(1))
    (witches_brew.diff_augment(x + delta, draws) ** 2).sum().backward()
    assert delta.grad is not None and delta.grad.abs().sum() > 0  # gradients reach Δ through the resampling


@pytest.mark.parametrize("augment", [False, True])
def test_crafting_augments_exactly_when_the_victims_recipe_does(train, monkeypatch, augment):
    calls = []

    def spy(x, draws, shift=CROP_PAD):
        calls.append(len(x))
        return x  # identity: what crafting without augmentation must see

    monkeypatch.setattr(witches_brew, "diff_augment", spy)
    recipe = Recipe(epochs=1, augment=augment)
    run = witches_brew.craft(train, seed=0, targets=1, victim=victim(recipe=recipe, width=4), **TINY)
    assert calls == ([len(run.forget)] * TINY["steps"] if augment else [])
    assert 0 < run.context["poison_delta"].abs().max() <= run.context["eps"] + 1e-6


@pytest.mark.measurement  # a non-strict xfail passes whatever it measures: run by hand (-m measurement), not in CI
@pytest.mark.xfail(strict=False, reason=(
    "measured with the reference's step size and the victim's own model and recipe as surrogate (targets from "
    "the test split): 0 of 12 targets on θ_poisoned and 0 of 12 on θ_retrain (digits, small_cnn width 16, "
    "60 epochs, seeds 0-2, ε=16/255, 1% per target, 8 restarts x 250 steps; crafting 43-81 s on one thread, "
    "final alignment loss 0.24-0.83); the adversarial-class probability stays ~1e-6 on both (1.0e-6-2.0e-6 "
    "poisoned, 5e-8-1.4e-5 retrain). Before (τ·ε steps, small_cnn surrogate, targets held out of train): 0/12, "
    "also 0/8 at ε=32/255 with 4% per target, 0/8 on digits upsampled to 16x16, 0/12 at ε=32/255 with 10% per "
    "target and 0/16 with 8 targets"))
def test_succeeds_on_a_clear_majority_of_targets_and_rarely_after_retraining(base_dir):
    scenario = Scenario(attack="witches_brew", model_params={"width": 16}, recipe=Recipe(epochs=60))
    hits_p = hits_r = n = 0
    for seed in (0, 1, 2):
        base = base_models(scenario, seed, base_dir)
        refs = base.manifest["metrics"]
        k = refs["poisoned"]["targeted/n"]
        hits_p += round(refs["poisoned"]["targeted/success"] * k)
        hits_r += round(refs["retrain"]["targeted/success"] * k)
        n += k
    assert hits_p / n > 2 / 3
    assert hits_r / n < 0.2
