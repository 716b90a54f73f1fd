"""Every bad input is refused before anything runs: `sweeper validate` and `sweeper run` both exit 2 with
one stderr line and no traceback, and `run` leaves no work directory behind. Plus, generated from the
registries: every numeric parameter of every attack, model and data set has a declared range."""
import copy
import math

import pytest
import yaml

from sweeper import cli, config  # config imports (and so registers) every attack, model and data set
from sweeper.params import FRACTION, Range, numeric_keywords, ranges
from sweeper.registry import attacks, datasets, models
from sweeper.training import Recipe

BASE = {"name": "bad", "dataset": "digits", "model": {"name": "small_cnn", "width": 8},
        "attack": {"name": "gaussian", "fraction": 0.2, "eps": 1.0}, "recipe": {"epochs": 2},
        "methods": ["gd"], "budgets": [0.02], "trials": 1, "seeds": [0], "fresh_seeds": []}


def edited(**changes) -> dict:
    """BASE with top-level keys replaced; a dict without 'name' for a dict key edits the entry already there."""
    doc = copy.deepcopy(BASE)
    for key, value in changes.items():
        same_entry = isinstance(value, dict) and "name" not in value and isinstance(doc.get(key), dict)
        doc[key] = {**doc[key], **value} if same_entry else value
    return doc


def lr_space(**spec) -> dict:
    """An override of gd's search space (gd has one hyperparameter, lr, default 0.01)."""
    return {"gd": {"params": {"lr": spec}}}


def case(id_, doc, message, run_args=()):
    return pytest.param(doc, message, tuple(run_args), id=id_)


