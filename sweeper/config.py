"""Experiment files (`experiments/*.yaml`): what a sweep runs, validated on load.

    name: quickstart
    dataset: {name: digits}
    model: {name: small_cnn, width: 16}
    attack: {name: gaussian, fraction: 0.2, eps: 1.0}   # or a list of attacks: one sweep, all of them
    recipe: {epochs: 60, batch_size: 64, lr: 0.05}     # how θ_poisoned / θ_retrain are trained
    methods: all                                        # or a list of registered method names
    budgets: [0.02, 0.04, 0.06, 0.08, 0.10]            # fractions of C_retrain, each in (0, 1]
    trials: 10                                          # Optuna trials per (attack, method)
    seeds: [0, 1, 2]                                    # base-model seeds each tuning trial is measured on
    fresh_seeds: [100, 101, 102]                        # chosen configurations re-measured here ([] = skip)
    delta: 0.1                                          # non-inferiority margin for "equivalent to retrain"
    profile: quick                                      # which entry of `profiles` applies
    profiles: {tiny: {trials: 2, recipe: {epochs: 10}}} # named partial overrides
    spaces: {gd: {params: {lr: {low: 1.0e-3, high: 1.0e-1, log: true}}}}   # optional overrides
    data_root: ~/data/cifar                             # the folder of a file-based data set (its `root`)

Every mistake is one SweeperError naming the file and the key."""
from __future__ import annotations

import copy
import inspect
import os
import re
import sys
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path

import yaml

from . import attacks as _attacks  # noqa: F401  (registers)
from . import datasets as _datasets  # noqa: F401
from . import methods as _methods
from . import models as _models  # noqa: F401
from . import spaces, yamlio
from .errors import SweeperError
from .params import NON_NEGATIVE, POSITIVE, Range, check, numeric_keywords, ranges
from .registry import attacks, datasets, methods, models
from .scenario import Scenario
from .training import Recipe

REQUIRED = {"dataset", "model", "attack", "methods", "budgets", "trials", "seeds"}
OPTIONAL = {"name", "recipe", "profile", "profiles", "spaces", "device", "fresh_seeds", "delta", "data_root",
            "gpus_per_trial", "max_failures", "plugins", "storage", "max_concurrent"}
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?|mps")  # what trial.pick_device hands to torch.device
DEFAULT_FRESH = 3   # fresh seeds when the file names none: the next integers after the tuning seeds
DEFAULT_DELTA = 0.1  # DESIGN §3
BASE_PROFILE = "quick"  # the file's own values, without overrides
MAX_FAILURES = 2  # a trial lost with its node (or a crashed worker) is retried twice from its start
GPUS_PER_TRIAL = 0.25  # four small trials share a GPU; a ResNet-18 trial on CIFAR may want 0.5 or 1
GPUS_PER_TRIAL_RANGE = Range(0, 1, low_open=True)  # a trial uses one device: more than one GPU is never used
# Recipe lives in training.py; its ranges are checked here, where files are read. Momentum 1 never
# forgets a gradient (SGD diverges); weight decay 0 is plain SGD, a meaningful choice.
RECIPE_RANGES = {"epochs": POSITIVE, "batch_size": POSITIVE, "lr": POSITIVE,
                 "momentum": Range(0, 1, high_open=True), "weight_decay": NON_NEGATIVE}


