import pytest

from sweeper.budget import Budget, BudgetExceeded


def make(checkpoints=(0.1, 0.2), total=1000):
    fired = []
    return Budget(total, list(checkpoints), lambda f, u: fired.append((f, u))), fired


def test_steps_are_never_trimmed_and_never_pass_a_checkpoint():
    b, fired = make()
    spent = []
    while k := b.room(want=32, per_item=3):
        b.charge(3 * k)
        spent.append(3 * k)
    assert fired == [(0.1, 96), (0.2, 192)]  # one more step of 96 would pass 100 (and 200)
    assert set(spent) == {96}  # step boundaries do not depend on where the checkpoints are


def test_exact_landing_fires_immediately_and_nothing_is_left():
    b, fired = make((0.1,), total=960)
    while k := b.room(want=32, per_item=3):
        b.charge(3 * k)
    assert fired == [(0.1, 96)] and not b.active and b.room(1, 1) == 0


def test_charging_past_a_checkpoint_raises():
    b, _ = make()
    with pytest.raises(BudgetExceeded):
        b.charge(101)


def test_fixed_cost_marks_smaller_checkpoints_over_budget():
    b, fired = make((0.1, 0.2, 0.3))
    b.charge_fixed(150)
    b.finish()
    assert b.over_budget == [0.1] and fired == [(0.2, 150), (0.3, 150)]


@pytest.mark.parametrize("bad", [[0.0], [1.5], []])
def test_checkpoints_must_be_fractions(bad):
    with pytest.raises(ValueError):
        Budget(100, bad, lambda f, u: None)


def test_a_fixed_cost_above_the_last_checkpoint_runs_nothing():
    b, fired = make((0.1, 0.2))
    assert b.charge_fixed(500) is False
    b.finish()
    assert b.over_budget == [0.1, 0.2] and fired == [] and b.spent == 0
