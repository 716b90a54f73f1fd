"""Generated from the method registry: every method respects its budget; the core methods change what
they are defined to change."""
import pytest

from sweeper import config
from sweeper import methods as _methods
from sweeper.registry import methods
from helpers import mean_loss, run_method, states_equal

BUDGETS = (0.01, 0.02, 0.03)
# A fixed-cost method costs ~0.1-0.15 of retraining on the tiny scenario: over budget at BUDGETS, reported
# at 0.3, so the test sees both lists non-empty (over-budget checkpoints must all precede reported ones).
FIXED_BUDGETS = BUDGETS + (0.3,)
# a checkpoint is met at most one step short: the largest is SCRUB's forget batch (2 x 64 examples at 4 units)
MAX_STEP_SLACK = 4 * 2 * 64


@pytest.mark.parametrize("name", config.searchable_methods())
def test_every_method_stays_within_budget(tiny_base, name):
    fixed = _methods.kind(methods.get(name)) == "fixed"
    budgets = FIXED_BUDGETS if fixed else BUDGETS
    model, budget, seen = run_method(tiny_base, name, budgets)
    limits = dict(zip(budgets, budget.limits))
    reported, over = [f for f, _, _ in seen], budget.over_budget
    assert sorted(over) + reported == sorted(over + reported) == list(budgets)  # over budget only below the rest
    if not fixed:
        assert not over
        for fraction, units, _ in seen:
            assert limits[fraction] - MAX_STEP_SLACK <= units <= limits[fraction]
    else:  # fixed cost: over budget below what it spent, reported at or above
        assert over and reported
        for fraction, units, _ in seen:
            assert units <= limits[fraction]
    assert budget.spent <= budget.total


def test_ga_raises_forget_loss(tiny_base):
    before = mean_loss(tiny_base.model("poisoned"), tiny_base.poisoning.forget_set)
    model, _, _ = run_method(tiny_base, "ga", (0.02,), lr=1.0e-2)
    assert mean_loss(model, tiny_base.poisoning.forget_set) > before + 0.05


def test_gd_lowers_retain_loss(tiny_base):
    before = mean_loss(tiny_base.model("poisoned"), tiny_base.poisoning.retain)
    model, _, _ = run_method(tiny_base, "gd", (0.05,), lr=1.0e-2)
    assert mean_loss(model, tiny_base.poisoning.retain) < before


def test_ngd_with_zero_noise_is_gd_bit_for_bit(tiny_base):
    gd, _, _ = run_method(tiny_base, "gd", (0.02,), lr=1.0e-2)
    ngd, _, _ = run_method(tiny_base, "ngd", (0.02,), lr=1.0e-2, sigma=0.0)
    noisy, _, _ = run_method(tiny_base, "ngd", (0.02,), lr=1.0e-2, sigma=1.0e-3)
    assert states_equal(gd.state_dict(), ngd.state_dict())
    assert not states_equal(gd.state_dict(), noisy.state_dict())  # the noise is really applied


def test_neggrad_plus_ascends_on_forget_when_its_weight_dominates(tiny_base):
    before = mean_loss(tiny_base.model("poisoned"), tiny_base.poisoning.forget_set)
    model, _, _ = run_method(tiny_base, "neggrad_plus", (0.02,), lr=1.0e-2, beta=0.2)
    assert mean_loss(model, tiny_base.poisoning.forget_set) > before


def anytime_methods():
    """Every registered method but those of fixed cost by definition: KIND "fixed" (one pass, SSD and
    Fisher forgetting) or "reference" (`none`, `retrain`: a declared COST). Their model is the same at
    every checkpoint they reach, so there is no shorter trial to compare with."""
    return [n for n in methods.names() if _methods.kind(methods.get(n)) == "anytime"]


@pytest.mark.parametrize("name", anytime_methods())
def test_checkpoint_equals_a_shorter_trial(tiny_base, name):
    """docs/architecture.md, Budgets and checkpoints: the model at checkpoint 0.04 of a 0.06 trial, evaluated in between
    (eval mode, as a trial does), is the model of a 0.04 trial. At the method's defaults; the text-only
    methods (npo, grad_diff) are model-agnostic and run on the tiny digits CNN like the rest."""
    model = tiny_base.model("poisoned")
    _, _, long = run_method(tiny_base, name, (0.02, 0.04, 0.06), model=model,
                            on_checkpoint=lambda *_: mean_loss(model, tiny_base.poisoning.retain))
    _, _, short = run_method(tiny_base, name, (0.04,))
    (f_long, u_long, s_long), (f_short, u_short, s_short) = long[1], short[0]
    assert f_long == f_short == 0.04 and u_long == u_short
    assert states_equal(s_long, s_short)  # buffers (BatchNorm statistics) included
    assert not states_equal(long[-1][2], s_short)  # and training went on after it


def test_references_cost_what_they_are():
    assert methods.get("none").COST == 0.0 and methods.get("retrain").COST == 1.0