@dataclass(frozen=True)
class Experiment:
    name: str
    scenarios: tuple[Scenario, ...]  # one per attack; same data set, model and recipe
    methods: tuple[str, ...]        # searched methods (the references none / retrain always run too)
    budgets: tuple[float, ...]
    trials: int
    seeds: tuple[int, ...]
    fresh_seeds: tuple[int, ...] = ()
    delta: float = DEFAULT_DELTA
    profile: str = BASE_PROFILE
    spaces: dict = field(default_factory=dict)
    device: str = "auto"
    max_failures: int = MAX_FAILURES  # retries of a failed trial (Tune) or task (Ray) before it counts as FAILED
    gpus_per_trial: float = GPUS_PER_TRIAL  # share of a GPU each trial asks Ray for (admission only: Ray caps no memory)
    plugins: tuple[str, ...] = ()  # absolute paths of plugin files (methods, attacks, ... from outside the package)
    storage: str | None = None  # base models, Tune records, chosen models (--storage and SWEEPER_STORAGE win)
    max_concurrent: int | None = None  # Tune trials at once; None: what the cluster holds when the sweep starts

    @property
    def scenario(self) -> Scenario:
        """The first attack's scenario (the only one in single-attack experiments)."""
        return self.scenarios[0]

    def search_space(self, method: str) -> spaces.SearchSpace:
        return search_space(method, self.spaces, self.name)

    def as_dict(self) -> dict:
        return {"name": self.name, "scenarios": [s.as_dict() for s in self.scenarios], "methods": list(self.methods),
                "budgets": list(self.budgets), "trials": self.trials, "seeds": list(self.seeds),
                "fresh_seeds": list(self.fresh_seeds), "delta": self.delta,
                "profile": self.profile, "spaces": self.spaces, "device": self.device,
                "gpus_per_trial": self.gpus_per_trial, "max_failures": self.max_failures,
                "plugins": list(self.plugins), **({"storage": self.storage} if self.storage else {}),
                **({"max_concurrent": self.max_concurrent} if self.max_concurrent else {})}


def search_space(method: str, overrides: dict | None = None, where: str = "experiment") -> spaces.SearchSpace:
    """A method's search space: the experiment's override if it has one, else the shipped file."""
    module = methods.get(method)
    hp = _methods.hyperparameters(module)
    if overrides and method in overrides:
        return spaces.parse(method, overrides[method], hp, f"{where}: spaces.{method}")
    return spaces.load(method, module, hp)


def searchable_methods(modality: str | None = None) -> list[str]:
    """What `methods: all` means: built-in and installed (entry-point) methods, those made for `modality`
    ("image" or "text": a method's MODALITIES, a data set's MODALITY) when given. A method from a plugin
    file is swept only where it is named, so a file loaded earlier in a process never joins another sweep."""
    from . import plugins

    return [n for n in methods.names() if _methods.kind(methods.get(n)) != "reference" and not plugins.from_file(n)
            and (modality is None or modality in _methods.modalities(methods.get(n)))]


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


SWEEP_SUPPLIED = {"victim", "text"}  # keywords the sweep passes itself (attacks.Victim, DataSet.text): never from a file


def _check_params(where: str, fn, params: dict) -> dict:
    """Keyword parameters given in a file must exist in `fn`'s signature, match its defaults' types and lie
    in the ranges its module declares: a bad value fails here, not minutes later inside a Ray task."""
    # Parameters without a default (an attack's seed) are the sweep's to set: a file setting them would clash.
    sig = {p.name: p.default for p in inspect.signature(fn).parameters.values()
           if p.kind is p.KEYWORD_ONLY and p.default is not p.empty and p.name not in SWEEP_SUPPLIED}
    for key, value in params.items():
        if key not in sig:
            raise SweeperError(f"{where}: unknown parameter {key!r}; known: {', '.join(sorted(sig)) or 'none'}")
        _check_type(where, key, value, sig[key])
        if key in numeric_keywords(fn):  # a module that forgot a range still gets the finiteness check
            check(where, key, value, ranges(fn).get(key, Range()))
    return params


def _check_type(where: str, key: str, value, default) -> None:
    if isinstance(default, bool):  # before int: bool is an int subclass, and `box: 1` is no bool
        if not isinstance(value, bool):
            raise SweeperError(f"{where}.{key} must be true or false, got {value!r}")
    elif isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SweeperError(f"{where}.{key} must be a number, got {value!r}")
        if isinstance(default, int) and not isinstance(value, int):
            raise SweeperError(f"{where}.{key} must be an integer, got {value!r}")


