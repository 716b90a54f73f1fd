"""The experiment schema (sweeper/schema.py): strict types (YAML `true` is no integer, a quoted "8" no number,
an integer is a number), one line per mistake naming the file and the key, every key documented once, and
command-line options checked by the same fields (config.apply_options)."""
import pytest

from sweeper import config, schema
from sweeper.errors import SweeperError

FILE = """dataset: digits
model: {name: small_cnn, width: 8}
attack: {name: gaussian, fraction: 0.2, eps: 1.0}
methods: [gd]
budgets: [0.02, 0.1]
trials: 2
seeds: [0]
fresh_seeds: []
"""


def load(tmp_path, extra: str = "", base: str = FILE, **kw):
    """The file with `extra` lines replacing the keys they set, written as YAML text and loaded."""
    lines = dict(line.split(":", 1) for line in base.splitlines())
    lines.update(line.split(":", 1) for line in extra.splitlines())
    path = tmp_path / "exp.yaml"
    path.write_text("".join(f"{k}:{v}\n" for k, v in lines.items()))
    return config.load(str(path), **kw)


def refused(tmp_path, extra: str) -> str:
    with pytest.raises(SweeperError) as e:
        load(tmp_path, extra)
    text = str(e.value)
    assert "\n" not in text and text.startswith(f"{tmp_path / 'exp.yaml'}: "), text
    return text.split(": ", 1)[1]


@pytest.mark.parametrize("extra, message", [
    ("trials: true", "trials must be a positive integer, got true"),  # bool is no int, as YAML means it
    ('trials: "8"', "trials must be a positive integer, got '8'"),    # a quoted string is no number
    ("trials: 2.0", "trials must be a positive integer, got 2.0"),
    ('budgets: ["0.1"]', "budget '0.1' must be a number"),
    ("budgets: [true]", "budget true must be a number"),
    ("budgets: 0.1", "budgets must be a non-empty list of fractions of retraining cost, got 0.1"),
    ("delta: 1", "delta must be a number in (0, 1), got 1"),  # an integer reads as a number, yet lies outside
    ("delta: false", "delta must be a number in (0, 1), got false"),
    ("gpus_per_trial: '0.5'", "gpus_per_trial must be a number in (0, 1], got '0.5'"),
    ("seeds: [0, true]", "seeds[1] must be a non-negative integer, got true"),
    ("seeds: [0, 0]", "seeds lists a value twice"),
    ("methods: [gd, 3]", "methods[1] must be a method's name, got 3"),
    ("recipe: {epochs: true}", "recipe.epochs must be an integer, got true"),
    ("recipe: {lr: '0.1'}", "recipe.lr must be a number, got '0.1'"),
    ("recipe: {amp: 1}", "recipe.amp must be true or false, got 1"),
    ("recipe: {colour: red}", "recipe: unknown key 'colour'; known: epochs, batch_size, lr"),
    ("attack: [gaussian, 5]", "attack[1] must be a name or a mapping with 'name', got 5"),
    ("attack: {fraction: 0.2}", "attack must be a name, a mapping with 'name', or a non-empty list of them"),
    ("max_failures: true", "max_failures must be a non-negative integer, got true"),
    ("max_concurrent: '4'", "max_concurrent must be a positive integer, got '4'"),
    ("storage: 3", "storage must be a path or a URI (s3://bucket/prefix), got 3"),
    ("name: ''", "name must be a non-empty string, got ''"),
    ("fresh_seeds: null", "fresh_seeds must be a non-empty list of non-negative integers, got null"),
    ("profile: []", "profile must be the name of a profile (quick), got []"),
    ("profile: {a: 1}", "profile must be the name of a profile (quick), got {'a': 1}"),
    ("profiles: [tiny]", "profiles must be a mapping of name -> overrides, got ['tiny']"),
    ("fresh_rounds: 3", "fresh_rounds must be a list of increasing seed counts, e.g. [3, 6, 12, 24], got 3"),
    ("fresh_rounds: [3, true]", "fresh_rounds[1] must be a whole number of fresh seeds, got true"),
    ("fresh_rounds: [3, 6]\nfresh_seeds: [1, 2, 3, 4]", "fresh_rounds ends at 6 seeds but fresh_seeds lists 4"),
    ("fresh_rounds: [4, 3]\nfresh_seeds: [1, 2, 3, 4]", "fresh_rounds [4, 3] must increase"),
    ("fresh_rounds: [2, 4]\nfresh_seeds: [1, 2, 3, 4]", "fresh_rounds starts at 2: a verdict needs at least 3"),
    ("search_seed: -1", "search_seed must be a non-negative integer, got -1"),
    ("discovery: [0]", "discovery level 0 lies outside (0, 1]"),
    ("discovery: [0.5, 1.5]", "discovery level 1.5 lies outside (0, 1]"),
    ("discovery: []", "discovery must be a non-empty list of fractions of the poisons identified, got []"),
    ("discovery: [0.5, 0.5]", "discovery lists a value twice"),
    ("discovery: [true]", "discovery[0] must be a number, got true"),
    ("discovery: 0.5", "discovery must be a non-empty list of fractions of the poisons identified, got 0.5"),
    ("search_seed: true", "search_seed must be a non-negative integer, got true"),
    ("dataset: 5", "dataset must be a name or a mapping with 'name', got 5"),
    ("dataset: nope", "dataset: unknown dataset 'nope'; known: "),  # registry errors name the file too
])
def test_each_mistake_is_one_line_naming_the_file_and_the_key(tmp_path, extra, message):
    assert refused(tmp_path, extra).startswith(message)


