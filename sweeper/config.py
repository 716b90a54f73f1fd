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
    fresh_rounds: [3, 6, 12, 24]                        # adaptive: more fresh seeds only for undecided rows
    delta: 0.1                                          # non-inferiority margin for "equivalent to retrain"
    profile: quick                                      # which entry of `profiles` applies
    profiles: {tiny: {trials: 2, recipe: {epochs: 10}}} # named partial overrides
    spaces: {gd: {params: {lr: {low: 1.0e-3, high: 1.0e-1, log: true}}}}   # optional overrides
    data_root: ~/data/cifar                             # the folder of a file-based data set (its `root`)
    search_seed: 0                                      # seed of every Optuna sampler (0: earlier sweeps' studies)

Each key's type, default and meaning is in `sweeper/schema.py` (pydantic, strict); this module resolves the
profile and the command line's overrides, then checks what a schema cannot: registered names, their
parameters against signatures and RANGES, search spaces, data folders. Every mistake is one SweeperError
naming the file and the key."""
from __future__ import annotations

import copy
import inspect
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

import yaml

from . import attacks as _attacks  # noqa: F401  (registers)
from . import datasets as _datasets  # noqa: F401
from . import methods as _methods
from . import models as _models  # noqa: F401
from . import schema, spaces, yamlio
from .errors import SweeperError
from .params import Range, check, numeric_keywords, ranges
from .relapse import Relapse
from .registry import attacks, datasets, methods, models
from .scenario import Scenario
from .schema import (BASE_PROFILE, DEFAULT_DELTA, GPUS_PER_TRIAL, GPUS_PER_TRIAL_RANGE, MAX_FAILURES,  # noqa: F401
                     OPTIONAL, RECIPE_RANGES, REQUIRED, ExperimentFile, Named, shown)
from .training import Recipe

DEFAULT_FRESH = 3   # fresh seeds when the file names none: the next integers after the tuning seeds


REDUCTION_FACTOR = 2  # ASHA's: rungs at the first budget × 2^k (exact in floating point, unlike 3^k); a trial goes
# on past a rung if it is in the best half of its method's trials there (tuning/tuner.py; progress.py plans by it)


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
    max_concurrent: int | None = None  # trials at once (Tune's and plain ones); None: what the cluster holds at the start
    search_seed: int = 0  # seed of every Optuna sampler of the sweep; 0 gives the studies of earlier sweeps
    fresh_rounds: tuple[int, ...] = ()  # cumulative fresh-seed counts at each look; () = one look at all of them
    discovery: tuple[float, ...] = (1.0,)  # fractions of the poisons identified, descending (sweeper/discovery.py)
    relapse: Relapse | None = None  # benign fine-tuning after unlearning, measured on fresh runs (sweeper/relapse.py)

    @property
    def partial_discovery(self) -> bool:
        """True when some level identifies fewer than every poison: runs then carry a `discovery` parameter."""
        return self.discovery != (1.0,)

    @property
    def looks(self) -> tuple[int, ...]:
        """The fresh phase's looks: `fresh_rounds`, or one look at every fresh seed (the fixed design)."""
        return self.fresh_rounds or ((len(self.fresh_seeds),) if self.fresh_seeds else ())

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
                **({"max_concurrent": self.max_concurrent} if self.max_concurrent else {}),
                "search_seed": self.search_seed, **({"fresh_rounds": list(self.fresh_rounds)} if self.fresh_rounds else {}),
                **({"discovery": list(self.discovery)} if self.partial_discovery else {}),
                **({"relapse": self.relapse.as_dict()} if self.relapse else {})}


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


def apply_options(exp: Experiment, *, trials: int | None = None, gpus_per_trial: float | None = None,
                  max_failures: int | None = None, max_concurrent: int | None = None) -> Experiment:
    """`exp` with the command line's options (None: not given) over the file's values, each checked by the
    schema as the file's key is; an error names the flag (`--trials must be a positive integer, got 0`)."""
    given = {"trials": trials, "gpus_per_trial": gpus_per_trial, "max_failures": max_failures,
             "max_concurrent": max_concurrent}
    return replace(exp, **{key: schema.check_option(key, value, "--" + key.replace("_", "-"))
                           for key, value in given.items() if value is not None})


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
            raise SweeperError(f"{where}.{key} must be true or false, got {shown(value)}")
    elif isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SweeperError(f"{where}.{key} must be a number, got {shown(value)}")
        if isinstance(default, int) and not isinstance(value, int):
            raise SweeperError(f"{where}.{key} must be an integer, got {shown(value)}")


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