def _data_folder(where: str, name: str, params: dict, file_root, data_root, skip_checksums) -> dict:
    """The data set's `root` and `skip_checksums`: `--data-root` overrides the file's `data_root:` (or its
    `dataset: {root: ...}`; a file sets one of the two), `--skip-checksums` the file's `skip_checksums`.
    The folder becomes absolute against the current directory: trials run in other working directories."""
    params = dict(params)
    if file_root is not None and "root" in params:
        raise SweeperError(f"{where}: data_root and dataset.root both name the data folder; keep one")
    takes = inspect.signature(datasets.get(name)).parameters
    for key, value, given in (("root", file_root, "data_root"), ("root", data_root, "--data-root"),
                              ("skip_checksums", skip_checksums, "--skip-checksums")):
        if value is None:
            continue
        if key not in takes:
            raise SweeperError(f"{where}: {given} does not apply: dataset {name} reads no data folder")
        params[key] = value
    if "root" in params:
        if not isinstance(params["root"], (str, os.PathLike)) or not str(params["root"]):
            raise SweeperError(f"{where}: the data folder (data_root) must be a path, got {params['root']!r}")
        params["root"] = os.path.abspath(os.path.expanduser(params["root"]))
    return params


def modality(dataset: str) -> str:
    """"image" or "text": the MODALITY its loader's module declares (image when it declares none)."""
    return getattr(sys.modules[datasets.get(dataset).__module__], "MODALITY", "image")


def _check_data(where: str, loader, params: dict) -> None:
    """The loader module's `check` (a look at the data files), called with every keyword parameter."""
    hook = getattr(sys.modules[loader.__module__], "check", None)
    if hook is None:
        return
    every = {p.name: p.default for p in inspect.signature(loader).parameters.values() if p.kind is p.KEYWORD_ONLY}
    try:
        hook(**{**every, **params})
    except SweeperError as e:
        raise SweeperError(f"{where}: {e}") from None


def _named(where: str, value, registry) -> tuple[str, dict]:
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise SweeperError(f"{where}: expected a name or a mapping with 'name'")
    params = {k: v for k, v in value.items() if k != "name"}
    registry.get(value["name"])  # unknown name: lists the known ones
    return value["name"], params


def _attacks_list(where: str, value, data_modality: str) -> list[tuple[str, dict]]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise SweeperError(f"{where}: attack must name at least one attack")
    out = []
    for i, item in enumerate(items):
        label = f"{where}: attack" + (f"[{i}]" if isinstance(value, list) else "")
        name, params = _named(label, item, attacks)
        made_for = tuple(getattr(attacks.get(name), "MODALITIES", ("image",)))
        if data_modality not in made_for:
            raise SweeperError(f"{label}: {name} attacks {'/'.join(made_for)} data; this data set holds {data_modality}")
        out.append((name, _check_params(label, attacks.get(name).craft, params)))
    if len({n for n, _ in out}) != len(out):
        raise SweeperError(f"{where}: attack lists a name twice (one sweep holds each attack once)")
    return out


def _recipe(where: str, value) -> Recipe:
    if value is None:
        return Recipe()
    if not isinstance(value, dict):
        raise SweeperError(f"{where}: recipe must be a mapping")
    known = {f.name: f for f in fields(Recipe)}
    for key, v in value.items():
        if key not in known:
            raise SweeperError(f"{where}: unknown recipe key {key!r}; known: {', '.join(known)}")
        if known[key].type in ("bool", bool):
            if not isinstance(v, bool):
                raise SweeperError(f"{where}: recipe.{key} must be true or false, got {v!r}")
            continue
        want = int if known[key].type in ("int", int) else float
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (want is int and not isinstance(v, int)):
            raise SweeperError(f"{where}: recipe.{key} must be {'an integer' if want is int else 'a number'}, got {v!r}")
        check(f"{where}: recipe", key, v, RECIPE_RANGES[key])
    return Recipe(**value)


def _methods_list(where: str, value, modality: str) -> tuple[str, ...]:
    if value == "all":
        return tuple(searchable_methods(modality))
    if not isinstance(value, list) or not value or not all(isinstance(m, str) for m in value):
        raise SweeperError(f"{where}: methods must be 'all' or a non-empty list of names")
    for m in value:
        methods.get(m)
    if len(set(value)) != len(value):
        raise SweeperError(f"{where}: methods lists a name twice")
    return tuple(m for m in value if _methods.kind(methods.get(m)) != "reference")


