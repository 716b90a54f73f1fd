"""Search spaces: `search_spaces/NAME.yaml`, data checked against the method's signature (Optuna is
imported here and, under the Ray edge, in tuning/: the searcher and the dashboard's mirror).

    params:                      # keys = the method's keyword-only hyperparameters, all of them
      lr: {low: 1.0e-4, high: 1.0e-1, log: true}     # float (int with `type: int`)
      k: {choices: [1, 2, 3]}                         # categorical
    points:                      # optional extra points worth trying, each with its source
      - {lr: 1.0e-1}

The method's signature defaults are always the first point tried; they must lie inside the space."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from importlib import resources
from types import ModuleType

import optuna

from . import yamlio
from .errors import SweeperError

_RANGE_KEYS = {"low", "high", "log", "type", "step"}


@dataclass
class SearchSpace:
    method: str
    params: dict[str, optuna.distributions.BaseDistribution]
    points: list[dict] = field(default_factory=list)
    spec: dict = field(default_factory=dict)  # the validated YAML, for display and logging


def _number(where: str, key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SweeperError(f"{where}: {key} must be a number, got {value!r} "
                           "(a quoted number is a string)")
    if isinstance(value, float) and not math.isfinite(value):  # YAML's .inf / .nan: no sampler draws from those
        raise SweeperError(f"{where}: {key} must be a finite number, got {value!r}")
    return value


def _step(where: str, spec: dict, kind: str, log: bool):
    """None, or a positive step (an integer one for an int range); a log range has no even grid."""
    if spec.get("step") is None:
        return None
    step = _number(where, "step", spec["step"])
    if log:
        raise SweeperError(f"{where}: step cannot be combined with log: true")
    if step <= 0:
        raise SweeperError(f"{where}: step must be positive, got {step!r}")
    if kind == "int" and not isinstance(step, int):
        raise SweeperError(f"{where}: an int range needs an integer step, got {step!r}")
    return step


def _build(where: str, cls, *args, **kwargs) -> optuna.distributions.BaseDistribution:
    """Optuna checks its distributions (ValueError) and warns where it silently changes one (a range its
    step does not divide loses its top): both are mistakes in the file, each reported as one line."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return cls(*args, **kwargs)
        except ValueError as e:
            raise SweeperError(f"{where}: {' '.join(str(e).split())}") from None
        except Warning as e:
            raise SweeperError(f"{where}: {' '.join(str(e).split())} (refused rather than let Optuna change the space)") from None


def distribution(where: str, spec) -> optuna.distributions.BaseDistribution:
    """One parameter's YAML spec -> an Optuna distribution, with one clear error for each mistake."""
    if not isinstance(spec, dict):
        raise SweeperError(f"{where}: expected a mapping like {{low: ..., high: ...}} or {{choices: [...]}}")
    if "choices" in spec:
        if set(spec) != {"choices"} or not isinstance(spec["choices"], list) or not spec["choices"]:
            raise SweeperError(f"{where}: choices must be the only key and a non-empty list")
        for c in spec["choices"]:
            if isinstance(c, float) and not math.isfinite(c):
                raise SweeperError(f"{where}: choices must be finite numbers, got {c!r}")
        return _build(where, optuna.distributions.CategoricalDistribution, spec["choices"])
    unknown = set(spec) - _RANGE_KEYS
    if unknown or not {"low", "high"} <= set(spec):
        raise SweeperError(f"{where}: a range needs low and high (and optionally log, type, step); "
                           f"unknown keys: {sorted(map(str, unknown)) or 'none'}")
    low, high = _number(where, "low", spec["low"]), _number(where, "high", spec["high"])
    if low > high:
        raise SweeperError(f"{where}: low {low} > high {high}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise SweeperError(f"{where}: log must be true or false, got {log!r}")
    if log and low <= 0:
        raise SweeperError(f"{where}: a log range needs low > 0, got {low}")
    kind = spec.get("type", "float")
    if kind not in ("float", "int"):
        raise SweeperError(f"{where}: type must be float or int, got {kind!r}")
    step = _step(where, spec, kind, log)
    if kind == "int":
        if not (isinstance(low, int) and isinstance(high, int)):
            raise SweeperError(f"{where}: an int range needs integer low and high")
        return _build(where, optuna.distributions.IntDistribution, low, high, log=log, step=step or 1)
    return _build(where, optuna.distributions.FloatDistribution, float(low), float(high), log=log, step=step)


def parse(method: str, doc, hyperparameters: dict[str, object], where: str) -> SearchSpace:
    if not isinstance(doc, dict) or not isinstance(doc.get("params"), dict):
        raise SweeperError(f"{where}: expected a mapping with a 'params' mapping")
    if set(doc) - {"params", "points"}:
        raise SweeperError(f"{where}: unknown keys {sorted(set(doc) - {'params', 'points'})}")
    if set(doc["params"]) != set(hyperparameters):
        raise SweeperError(f"{where}: params {sorted(doc['params'])} must equal {method}'s keyword-only "
                           f"hyperparameters {sorted(hyperparameters)}")
    params = {k: distribution(f"{where}: {k}", v) for k, v in doc["params"].items()}
    points = doc.get("points") or []
    if not isinstance(points, list):
        raise SweeperError(f"{where}: points must be a list of mappings")
    for point in [hyperparameters, *points]:
        _check_point(where, point, params)
    return SearchSpace(method, params, points, doc)


def _check_point(where: str, point, params) -> None:
    if not isinstance(point, dict) or set(point) != set(params):
        raise SweeperError(f"{where}: point {point!r} must set exactly {sorted(params)}")
    for k, v in point.items():
        try:
            ok = params[k]._contains(params[k].to_internal_repr(v))
        except (ValueError, TypeError):
            ok = False
        if not ok:
            raise SweeperError(f"{where}: point value {k}={v!r} lies outside its range")


def load(method: str, module: ModuleType, hyperparameters: dict[str, object]) -> SearchSpace:
    """The search space of a method: a plugin's own (`SEARCH_SPACE`), else the shipped file."""
    if getattr(module, "SEARCH_SPACE", None) is not None:
        where = getattr(module, "SEARCH_SPACE_FILE", None) or f"plugin {method}: SEARCH_SPACE"  # the YAML beside a file
        return parse(method, module.SEARCH_SPACE, hyperparameters, where)
    path = resources.files("sweeper.search_spaces") / f"{method}.yaml"
    if not path.is_file():
        raise SweeperError(f"method {method!r} has no search space file search_spaces/{method}.yaml")
    return parse(method, yamlio.load(path.read_text()), hyperparameters, f"search_spaces/{method}.yaml")


def sampler(seed: int) -> optuna.samplers.BaseSampler:
    """TPE (Optuna 5: multivariate, constant liar), seeded so a sweep's proposals are reproducible."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial is ours to print
    return optuna.samplers.TPESampler(seed=seed)


def importances(space: SearchSpace, trials: list[tuple[dict, float]]) -> dict[str, float]:
    """Optuna's (fANOVA) parameter importances for finished trials given as (params, objective)."""
    study = optuna.create_study(direction="maximize")
    for params, value in trials:
        study.add_trial(optuna.trial.create_trial(params=params, distributions=space.params, value=value))
    return dict(optuna.importance.get_param_importances(study))