@contextmanager
def _about(where: str, label: str):
    """Errors raised inside (a registry's unknown name, a plugin file's) name the file and the key."""
    try:
        yield
    except SweeperError as e:
        if where in str(e):
            raise
        raise SweeperError(f"{where}: {label}: {e}") from None


def _registered(where: str, label: str, named: Named, registry):
    with _about(where, label):
        return registry.get(named.name)  # unknown name: lists the known ones


def _attacks_list(where: str, value: Named | list[Named], data_modality: str) -> list[tuple[str, dict]]:
    items = value if isinstance(value, list) else [value]
    out = []
    for i, item in enumerate(items):
        label = "attack" + (f"[{i}]" if isinstance(value, list) else "")
        module = _registered(where, label, item, attacks)
        made_for = tuple(getattr(module, "MODALITIES", ("image",)))
        if data_modality not in made_for:
            raise SweeperError(f"{where}: {label}: {item.name} attacks {'/'.join(made_for)} data; this data set "
                               f"holds {data_modality}")
        out.append((item.name, _check_params(f"{where}: {label}", module.craft, item.params)))
    if len({n for n, _ in out}) != len(out):
        raise SweeperError(f"{where}: attack lists a name twice (one sweep holds each attack once)")
    return out


def _methods_list(where: str, value, modality: str) -> tuple[str, ...]:
    if value == "all":
        return tuple(searchable_methods(modality))
    with _about(where, "methods"):
        return tuple(m for m in value if _methods.kind(methods.get(m)) != "reference")


def _fresh(spec: ExperimentFile) -> tuple[int, ...]:
    if spec.fresh_seeds is None:  # as many as the last look needs, else DEFAULT_FRESH
        n = spec.fresh_rounds[-1] if spec.fresh_rounds else DEFAULT_FRESH
        return tuple(range(max(spec.seeds) + 1, max(spec.seeds) + 1 + n))
    return tuple(spec.fresh_seeds)


def _plugins(where: str, listed: list[str] | None, given) -> tuple[str, ...]:
    """Plugin files from the experiment (`plugins:`, relative to the file) and the command line (--plugin,
    relative to the current directory), loaded now so their names validate; entry points too."""
    from . import plugins

    here = Path(where).parent if Path(where).is_file() else Path.cwd()
    paths = [str((here / p).expanduser().resolve()) for p in listed or []]
    paths = list(dict.fromkeys([*paths, *(str(Path(p).expanduser().resolve()) for p in given)]))
    with _about(where, "plugins"):
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
    """The document with the chosen profile's overrides merged in (a profile is checked before it applies:
    the schema then checks the merged document), and the chosen profile's name."""
    profiles = doc.get("profiles") or {}
    if not isinstance(profiles, dict):
        raise SweeperError(f"{where}: profiles must be a mapping of name -> overrides, got {shown(profiles)}")
    chosen = profile or doc.get("profile", BASE_PROFILE)
    known = ", ".join(sorted(map(str, {BASE_PROFILE, *profiles})))
    if not isinstance(chosen, str):
        raise SweeperError(f"{where}: profile must be the name of a profile ({known}), got {shown(chosen)}")
    if chosen == BASE_PROFILE and BASE_PROFILE not in profiles:
        return doc, chosen
    if chosen not in profiles:
        raise SweeperError(f"{where}: unknown profile {chosen!r}; known: {known}")
    override = profiles[chosen]
    if not isinstance(override, dict):
        raise SweeperError(f"{where}: profile {chosen!r} must be a mapping, got {shown(override)}")
    bad = set(override) - (REQUIRED | OPTIONAL) | ({"profile", "profiles"} & set(override))
    if bad:
        raise SweeperError(f"{where}: profile {chosen!r} sets unknown or forbidden keys {sorted(map(str, bad))}")
    return _merge(doc, override), chosen