CASES = [
    # --- the file itself
    case("non-utf8", b"\xff\xfe name: x\n", "bad.yaml: not UTF-8 text"),
    # --- search-space overrides (Optuna's own ValueErrors and warnings included); errors name the file
    case("step-with-log", edited(spaces=lr_space(low=1.0e-3, high=0.1, log=True, step=0.01)),
         "bad.yaml: spaces.gd: lr: step cannot be combined with log"),
    case("step-not-a-number", edited(spaces=lr_space(low=0.0, high=0.1, step="abc")), "lr: step must be a number"),
    case("step-zero", edited(spaces=lr_space(low=0.0, high=0.1, step=0)), "lr: step must be positive"),
    case("step-negative", edited(spaces=lr_space(low=0.0, high=0.1, step=-0.01)), "lr: step must be positive"),
    case("step-not-dividing", edited(spaces=lr_space(low=0.0, high=0.1, step=0.03)), "lr: The distribution is"),
    case("high-inf", edited(spaces=lr_space(low=1.0e-3, high=math.inf)), "lr: high must be a finite number"),
    case("low-nan", edited(spaces=lr_space(low=math.nan, high=0.1)), "lr: low must be a finite number"),
    case("choice-nan", edited(spaces=lr_space(choices=[0.01, math.nan])), "lr: choices must be finite"),
    case("choice-a-list", edited(spaces=lr_space(choices=[0.01, [1]])), "lr: Choices for a categorical"),
    # --- attack, model and data-set parameters: types and ranges
    case("attack-fraction-1.5", edited(attack={"fraction": 1.5}), "attack.fraction must lie in (0, 1], got 1.5"),
    case("attack-fraction-0", edited(attack={"fraction": 0}), "attack.fraction must lie in (0, 1], got 0"),
    case("attack-eps-negative", edited(attack={"eps": -1}), "attack.eps must be positive, got -1"),
    case("attack-eps-nan", edited(attack={"eps": math.nan}), "attack.eps must be a finite number, got nan"),
    case("attack-eps-inf", edited(attack={"eps": math.inf}), "attack.eps must be a finite number, got inf"),
    case("attack-seed-is-the-sweeps", edited(attack={"seed": 3}), "attack: unknown parameter 'seed'"),
    # --- run options
    case("storage-unknown-scheme", BASE, "--storage ftp://host/x: unknown scheme", ["--storage", "ftp://host/x"]),
    case("storage-unreachable-bucket", BASE, "--storage s3://bucket/x: cannot write there",
         ["--storage", "s3://bucket/x?endpoint_override=http://127.0.0.1:9"]),  # port 9: nothing listens
    case("storage-not-a-string", edited(storage=5), "storage must be a path or a URI"),
    case("storage-a-file", BASE, "is a file, not a folder", ["--storage", "/etc/hostname"]),
    case("resume-nothing", BASE, "no unfinished sweep of experiment 'bad'", ["--resume"]),
    case("resume-unknown-name", BASE, "--resume nope: no sweep of that name", ["--resume", "nope"]),
    case("max-failures-negative", BASE, "max_failures must be a non-negative integer", ["--max-failures", "-1"]),
    case("max-concurrent-0", BASE, "max_concurrent must be a positive integer", ["--max-concurrent", "0"]),
    case("max-concurrent-in-file", edited(max_concurrent=1.5), "max_concurrent must be a positive integer"),
    case("gpus-per-trial-2", BASE, "gpus_per_trial must lie in (0, 1]", ["--gpus-per-trial", "2"]),
    # --dry-run checks the options as a run does (the same schema fields)
    case("dry-run-trials-0", BASE, "--trials must be a positive integer, got 0", ["--dry-run", "--trials", "0"]),
    case("dry-run-max-failures-negative", BASE, "--max-failures: max_failures must be a non-negative integer",
         ["--dry-run", "--max-failures", "-1"]),
    case("dry-run-gpus-per-trial-2", BASE, "gpus_per_trial must lie in (0, 1]", ["--dry-run", "--gpus-per-trial", "2"]),
    case("attack-victim-is-the-sweeps", edited(attack={"name": "witches_brew", "victim": 3}),
         "attack: unknown parameter 'victim'"),
    case("attack-list-patch-0", edited(attack=["gaussian", {"name": "backdoor", "patch": 0}]),
         "attack[1].patch must be positive, got 0"),
    case("backdoor-target-negative", edited(attack={"name": "backdoor", "target": -1}),
         "attack.target must be non-negative, got -1"),
    case("gc-box-not-bool", edited(attack={"name": "gradient_canceling", "box": "yes"}),
         "attack.box must be true or false, got 'yes'"),
    case("wb-eps-above-box", edited(attack={"name": "witches_brew", "eps": 2.0}), "attack.eps must lie in (0, 1]"),
    case("model-width-0", edited(model={"width": 0}), "model.width must be positive, got 0"),
    case("model-hidden-float", edited(model={"hidden": 64.5}), "model.hidden must be an integer"),
    case("dataset-n-test-5", edited(dataset={"name": "digits", "n_test": 5}),
         "dataset.n_test must lie in [10, 800], got 5"),
    case("dataset-size-4", edited(dataset={"name": "digits_up", "size": 4}), "dataset.size must lie in [8, 128]"),
    case("profile-sets-bad-eps", edited(profile="tiny", profiles={"tiny": {"attack": {"eps": -1}}}),
         "attack.eps must be positive"),
    # --- device: by form only (the validating machine may have no GPU)
    case("device-banana", edited(device="banana"), "device must be auto, cpu, cuda, cuda:N or mps, got 'banana'"),
    case("device-cuda-x", edited(device="cuda:x"), "device must be auto, cpu, cuda"),
    case("device-number", edited(device=0), "device must be auto, cpu, cuda"),
    # --- recipe and other numbers
    case("recipe-lr-nan", edited(recipe={"lr": math.nan}), "recipe.lr must be a finite number, got nan"),
    case("recipe-epochs-inf", edited(recipe={"epochs": math.inf}), "recipe.epochs must be an integer"),
    case("recipe-momentum-1", edited(recipe={"momentum": 1.0}), "recipe.momentum must lie in [0, 1), got 1.0"),
    case("recipe-weight-decay-negative", edited(recipe={"weight_decay": -1.0e-4}),
         "recipe.weight_decay must be non-negative"),
    case("budget-nan", edited(budgets=[math.nan]), "budget nan lies outside (0, 1]"),
    case("delta-inf", edited(delta=math.inf), "delta must be a number in (0, 1), got inf"),
    # --- tracking URI (flags of `run` only, given as run_args; `validate` does not see them): refused
    #     before Ray starts, so no work directory is left
    case("tracking-bogus-scheme", BASE, "tracking URI 'bogus://x' is not one MLflow can store runs in",
         ["--tracking-uri", "bogus://x"]),
    case("tracking-plain-path", BASE, "tracking URI 'runs.db' is not one MLflow can store runs in",
         ["--tracking-uri", "runs.db"]),
    case("tracking-sqlite-under-a-file", BASE, "folder /dev/null does not exist",
         ["--tracking-uri", "sqlite:////dev/null/mlflow.db"]),
    case("tracking-sqlite-unwritable", BASE, "cannot write the MLflow store /proc/sweeper-mlflow.db",
         ["--tracking-uri", "sqlite:////proc/sweeper-mlflow.db"]),
    # --- Optuna storage (optuna-dashboard's mirror): refused before Ray starts, as the tracking URI
    case("optuna-storage-under-a-file", BASE, "Optuna storage /dev/null/optuna.db: folder /dev/null does not exist",
         ["--optuna-storage", "sqlite:////dev/null/optuna.db"]),
    case("optuna-storage-bogus-scheme", BASE, "--optuna-storage bogus://x: Optuna cannot use it",
         ["--optuna-storage", "bogus://x"]),
]


