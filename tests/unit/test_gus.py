"""The Gaussian Unlearning Score: exactly N(0, 1) on models that never saw the noise; negative on
models trained on it."""
import math

import pytest
import torch

from sweeper.attacks import gaussian
from sweeper.data import Split, generator


def test_gus_is_standard_normal_on_a_model_that_never_saw_the_noise(tiny_base):
    """θ_retrain never saw any poison. Draw many independent noise vectors for its gradients: the
    scores' mean and std must be N(0, 1) within sampling error (4 standard errors)."""
    model = tiny_base.model("retrain")
    clean = tiny_base.poisoning.context
    x, y = clean["clean_x"].repeat(10, 1, 1, 1), clean["y"].repeat(10)
    noise = 0.7 * torch.randn(x.shape, generator=generator(123, 5))
    grads = gaussian.input_gradients(model, x, y)
    scores, valid = gaussian.gus_scores(grads, noise, 0.7)
    s = scores[valid]
    n = len(s)
    assert n > 2000
    assert abs(float(s.mean())) < 4 / math.sqrt(n)
    assert abs(float(s.std()) - 1) < 4 / math.sqrt(2 * n)


def test_effect_on_an_untrained_model_is_null(tiny_base):
    """A freshly initialised model never saw anything: its z is an N(0, 1) draw."""
    model = tiny_base.scenario.build_model(tiny_base.data, seed=99).eval()
    m = gaussian.effect(model, tiny_base.poisoning.context)
    assert abs(m["gus/z"]) < 4 and m["gus/n_valid"] == len(tiny_base.poisoning.forget)


def test_positive_control_a_model_trained_on_the_poisons_scores_negative(quickstart_base):
    """θ_poisoned of the quickstart scenario (seed 0) was trained on x + ξ: z must be below -3."""
    m = gaussian.effect(quickstart_base.model("poisoned"), quickstart_base.poisoning.context)
    assert m["gus/z"] < -3
    assert m["attack/effect"] == -m["gus/mean"]


def test_zero_gradients_are_excluded_not_scored():
    grads = torch.zeros(5, 1, 2, 2)
    grads[0, 0, 0, 0] = 1.0
    noise = torch.ones(5, 1, 2, 2)
    scores, valid = gaussian.gus_scores(grads, noise, 1.0)
    assert valid.tolist() == [True, False, False, False, False] and float(scores[0]) == 1.0


def test_noise_is_regenerable_from_the_seed(tiny_base):
    again = gaussian.craft(tiny_base.data.train, seed=0, fraction=0.2, eps=1.0)
    assert torch.equal(again.context["noise"], tiny_base.poisoning.context["noise"])
    assert torch.equal(again.forget, tiny_base.poisoning.forget)
    other = gaussian.craft(tiny_base.data.train, seed=1, fraction=0.2, eps=1.0)
    assert not torch.equal(other.forget, tiny_base.poisoning.forget)
    assert isinstance(again.train, Split) and again.train.x.dtype == torch.float32


def test_membership_auc_equals_sklearns_with_and_without_ties():
    """metrics.auc (the membership-inference AUC, computed without importing scikit-learn in workers) is
    sklearn's roc_auc_score, ties included."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from sweeper.metrics import auc

    rng = np.random.default_rng(0)
    for pos, neg in ((rng.normal(0.3, 1, 240), rng.normal(0, 1, 1000)),
                     (rng.integers(0, 5, 240).astype(float), rng.integers(0, 5, 700).astype(float)),  # many ties
                     (np.ones(3), np.ones(4)), (np.array([2.0]), np.array([1.0, 3.0]))):
        labels = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
        assert auc(pos, neg) == pytest.approx(roc_auc_score(labels, np.r_[pos, neg]), abs=1e-12)