def _top_level(where: str, doc) -> None:
    """A mapping with no unknown key and every required one, before a profile merges into it."""
    if not isinstance(doc, dict):
        raise SweeperError(f"{where}: expected a mapping at the top level")
    unknown = set(doc) - REQUIRED - OPTIONAL
    if unknown:
        raise SweeperError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    missing = REQUIRED - set(doc)
    if missing:
        raise SweeperError(f"{where}: missing key(s) {', '.join(sorted(missing))}")


def _scenarios(where: str, spec: ExperimentFile, data_root, skip_checksums) -> tuple[Scenario, ...]:
    """One scenario per attack: the registered data set, model and attacks, their parameters checked
    against their signatures and RANGES, the data folder resolved."""
    loader = _registered(where, "dataset", spec.dataset, datasets)
    builder = _registered(where, "model", spec.model, models)
    dataset_params = _data_folder(where, spec.dataset.name, spec.dataset.params, spec.data_root, data_root,
                                  skip_checksums)
    _check_params(f"{where}: dataset", loader, dataset_params)
    model_params = _check_params(f"{where}: model", builder, spec.model.params)
    holds = modality(spec.dataset.name)
    model_for = tuple(getattr(sys.modules[builder.__module__], "MODALITIES", ("image",)))
    if holds not in model_for:
        raise SweeperError(f"{where}: model {spec.model.name} takes {'/'.join(model_for)} data; data set "
                           f"{spec.dataset.name} holds {holds}")
    recipe = Recipe(**spec.recipe.model_dump()) if spec.recipe else Recipe()
    return tuple(Scenario(spec.dataset.name, spec.model.name, attack, dataset_params, model_params, params, recipe)
                 for attack, params in _attacks_list(where, spec.attack, holds))


def _check_spaces(where: str, overrides: dict, searched: tuple[str, ...]) -> None:
    """Every search space now, not mid-sweep (a plugin's too); an override names a registered method."""
    with _about(where, "spaces"):
        for method in overrides:
            methods.get(method)
    for method in dict.fromkeys([*overrides, *searched]):
        search_space(method, overrides, where)


def parse(doc, where: str, profile: str | None = None, *, data_root: str | os.PathLike | None = None,
          skip_checksums: bool | None = None, overrides: list[str] | tuple[str, ...] = (),
          plugins: list[str] | tuple[str, ...] = ()) -> Experiment:
    """`data_root`, `skip_checksums`: the command line's --data-root / --skip-checksums (None: not given)."""
    _top_level(where, doc)
    doc, profile = _resolve_profile(where, doc, profile)
    spec = schema.validate(apply_overrides(where, doc, overrides), where)
    plugin_paths = _plugins(where, spec.plugins, plugins)
    scenarios = _scenarios(where, spec, data_root, skip_checksums)
    spaces_doc = spec.spaces or {}
    exp = Experiment(spec.name or Path(where).stem, scenarios,
                     _methods_list(where, spec.methods, modality(spec.dataset.name)), tuple(sorted(spec.budgets)),
                     spec.trials, tuple(spec.seeds), _fresh(spec), spec.delta, profile, spaces_doc, spec.device,
                     spec.max_failures, spec.gpus_per_trial, plugin_paths, spec.storage, spec.max_concurrent,
                     spec.search_seed, tuple(spec.fresh_rounds or ()),
                     tuple(sorted((float(d) for d in spec.discovery or [1.0]), reverse=True)),
                     Relapse(tuple(sorted(spec.relapse.lengths)), spec.relapse.lr) if spec.relapse else None)
    _check_spaces(where, spaces_doc, exp.methods)
    sc = exp.scenario
    _check_data(f"{where}: model", models.get(sc.model), sc.model_params)  # a model's `check` (saved weights)
    _check_data(f"{where}: dataset", datasets.get(sc.dataset), sc.dataset_params)  # last: it reads files
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