def write(tmp_path, doc) -> str:
    p = tmp_path / "bad.yaml"
    p.write_bytes(doc if isinstance(doc, bytes) else yaml.safe_dump(doc).encode())  # .inf/.nan as YAML spells them
    return str(p)


def assert_refused(capsys, argv, message):
    code = cli.main(argv)
    out = capsys.readouterr()
    assert code == 2, out
    assert out.err.count("\n") == 1 and out.err.startswith("sweeper: error: "), out.err
    assert message in out.err and "Traceback" not in out.err, out.err
    assert out.out == ""


@pytest.mark.parametrize("doc, message, run_args", CASES)
def test_bad_input_is_refused_before_anything_runs(capsys, tmp_path, doc, message, run_args):
    path, wd = write(tmp_path, doc), tmp_path / "wd"
    if not run_args:  # validate first: a case it let through must never reach a real sweep below
        assert_refused(capsys, ["validate", path], message)
    assert_refused(capsys, ["run", path, "--workdir", str(wd), *run_args], message)
    assert not wd.exists()


@pytest.mark.parametrize("doc", [
    pytest.param(BASE, id="base"),
    pytest.param(edited(spaces=lr_space(low=0.0, high=0.1, step=0.01)), id="step-without-log"),
    pytest.param(edited(spaces={"eu_k": {"params": {"k": {"low": 1, "high": 3, "type": "int", "step": 1},
                                                    "lr": {"low": 1.0e-3, "high": 0.1, "log": True}}}},
                        methods=["eu_k"]), id="int-step"),
    pytest.param(edited(attack={"fraction": 1.0, "eps": 1.0e-3}), id="range-edges"),
    pytest.param(edited(device="cuda:1"), id="device-cuda-1-without-a-gpu"),
    pytest.param(edited(device="mps"), id="device-mps"),
    pytest.param(edited(recipe={"momentum": 0.0, "weight_decay": 0.0}), id="recipe-zeros"),
])
def test_valid_files_validate(capsys, tmp_path, doc):
    assert cli.main(["validate", write(tmp_path, doc)]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("ok: bad") and out.err == ""


def test_a_utf8_byte_order_mark_is_no_mistake(tmp_path):
    p = tmp_path / "bom.yaml"
    p.write_bytes(b"\xef\xbb\xbf" + yaml.safe_dump(BASE).encode())
    assert config.load(p).name == "bad"


def _entry_functions():
    yield from (pytest.param(attacks.get(n).craft, id=f"attack-{n}") for n in attacks.names())
    yield from (pytest.param(models.get(n), id=f"model-{n}") for n in models.names())
    yield from (pytest.param(datasets.get(n), id=f"dataset-{n}") for n in datasets.names())


@pytest.mark.parametrize("fn", list(_entry_functions()))
def test_every_numeric_parameter_has_a_range_holding_its_default(fn):
    """A new attack, model or data set cannot forget a range: its module's RANGES must name exactly the
    numeric keyword-only parameters of its entry function, and each default must lie inside."""
    numeric, declared = numeric_keywords(fn), ranges(fn)
    assert set(declared) == set(numeric), f"{fn.__module__}.RANGES must cover exactly {sorted(numeric)}"
    for name, default in numeric.items():
        assert default in declared[name], f"{fn.__module__}: default {name}={default} outside {declared[name]}"


def test_every_numeric_recipe_field_has_a_range_holding_its_default():
    defaults = Recipe().as_dict()
    numeric = {k: v for k, v in defaults.items() if not isinstance(v, bool)}  # switches: true/false only
    assert set(config.RECIPE_RANGES) == set(numeric)
    assert all(v in config.RECIPE_RANGES[k] for k, v in numeric.items())


def test_a_range_states_its_bounds_and_refuses_non_finite_numbers():
    assert str(FRACTION) == "(0, 1]" and str(Range(0, 1, high_open=True)) == "[0, 1)" and str(Range(8)) == "[8, inf)"
    assert 1 in FRACTION and 0 not in FRACTION and 1.5 not in FRACTION
    assert math.inf not in Range() and math.nan not in Range()