def test_an_integer_is_a_number_where_a_float_is_wanted(tmp_path):
    exp = load(tmp_path, "gpus_per_trial: 1\nbudgets: [1, 0.5]\nrecipe: {lr: 1, momentum: 0}")
    assert exp.gpus_per_trial == 1.0 and isinstance(exp.gpus_per_trial, float)
    assert exp.budgets == (0.5, 1.0) and all(isinstance(b, float) for b in exp.budgets)
    # The recipe keeps the integer as written: it is part of the base-model cache key (same key as before).
    assert exp.scenario.recipe.lr == 1 and type(exp.scenario.recipe.lr) is int
    assert exp.scenario.as_dict()["recipe"]["momentum"] == 0


def test_delta_takes_an_integer_literal_as_a_number(tmp_path):
    """`delta: 1` is refused for its value (outside (0, 1)), not its type: 1.0 is refused alike, 0.5 and a
    float-typed result pass."""
    assert refused(tmp_path, "delta: 1.0") == "delta must be a number in (0, 1), got 1.0"
    exp = load(tmp_path, "delta: 0.5")
    assert exp.delta == 0.5 and isinstance(exp.delta, float)


def test_search_seed_defaults_to_0_and_joins_as_dict(tmp_path):
    exp = load(tmp_path)
    assert exp.search_seed == 0 and exp.as_dict()["search_seed"] == 0
    assert load(tmp_path, "search_seed: 7").as_dict()["search_seed"] == 7
    assert config.load("quickstart", overrides=["search_seed=3"]).search_seed == 3


def test_fresh_rounds_are_the_looks_and_name_enough_seeds(tmp_path):
    """Without fresh_rounds one look at every fresh seed (as_dict unchanged, so sweeps logged before resume);
    with them and no fresh_seeds, as many seeds after the tuning seeds as the last look needs."""
    assert load(tmp_path, "fresh_seeds: [5, 6, 7]").looks == (3,)
    exp = config.parse({**yaml_doc(), "fresh_rounds": [3, 5]}, "exp.yaml")
    assert exp.fresh_seeds == (1, 2, 3, 4, 5) and exp.looks == (3, 5) and exp.as_dict()["fresh_rounds"] == [3, 5]
    assert "fresh_rounds" not in load(tmp_path, "fresh_seeds: [5, 6, 7]").as_dict()
    assert config.load("quickstart", "resolve").looks == (3, 6, 12, 24)


def yaml_doc() -> dict:
    import yaml

    doc = yaml.safe_load(FILE)
    del doc["fresh_seeds"]
    return doc


def test_discovery_defaults_to_every_poison_and_then_leaves_the_dict_as_before(tmp_path):
    """Default [1.0]: no `discovery` key in as_dict (what MLflow records and --resume compares), so a sweep
    without levels is the sweep it was; levels are kept highest first (the order the cells run in)."""
    exp = load(tmp_path)
    assert exp.discovery == (1.0,) and not exp.partial_discovery and "discovery" not in exp.as_dict()
    levels = load(tmp_path, "discovery: [0.1, 1, 0.5]")
    assert levels.discovery == (1.0, 0.5, 0.1) and levels.as_dict()["discovery"] == [1.0, 0.5, 0.1]
    assert config.load("discovery", "tiny").discovery == (1.0, 0.5)


def test_as_dict_is_the_old_dict_plus_search_seed():
    """The keys MLflow records and --resume compares: today's, plus search_seed."""
    old = {"name", "scenarios", "methods", "budgets", "trials", "seeds", "fresh_seeds", "delta", "profile",
           "spaces", "device", "gpus_per_trial", "max_failures", "plugins"}
    assert set(config.load("quickstart").as_dict()) == old | {"search_seed"}
    with_optional = config.load("quickstart", overrides=["storage=/tmp/x", "max_concurrent=3"]).as_dict()
    assert set(with_optional) == old | {"search_seed", "storage", "max_concurrent"}


def test_every_key_is_typed_documented_and_worded():
    for model in (schema.ExperimentFile, schema.RecipeSpec):
        for key, info in model.model_fields.items():
            assert info.description or model is schema.RecipeSpec, key
            assert any(isinstance(m, schema.Says) for m in info.metadata), key
    assert schema.REQUIRED == {"dataset", "model", "attack", "methods", "budgets", "trials", "seeds"}


def test_apply_options_checks_each_flag_as_the_file_key_and_names_the_flag():
    exp = config.load("quickstart")
    for kw, message in [({"trials": 0}, "--trials must be a positive integer, got 0"),
                        ({"trials": True}, "--trials must be a positive integer, got true"),
                        ({"gpus_per_trial": 2.0}, "--gpus-per-trial: gpus_per_trial must lie in (0, 1], got 2.0"),
                        ({"gpus_per_trial": "x"}, "--gpus-per-trial: gpus_per_trial must be a number in (0, 1]"),
                        ({"max_failures": -1}, "--max-failures: max_failures must be a non-negative integer, got -1"),
                        ({"max_concurrent": 0}, "--max-concurrent: max_concurrent must be a positive integer, got 0")]:
        with pytest.raises(SweeperError) as e:
            config.apply_options(exp, **kw)
        assert str(e.value).startswith(message), str(e.value)


def test_apply_options_returns_a_new_experiment():
    exp = config.load("quickstart")
    assert config.apply_options(exp) == exp
    changed = config.apply_options(exp, trials=3, gpus_per_trial=1, max_failures=0, max_concurrent=2)
    assert (changed.trials, changed.gpus_per_trial, changed.max_failures, changed.max_concurrent) == (3, 1.0, 0, 2)
    assert exp.trials == 8 and changed.as_dict() == {**exp.as_dict(), "trials": 3, "gpus_per_trial": 1.0,
                                                     "max_failures": 0, "max_concurrent": 2}