def _budgets(where: str, value) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        raise SweeperError(f"{where}: budgets must be a non-empty list of fractions of retraining cost")
    for b in value:
        if isinstance(b, bool) or not isinstance(b, (int, float)):
            raise SweeperError(f"{where}: budget {b!r} must be a number")
        if not 0 < b <= 1:
            raise SweeperError(f"{where}: budget {b} lies outside (0, 1]")
    if len(set(value)) != len(value):
        raise SweeperError(f"{where}: budgets lists a value twice")
    return tuple(sorted(float(b) for b in value))


def _positive_int(where: str, key: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SweeperError(f"{where}: {key} must be a positive integer, got {value!r}")
    return value


def _fresh(where: str, doc: dict, seeds: tuple[int, ...]) -> tuple[int, ...]:
    if "fresh_seeds" not in doc:
        return tuple(range(max(seeds) + 1, max(seeds) + 1 + DEFAULT_FRESH))
    value = doc["fresh_seeds"]
    fresh = () if value == [] else _seeds(where, value, "fresh_seeds")
    if set(fresh) & set(seeds):
        raise SweeperError(f"{where}: fresh_seeds {sorted(set(fresh) & set(seeds))} are also tuning seeds; "
                           "fresh measurements need seeds the selection never saw")
    if len(fresh) == 1:
        raise SweeperError(f"{where}: fresh_seeds needs at least 2 seeds for an interval (or [] to skip)")
    return fresh


def _delta(where: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise SweeperError(f"{where}: delta must be a number in (0, 1), got {value!r}")
    return float(value)


def _storage(where: str, value) -> str | None:
    """The experiment's `storage:` (a path, file://, s3:// or gs:// URI); checked for use when a sweep starts."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise SweeperError(f"{where}: storage must be a path or a URI (s3://bucket/prefix), got {value!r}")
    return value


def max_concurrent(where: str, value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SweeperError(f"{where}: max_concurrent must be a positive integer, got {value!r}")
    return value


def max_failures(where: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SweeperError(f"{where}: max_failures must be a non-negative integer, got {value!r}")
    return value


def gpus_per_trial(where: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SweeperError(f"{where}: gpus_per_trial must be a number in (0, 1], got {value!r}")
    return float(check(where, "gpus_per_trial", value, GPUS_PER_TRIAL_RANGE))


def _device(where: str, value) -> str:
    """Checked by form only: the machine that validates (a cluster's driver) may have no GPU at all."""
    if not isinstance(value, str) or not DEVICE.fullmatch(value):
        raise SweeperError(f"{where}: device must be auto, cpu, cuda, cuda:N or mps, got {value!r}")
    return value


def _seeds(where: str, value, key: str = "seeds") -> tuple[int, ...]:
    if not isinstance(value, list) or not value or any(isinstance(s, bool) or not isinstance(s, int) or s < 0
                                                       for s in value):
        raise SweeperError(f"{where}: {key} must be a non-empty list of non-negative integers")
    if len(set(value)) != len(value):
        raise SweeperError(f"{where}: {key} lists a value twice")
    return tuple(value)


def _plugins(where: str, listed, given) -> tuple[str, ...]:
    """Plugin files from the experiment (`plugins:`, relative to the file) and the command line (--plugin,
    relative to the current directory), loaded now so their names validate; entry points too."""
    from . import plugins

    if listed is None:
        listed = []
    if not isinstance(listed, list) or not all(isinstance(p, str) for p in listed):
        raise SweeperError(f"{where}: plugins must be a list of paths to .py files")
    here = Path(where).parent if Path(where).is_file() else Path.cwd()
    paths = [str((here / p).expanduser().resolve()) for p in listed] + [str(Path(p).expanduser().resolve()) for p in given]
    paths = list(dict.fromkeys(paths))
    plugins.load_entry_points()
    plugins.ensure([plugins.spec(p) for p in paths])
    return tuple(paths)


def apply_overrides(where: str, doc: dict, overrides) -> dict:
    """Hydra-style `a.b.c=VALUE` settings over the (profile-resolved) document: dotted keys into nested
    mappings, values read as YAML (`[gd,scrub]`, `1e-4`, `true`). The result is validated like the file,
    so an error names the key as a file's error would."""
    doc = copy.deepcopy(doc)
    for item in overrides:
        key, eq, text = item.partition("=")
        if not eq or not key or any(not part for part in key.split(".")):
            raise SweeperError(f"override {item!r}: expected KEY=VALUE, e.g. trials=20 or recipe.epochs=10")
        try:
            value = yamlio.load(text) if text.strip() else None
        except yaml.YAMLError as e:
            raise SweeperError(f"override {item!r}: not a YAML value ({str(e).splitlines()[0]})") from None
        *parents, last = key.split(".")
        top = key.split(".")[0]
        if top not in REQUIRED | OPTIONAL or top in ("profile", "profiles"):
            raise SweeperError(f"override {item!r}: unknown key(s) {top}; known: "
                               f"{', '.join(sorted((REQUIRED | OPTIONAL) - {'profile', 'profiles'}))}")
        node = doc
        for i, part in enumerate(parents):
            child = node.get(part)
            if isinstance(child, str) and part in ("dataset", "model", "attack"):
                child = node[part] = {"name": child}  # `attack: gaussian` is `attack: {name: gaussian}`
            elif child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise SweeperError(f"override {item!r}: {'.'.join(parents[:i + 1])} is not a mapping in {where}; "
                                   "set it whole instead")
            node = child
        node[last] = value
    return doc


def _resolve_profile(where: str, doc: dict, profile: str | None) -> tuple[dict, str]:
    profiles = doc.get("profiles") or {}
    if not isinstance(profiles, dict):
        raise SweeperError(f"{where}: profiles must be a mapping of name -> overrides")
    chosen = profile or doc.get("profile", BASE_PROFILE)
    if chosen == BASE_PROFILE and BASE_PROFILE not in profiles:
        return doc, chosen
    if chosen not in profiles:
        raise SweeperError(f"{where}: unknown profile {chosen!r}; known: "
                           f"{', '.join(sorted({BASE_PROFILE, *profiles}))}")
    override = profiles[chosen]
    if not isinstance(override, dict):
        raise SweeperError(f"{where}: profile {chosen!r} must be a mapping")
    bad = set(override) - (REQUIRED | OPTIONAL) | ({"profile", "profiles"} & set(override))
    if bad:
        raise SweeperError(f"{where}: profile {chosen!r} sets unknown or forbidden keys {sorted(map(str, bad))}")
    return _merge(doc, override), chosen


def parse(doc, where: str, profile: str | None = None, *, data_root: str | os.PathLike | None = None,
          skip_checksums: bool | None = None, overrides: list[str] | tuple[str, ...] = (),
          plugins: list[str] | tuple[str, ...] = ()) -> Experiment:
    """`data_root`, `skip_checksums`: the command line's --data-root / --skip-checksums (None: not given)."""
    if not isinstance(doc, dict):
        raise SweeperError(f"{where}: expected a mapping at the top level")
    unknown = set(doc) - REQUIRED - OPTIONAL
    if unknown:
        raise SweeperError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    missing = REQUIRED - set(doc)
    if missing:
        raise SweeperError(f"{where}: missing key(s) {', '.join(sorted(missing))}")
    doc, profile = _resolve_profile(where, doc, profile)
    doc = apply_overrides(where, doc, overrides)
    plugin_paths = _plugins(where, doc.get("plugins"), plugins)
    dataset, dataset_params = _named(f"{where}: dataset", doc["dataset"], datasets)
    model, model_params = _named(f"{where}: model", doc["model"], models)
    dataset_params = _data_folder(where, dataset, dataset_params, doc.get("data_root"), data_root, skip_checksums)
    _check_params(f"{where}: dataset", datasets.get(dataset), dataset_params)
    _check_params(f"{where}: model", models.get(model), model_params)
    model_for = tuple(getattr(sys.modules[models.get(model).__module__], "MODALITIES", ("image",)))
    if modality(dataset) not in model_for:
        raise SweeperError(f"{where}: model {model} takes {'/'.join(model_for)} data; data set {dataset} holds "
                           f"{modality(dataset)}")
    recipe = _recipe(where, doc.get("recipe"))
    scenarios = tuple(Scenario(dataset, model, attack, dataset_params, model_params, params, recipe)
                      for attack, params in _attacks_list(where, doc["attack"], modality(dataset)))
    name = doc.get("name", Path(where).stem)
    if not isinstance(name, str) or not name:
        raise SweeperError(f"{where}: name must be a non-empty string")
    spaces_doc = doc.get("spaces") or {}
    if not isinstance(spaces_doc, dict):
        raise SweeperError(f"{where}: spaces must be a mapping of method -> search space")
    device = _device(where, doc.get("device", "auto"))
    seeds = _seeds(where, doc["seeds"])
    exp = Experiment(name, scenarios, _methods_list(where, doc["methods"], modality(dataset)), _budgets(where, doc["budgets"]),
                     _positive_int(where, "trials", doc["trials"]), seeds, _fresh(where, doc, seeds),
                     _delta(where, doc.get("delta", DEFAULT_DELTA)), profile, spaces_doc, device,
                     max_failures(where, doc.get("max_failures", MAX_FAILURES)),
                     gpus_per_trial(where, doc.get("gpus_per_trial", GPUS_PER_TRIAL)), plugin_paths,
                     _storage(where, doc.get("storage")), max_concurrent(where, doc.get("max_concurrent")))
    for method in spaces_doc:
        methods.get(method)
    for method in dict.fromkeys([*spaces_doc, *exp.methods]):  # every space now, not mid-sweep (a plugin's too)
        search_space(method, spaces_doc, where)
    _check_data(f"{where}: model", models.get(model), model_params)  # a model's `check`, if any (saved weights)
    _check_data(f"{where}: dataset", datasets.get(dataset), dataset_params)  # last: it reads files
    return exp


def load(path: str | Path | None = None, profile: str | None = None, *, data_root: str | os.PathLike | None = None,
         skip_checksums: bool | None = None, overrides: list[str] | tuple[str, ...] = (),
         plugins: list[str] | tuple[str, ...] = ()) -> Experiment:
    """Load an experiment file; no path means the bundled quickstart. A bare name (`quickstart`)
    finds a bundled experiment. `data_root` / `skip_checksums` override the file's (see `parse`);
    `overrides` are command-line KEY=VALUE settings applied over the file and its profile."""
    if path is None:
        path = "quickstart"
    p = Path(path)
    if not p.exists() and p.suffix == "" and (resources.files("sweeper.experiments") / f"{p.name}.yaml").is_file():
        text, where = (resources.files("sweeper.experiments") / f"{p.name}.yaml").read_text(), f"{p.name}.yaml"
    elif p.is_file():
        text, where = _read(p), str(p)
    else:
        raise SweeperError(f"experiment file {path} not found (bundled: {', '.join(bundled())})")
    try:
        doc = yamlio.load(text)
    except yaml.YAMLError as e:
        raise SweeperError(f"{where}: not valid YAML ({str(e).splitlines()[0]})") from None
    return parse(doc, where, profile, data_root=data_root, skip_checksums=skip_checksums, overrides=overrides,
                 plugins=plugins)


def _read(p: Path) -> str:
    try:
        return p.read_bytes().decode("utf-8-sig")  # -sig: a leading BOM is no key
    except UnicodeDecodeError as e:
        raise SweeperError(f"{p}: not UTF-8 text (byte {e.start}: {e.object[e.start:e.start + 1]!r}); "
                           "save the experiment file as UTF-8") from None
    except OSError as e:
        raise SweeperError(f"{p}: cannot read the experiment file ({e.strerror})") from None


def bundled() -> list[str]:
    return sorted(f.name[:-5] for f in resources.files("sweeper.experiments").iterdir() if f.name.endswith(".yaml"))
