"""Generated from the method registry: every search space matches its method and builds."""
import optuna
import pytest

from sweeper import config, spaces
from sweeper import methods as _methods
from sweeper.errors import SweeperError
from sweeper.registry import methods


@pytest.mark.parametrize("name", config.searchable_methods())
def test_space_matches_keyword_only_hyperparameters(name):
    module = methods.get(name)
    hp = _methods.hyperparameters(module)
    space = spaces.load(name, module, hp)
    assert set(space.params) == set(hp) and hp, "a searched method has at least one hyperparameter"
    for dist in space.params.values():
        assert isinstance(dist, optuna.distributions.BaseDistribution)
    for point in [hp, *space.points]:  # defaults and listed points lie inside the space
        for k, v in point.items():
            assert space.params[k]._contains(space.params[k].to_internal_repr(v))


@pytest.mark.parametrize("spec, message", [
    ({"params": {"lr": {"low": 0.1, "high": 0.01}}}, "low 0.1 > high 0.01"),
    ({"params": {"lr": {"low": "1e-4", "high": 0.1}}}, "must be a number"),
    ({"params": {"lr": {"low": 1.0e-4}}}, "needs low and high"),
    ({"params": {"lr": {"low": 0.0, "high": 0.1, "log": True}}}, "log range needs low > 0"),
    ({"params": {"learning_rate": {"low": 1.0e-4, "high": 0.1}}}, "must equal gd's"),
    ({"params": {"lr": {"low": 0.02, "high": 0.1}}}, "lr=0.01 lies outside"),  # default outside
    ({"params": {"lr": {"low": 1.0e-4, "high": 0.1}}, "points": [{"lr": 5.0}]}, "lies outside"),
    ({"params": {"lr": {"choices": []}}}, "non-empty list"),
])
def test_bad_spaces_give_one_clear_error(spec, message):
    with pytest.raises(SweeperError, match=message):
        spaces.parse("gd", spec, {"lr": 0.01}, "test.yaml")
