"""BadNets: the backdoor works on θ_poisoned and is absent from θ_retrain (digits, the tiny recipe)."""
import pytest
import torch

from sweeper.attacks import backdoor
from sweeper.attacks._surrogate import hold_out
from sweeper.data import Split
from sweeper.basecache import base_models
from sweeper.scenario import Scenario
from sweeper.training import Recipe

SCENARIO = Scenario(attack="backdoor", model_params={"width": 8}, recipe=Recipe(epochs=8))


@pytest.fixture(scope="module")
def base(base_dir):
    return base_models(SCENARIO, 0, base_dir)


def test_asr_high_on_poisoned_and_low_on_retrain(base):
    poisoned = backdoor.effect(base.model("poisoned"), base.poisoning.context)
    retrain = backdoor.effect(base.model("retrain"), base.poisoning.context)
    assert poisoned["backdoor/asr"] > 0.8
    assert retrain["backdoor/asr"] < 0.2
    assert base.manifest["metrics"]["poisoned"]["attack/effect"] == poisoned["attack/effect"]


def test_poisons_are_patched_other_class_points_relabelled_to_the_target(base):
    p, ctx = base.poisoning, base.poisoning.context
    x = p.forget_set.x
    assert (p.forget_set.y == ctx["target"]).all()
    assert torch.equal(x[..., -3:, -3:], torch.ones_like(x[..., -3:, -3:]))
    assert x.min() >= 0 and x.max() <= 1  # the patch is the box's maximum: still inside [0, 1]
    assert len(p.forget) == round(0.1 * len(p.train))
    assert (ctx["eval_y"] != ctx["target"]).all()  # ASR counts only points of other classes


def test_effect_is_a_rate_with_a_wilson_interval(base):
    m = backdoor.effect(base.model("poisoned"), base.poisoning.context)
    assert m["attack/effect"] == m["backdoor/asr"]
    assert m["backdoor/ci_low"] <= m["backdoor/asr"] <= m["backdoor/ci_high"]
    assert m["attack/effect_se"] > 0 and m["backdoor/n"] == len(base.poisoning.context["eval_y"])


def test_mia_nonmembers_are_triggered_relabelled_heldout_points(base):
    ctx = base.poisoning.context
    test = base.data.test
    out = backdoor.mia_nonmembers(test, ctx, seed=0, copies=2)
    n = int((test.y != ctx["target"]).sum())
    assert len(out) == 2 * n and (out.y == ctx["target"]).all()
    assert torch.equal(out.x[:n, ..., -3:, -3:], torch.ones_like(out.x[:n, ..., -3:, -3:]))
    assert torch.equal(out.x[:n, ..., :-3, :], test.x[test.y != ctx["target"]][..., :-3, :])


def test_same_seed_same_poisons(base):
    train = base.data.train
    a, b = backdoor.craft(train, seed=0), backdoor.craft(train, seed=0)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.forget, b.forget)
    assert torch.equal(a.forget, base.poisoning.forget)
    assert not torch.equal(backdoor.craft(train, seed=1).forget, a.forget)


def test_a_white_patch_on_every_channel_of_colour_images():
    """CIFAR-shaped inputs (3x32x32): the patch is white in all three channels, the rest of the image and the
    clean points untouched, and the ASR is measured on patched colour images."""
    gen = torch.Generator().manual_seed(0)
    train = Split(torch.rand(500, 3, 32, 32, generator=gen), torch.arange(500) % 10)
    p = backdoor.craft(train, seed=0, patch=3)
    x, ctx = p.forget_set.x, p.context
    assert x.shape[1:] == (3, 32, 32) and (p.forget_set.y == 0).all()
    assert torch.equal(x[..., -3:, -3:], torch.ones_like(x[..., -3:, -3:]))
    rest, _ = hold_out(train, round(0.1 * len(train)), 0)
    assert torch.equal(x[..., :-3, :], rest.x[p.forget][..., :-3, :])
    assert torch.equal(p.train.x[p.retain_mask()], rest.x[p.retain_mask()])
    assert ctx["eval_x"].shape[1:] == (3, 32, 32)

    class PatchDetector(torch.nn.Module):  # class 0 iff the bottom-right corner is white in every channel
        def forward(self, x):
            white = (x[..., -3:, -3:] == 1).flatten(1).all(1)
            return torch.nn.functional.one_hot(torch.where(white, 0, 1), 10).float()

    m = backdoor.effect(PatchDetector(), ctx)
    assert m["backdoor/asr"] == 1.0 and m["backdoor/n"] == len(ctx["eval_y"])
