"""Experiment files are validated on load: each mistake is one clear error."""
import copy

import pytest
import yaml

from sweeper import config
from sweeper.errors import SweeperError

GOOD = {
    "name": "t", "dataset": {"name": "digits"}, "model": {"name": "small_cnn", "width": 8},
    "attack": {"name": "gaussian", "fraction": 0.2, "eps": 1.0}, "methods": ["gd", "ga"],
    "budgets": [0.02, 0.04], "trials": 2, "seeds": [0], "recipe": {"epochs": 5},
    "profiles": {"full": {"trials": 20, "seeds": [0, 1, 2]}},
}


def edited(path, value):
    doc = copy.deepcopy(GOOD)
    *parents, last = path
    target = doc
    for p in parents:
        target = target[p]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return doc


def test_bundled_quickstart_loads_with_every_searchable_method():
    exp = config.load()
    assert exp.name == "quickstart" and set(exp.methods) == set(config.searchable_methods("image"))
    assert exp.budgets == (0.02, 0.04, 0.06, 0.08, 0.10)


def test_profiles_override_the_base_values():
    exp = config.parse(GOOD, "t.yaml", profile="full")
    assert exp.trials == 20 and exp.seeds == (0, 1, 2) and exp.scenario.recipe.epochs == 5


@pytest.mark.parametrize("path, value, message", [
    (["trials"], KeyError, "missing key"),
    (["colour"], "red", "unknown key"),
    (["trials"], "ten", "trials must be a positive integer"),
    (["budgets"], [0.02, 1.5], "outside \\(0, 1\\]"),
    (["budgets"], [0.0], "outside \\(0, 1\\]"),
    (["budgets"], ["0.1"], "must be a number"),
    (["methods"], ["gd", "magic"], "unknown method 'magic'; known: "),
    (["attack", "name"], "laser", "unknown attack 'laser'"),
    (["attack", "eps"], "1e-1", "eps must be a number"),
    (["attack", "strength"], 3, "unknown parameter 'strength'"),
    (["model", "width"], 8.5, "width must be an integer"),
    (["recipe", "epochs"], 0, "recipe.epochs must be positive"),
    (["seeds"], [0, 0], "seeds lists a value twice"),
    (["profile"], "huge", "unknown profile 'huge'"),
    (["spaces"], {"gd": {"params": {"lr": {"low": 0.5, "high": 0.1}}}}, "low 0.5 > high 0.1"),
])
def test_each_mistake_is_one_clear_error(path, value, message):
    with pytest.raises(SweeperError, match=message):
        config.parse(edited(path, value), "t.yaml")


def test_missing_file_names_the_bundled_experiments(tmp_path):
    with pytest.raises(SweeperError, match="not found \\(bundled: .*quickstart"):
        config.load(tmp_path / "nope.yaml")


def test_invalid_yaml_is_one_line(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("trials: [1, 2\n")
    with pytest.raises(SweeperError, match="not valid YAML") as e:
        config.load(p)
    assert "\n" not in str(e.value)


def test_a_file_round_trips(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text(yaml.safe_dump(GOOD))
    assert config.load(p).methods == ("gd", "ga")


def test_attack_may_be_a_list_one_scenario_each():
    doc = {**GOOD, "attack": [{"name": "gaussian", "eps": 0.5}]}
    exp = config.parse(doc, "t.yaml")
    assert [s.attack for s in exp.scenarios] == ["gaussian"] and exp.scenarios[0].attack_params == {"eps": 0.5}
    with pytest.raises(SweeperError, match="lists a name twice"):
        config.parse({**GOOD, "attack": ["gaussian", {"name": "gaussian", "eps": 0.3}]}, "t.yaml")
    with pytest.raises(SweeperError, match="attack\\[1\\]: unknown parameter 'strength'"):
        config.parse({**GOOD, "attack": ["gaussian", {"name": "gaussian", "strength": 1}]}, "t.yaml")
