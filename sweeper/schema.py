"""The experiment file as a pydantic schema: every key's type, default and meaning, written once.

Strict: YAML `true` is no integer and a quoted `"8"` no number; an integer is a number wherever a float is
wanted; lists are YAML lists. A mistake becomes one SweeperError line naming the file and the key, worded by
the key's `Says` (`quickstart.yaml: trials must be a positive integer, got true`). What the schema cannot
know — registered names, their parameters, search spaces, data folders — `config` checks by hand."""
from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cache
from typing import Annotated, Any, Literal, get_args

from pydantic import (AfterValidator, AllowInfNan, BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter,
                      ValidationError, WrapValidator, create_model, model_validator)
from pydantic_core import PydanticCustomError

from .errors import SweeperError
from .params import NON_NEGATIVE, POSITIVE, Range
from .training import Recipe

STRICT = ConfigDict(strict=True, extra="forbid", frozen=True)
DEVICE = r"^(auto|cpu|cuda(:\d+)?|mps)$"  # what trial.pick_device hands to torch.device; by form only
DEFAULT_DELTA = 0.1  # docs/architecture.md, Statistics and verdicts
BASE_PROFILE = "quick"  # the file's own values, without a profile's overrides
MIN_VERDICT_SEEDS = 3  # fewer fresh seeds give no verdict (docs/architecture.md, Statistics and verdicts)
MAX_FAILURES = 2  # a trial lost with its node (or a crashed worker) is retried twice from its start
GPUS_PER_TRIAL = 0.25  # four small trials share a GPU; a ResNet-18 trial on CIFAR may want 0.5 or 1
GPUS_PER_TRIAL_RANGE = Range(0, 1, low_open=True)  # a trial uses one device: more than one GPU is never used
# Recipe's fields live in training.py; their ranges here, where files are read. Momentum 1 never forgets a
# gradient (SGD diverges); weight decay 0 is plain SGD, a meaningful choice.
RECIPE_RANGES = {"epochs": POSITIVE, "batch_size": POSITIVE, "lr": POSITIVE,
                 "momentum": Range(0, 1, high_open=True), "weight_decay": NON_NEGATIVE}


@dataclass(frozen=True)
class Says:
    """How a key's mistakes read. `rule` words any mistake; `type`, `finite`, `range` and `duplicate` word
    that kind of mistake, `item` (and `item_range`) one element of a list. Placeholders: `{key}` the key,
    `{got}` the value (the element's for `item`), `{index}` the element's index, `{rule}` a Range's rule."""
    rule: str
    type: str | None = None
    finite: str | None = None
    range: str | None = None
    duplicate: str | None = None
    item: str | None = None
    item_range: str | None = None


def _within(valid: Range):
    def check(value):
        if value not in valid:
            raise PydanticCustomError("range", "must {rule}", {"rule": valid.rule()})
        return value
    return AfterValidator(check)


def _unique(values: list) -> list:
    if len(set(values)) != len(values):
        raise PydanticCustomError("duplicate", "lists a value twice")
    return values


def _keep_int(value, handler):
    """A float field given an integer keeps the integer, as the file wrote it (cache keys hash the value)."""
    out = handler(value)
    return value if type(value) is int else out


Int = Annotated[int, Field(strict=True)]
Float = Annotated[float, Field(strict=True), AllowInfNan(False)]  # an integer reads as its float
Number = Annotated[Float, WrapValidator(_keep_int)]
Seed = Annotated[Int, _within(NON_NEGATIVE)]
Text = Annotated[str, StringConstraints(min_length=1)]


def _recipe_field(kind: str, valid: Range | None):
    """One Recipe field's type and wording (an integer, a number or a switch), from its annotation."""
    if kind not in ("int", "float", "bool"):
        raise TypeError(f"training.Recipe: a field of type {kind} has no schema here; add one")
    if kind == "bool":
        return Annotated[bool, Says("{key} must be true or false, got {got}")]
    says = Says("{key} must be an integer, got {got}" if kind == "int" else "{key} must be a number, got {got}",
                finite="{key} must be a finite number, got {got}", range="{key} must {rule}, got {got}")
    base = Int if kind == "int" else Number
    return Annotated[base, _within(valid), says] if valid else Annotated[base, says]


RecipeSpec = create_model(
    "RecipeSpec", __config__=STRICT, __doc__="training.Recipe's fields, each optional (its default applies)",
    **{f.name: (_recipe_field(f.type, RECIPE_RANGES.get(f.name)), f.default) for f in fields(Recipe)})


class Named(BaseModel):
    """A registered dataset, model or attack: `digits`, or `{name: digits, n_test: 100}` (its parameters,
    checked against the registered function's signature and RANGES by config)."""
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)
    name: str

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value):
        return {"name": value} if isinstance(value, str) else value

    @property
    def params(self) -> dict:
        return dict(self.model_extra or {})


def _says(rule: str, **kinds: str) -> Says:
    return Says("{key} " + rule + ", got {got}", **kinds)


POSITIVE_INT = _says("must be a positive integer")
NON_NEGATIVE_INT = _says("must be a non-negative integer")
NAMED = _says("must be a name or a mapping with 'name'")
SEEDS = _says("must be a non-empty list of non-negative integers", duplicate="{key} lists a value twice",
              item="{key}[{index}] must be a non-negative integer, got {got}")


class RelapseSpec(BaseModel):
    """`relapse:`: benign fine-tuning of a copy of each fresh run's model at its selected budgets, then the
    poison's effect measured again (sweeper/relapse.py)."""
    model_config = STRICT
    lengths: Annotated[list[Annotated[Float, _within(Range(0, 1, low_open=True))]], Field(min_length=1),
                       AfterValidator(_unique),
                       _says("must be a non-empty list of fractions of retraining cost", duplicate="{key} lists a value twice",
                             item="relapse length {got} must be a number", item_range="relapse length {got} lies outside (0, 1]")
                       ] = Field(description="fine-tuning lengths, fractions of the gold C_retrain")
    lr: Annotated[Annotated[Float, _within(POSITIVE)] | None, _says("must be a positive number (or null: the recipe's)")
                  ] = Field(None, description="the fine-tuning's learning rate (default: the recipe's lr)")


class ExperimentFile(BaseModel):
    """An experiment file as written, after its profile and command-line overrides. A key without a
    default is required; `None` as a default means "not given" (the Experiment's own default applies)."""
    model_config = STRICT

    name: Annotated[Text, _says("must be a non-empty string")] = Field(
        None, description="the sweep's name (default: the file's stem)")
    dataset: Annotated[Named, NAMED] = Field(description="the data set and its parameters")
    model: Annotated[Named, NAMED] = Field(description="the model and its parameters")
    attack: Annotated[Named | Annotated[list[Named], Field(min_length=1)],
                      _says("must be a name, a mapping with 'name', or a non-empty list of them",
                            item="{key}[{index}] must be a name or a mapping with 'name', got {got}")] = Field(
        description="the poisoning attack, or a list of them: one scenario each (same data set, model, recipe)")
    recipe: Annotated[RecipeSpec | None, _says("must be a mapping of training.Recipe's fields")] = Field(
        None, description="how θ_poisoned and θ_retrain are trained (training.Recipe)")
    methods: Annotated[Literal["all"] | Annotated[list[str], Field(min_length=1), AfterValidator(_unique)],
                       _says("must be 'all' or a non-empty list of names", duplicate="{key} lists a name twice",
                             item="{key}[{index}] must be a method's name, got {got}")] = Field(
        description="searched methods: registered names, or all (the references none and retrain always run)")
    budgets: Annotated[list[Annotated[Float, _within(Range(0, 1, low_open=True))]], Field(min_length=1),
                       AfterValidator(_unique),
                       _says("must be a non-empty list of fractions of retraining cost", duplicate="{key} lists a value twice",
                             item="budget {got} must be a number", item_range="budget {got} lies outside (0, 1]")
                       ] = Field(description="fractions of C_retrain, each in (0, 1]")
    trials: Annotated[Int, _within(POSITIVE), POSITIVE_INT] = Field(description="Optuna trials per (attack, method)")
    seeds: Annotated[list[Seed], Field(min_length=1), AfterValidator(_unique), SEEDS] = Field(
        description="base-model seeds each tuning trial is measured on")
    fresh_seeds: Annotated[list[Seed], AfterValidator(_unique), SEEDS] = Field(
        None, description="seeds the chosen configurations are re-measured on, none of them a tuning seed "
                          "([] skips; default: the 3 integers after the largest tuning seed)")
    fresh_rounds: Annotated[Annotated[list[Annotated[Int, _within(POSITIVE)]], Field(min_length=1)] | None,
                            _says("must be a list of increasing seed counts, e.g. [3, 6, 12, 24]",
                                  item="{key}[{index}] must be a whole number of fresh seeds, got {got}")] = Field(
        None, description="looks of the adaptive fresh phase: after each count of fresh seeds only the rows still "
                          "undecided get the next ones (default: one look at all fresh_seeds)")
    delta: Annotated[Float, _within(Range(0, 1, low_open=True, high_open=True)), _says("must be a number in (0, 1)")
                     ] = Field(DEFAULT_DELTA, description="non-inferiority margin of 'equivalent to retrain'")
    profile: Annotated[str, _says("must be the name of a profile")] = Field(
        BASE_PROFILE, description="which entry of profiles applies (quick: the file's own values)")
    profiles: Annotated[dict[str, dict[str, Any]] | None, _says("must be a mapping of name -> overrides")] = Field(
        None, description="named partial overrides of this file's keys")
    spaces: Annotated[dict[str, Any] | None, _says("must be a mapping of method -> search space")] = Field(
        None, description="search-space overrides per method (search_spaces/NAME.yaml's form)")
    device: Annotated[str, StringConstraints(pattern=DEVICE), _says("must be auto, cpu, cuda, cuda:N or mps")] = Field(
        "auto", description="where trials train (auto: CUDA when the trial has a GPU)")
    data_root: Annotated[Text | None, _says("must be a path (the data folder)")] = Field(
        None, description="the folder of a file-based data set (its `root`; --data-root wins)")
    gpus_per_trial: Annotated[Float, _within(GPUS_PER_TRIAL_RANGE),
                              _says("must be a number in (0, 1]", finite="{key} must be a finite number, got {got}",
                                    range="{key} must lie in (0, 1], got {got}")] = Field(
        GPUS_PER_TRIAL, description="share of a GPU each trial asks Ray for (admission only: Ray caps no memory)")
    max_failures: Annotated[Int, _within(NON_NEGATIVE), NON_NEGATIVE_INT] = Field(
        MAX_FAILURES, description="retries of a failed trial (Tune) or task (Ray) before it counts as FAILED")
    plugins: Annotated[list[str] | None, _says("must be a list of paths to .py files",
                                               item="{key}[{index}] must be a path to a .py file, got {got}")] = Field(
        None, description="plugin files (methods, attacks, ... from outside the package), relative to the file")
    storage: Annotated[Annotated[str, StringConstraints(pattern=r"\S")] | None,
                       _says("must be a path or a URI (s3://bucket/prefix)")] = Field(
        None, description="base models, Tune records, chosen models (--storage and SWEEPER_STORAGE win)")
    max_concurrent: Annotated[Annotated[Int, _within(POSITIVE)] | None, POSITIVE_INT] = Field(
        None, description="trials at once, Tune's and the plain references and fresh runs beside them (default: what the cluster holds when the sweep starts)")
    discovery: Annotated[list[Annotated[Float, _within(Range(0, 1, low_open=True))]], Field(min_length=1),
                         AfterValidator(_unique),
                         _says("must be a non-empty list of fractions of the poisons identified",
                               duplicate="{key} lists a value twice", item="{key}[{index}] must be a number, got {got}",
                               item_range="discovery level {got} lies outside (0, 1]")] = Field(
        None, description="fractions of the poisons the unlearner is told of, each its own sweep cell "
                          "(sweeper/discovery.py; default [1.0]: every poison identified)")
    relapse: Annotated[RelapseSpec | None, _says("must be a mapping with lengths (and lr)")] = Field(
        None, description="fine-tune each fresh run's model on clean points and measure the poison again "
                          "(sweeper/relapse.py; default: off)")
    search_seed: Annotated[Seed, NON_NEGATIVE_INT] = Field(
        0, description="seed of every Optuna sampler of the sweep (0: the studies of every earlier sweep)")

    @model_validator(mode="after")
    def _fresh_apart(self):
        """Fresh measurements need seeds the selection never saw, and two of them for an interval."""
        fresh = self.fresh_seeds or []
        if set(fresh) & set(self.seeds):
            raise PydanticCustomError("fresh", "fresh_seeds {both} are also tuning seeds; fresh measurements need "
                                      "seeds the selection never saw", {"both": sorted(set(fresh) & set(self.seeds))})
        if len(fresh) == 1:
            raise PydanticCustomError("fresh", "fresh_seeds needs at least 2 seeds for an interval (or [] to skip)")
        rounds = self.fresh_rounds
        if rounds is not None:
            if any(b <= a for a, b in zip(rounds, rounds[1:])):
                raise PydanticCustomError("fresh", "fresh_rounds {rounds} must increase (cumulative fresh-seed counts "
                                          "at each look)", {"rounds": rounds})
            if rounds[0] < MIN_VERDICT_SEEDS:
                raise PydanticCustomError("fresh", "fresh_rounds starts at {first}: a verdict needs at least {k} fresh "
                                          "seeds, so a first look at fewer decides nothing",
                                          {"first": rounds[0], "k": MIN_VERDICT_SEEDS})
            if self.fresh_seeds is not None and rounds[-1] != len(fresh):
                raise PydanticCustomError("fresh", "fresh_rounds ends at {last} seeds but fresh_seeds lists {n}; "
                                          "the last look uses every fresh seed", {"last": rounds[-1], "n": len(fresh)})
        return self


REQUIRED = frozenset(k for k, f in ExperimentFile.model_fields.items() if f.is_required())
OPTIONAL = frozenset(ExperimentFile.model_fields) - REQUIRED


def validate(doc: dict, where: str) -> ExperimentFile:
    """The document as an ExperimentFile, or one SweeperError line naming `where` and the key."""
    try:
        return ExperimentFile.model_validate(doc)
    except ValidationError as e:
        raise SweeperError(f"{where}: {_message(e.errors(), doc)}") from None


def check_option(key: str, value, flag: str):
    """A command-line option checked as the file's `key` is (`--trials 0` reads as `trials: 0` would); the
    error names the flag: `--trials must be ...`, or `--max-failures: max_failures must ...`."""
    try:
        return _adapter(key).validate_python(value)
    except ValidationError as e:
        label = flag if flag.lstrip("-") == key else f"{flag}: {key}"
        errors = [{**err, "loc": (key, *err["loc"])} for err in e.errors()]
        raise SweeperError(_message(errors, {key: value}, label)) from None


@cache
def _adapter(key: str) -> TypeAdapter:
    info = ExperimentFile.model_fields[key]
    return TypeAdapter(Annotated[(info.annotation, *info.metadata)])


# Kinds of pydantic error, most telling first: of a key's errors (a union has one per branch), the first
# kind in this order words the message; any other kind is a wrong type.
_KINDS = ("duplicate", "range", "finite_number")


def _message(errors: list[dict], doc: dict, label: str | None = None) -> str:
    first = errors[0]
    if not first["loc"]:  # a check across keys (fresh_seeds against seeds) words itself
        return first["msg"]
    if first["type"] == "extra_forbidden":
        *parent, key = first["loc"]
        known = _fields(_model_at(parent))
        return f"{'.'.join(map(str, parent)) + ': ' if parent else ''}unknown key {key!r}; known: {', '.join(known)}"
    mine = [e for e in errors if e["loc"][:1] == first["loc"][:1]]
    return _worded(min(mine, key=_telling), doc, label)


def _telling(err: dict) -> tuple:
    """Of a key's errors, the kind listed first in _KINDS, then one inside a list: of a union's branches
    (a name or a list of names), the list's when a list was given."""
    rank = _KINDS.index(err["type"]) if err["type"] in _KINDS else len(_KINDS)
    return rank, not any(isinstance(p, int) for p in err["loc"][1:])


def _worded(err: dict, doc: dict, label: str | None) -> str:
    path, rest = _split(err["loc"])
    says = next(m for m in _model_at(path[:-1]).model_fields[path[-1]].metadata if isinstance(m, Says))
    kind = {"duplicate": "duplicate", "range": "range", "finite_number": "finite"}.get(err["type"], "type")
    index = next((p for p in rest if isinstance(p, int)), None)
    item = index is not None and ((says.item_range if kind in ("range", "finite") else None) or says.item)
    template = item or getattr(says, kind) or says.rule
    value = _at(doc, [*path, index] if item else path, err["input"])
    return template.format(key=label or ".".join(path), index=index, got=shown(value),
                           rule=(err.get("ctx") or {}).get("rule"))


def _split(loc: tuple) -> tuple[list[str], list]:
    """An error's location as the key it is about (`recipe.epochs`) and what lies below it (a list index,
    a union's branch)."""
    path, rest = [loc[0]], list(loc[1:])
    while rest and isinstance(rest[0], str) and rest[0] in _fields(_model_at(path)):
        path.append(rest.pop(0))
    return path, rest


def _model_at(path: list) -> type[BaseModel] | None:
    """The model holding the keys under `path` (() is the file, ["recipe"] RecipeSpec); None under a value."""
    model = ExperimentFile
    for key in path:
        info = _fields(model).get(key)
        if info is None:
            return None
        model = next((t for t in get_args(info.annotation) or (info.annotation,)
                      if isinstance(t, type) and issubclass(t, BaseModel) and t is not Named), None)
    return model


def _fields(model: type[BaseModel] | None) -> dict:
    return model.model_fields if model is not None else {}


def _at(doc, path: list, default):
    """The value at `path` (keys and list indices) in the document, `default` where there is none."""
    for key in path:
        if isinstance(doc, dict) and key in doc or isinstance(doc, list) and isinstance(key, int) and key < len(doc):
            doc = doc[key]
        else:
            return default
    return doc


def shown(value) -> str:
    """A value as the file spells it: true/false/null for YAML's words, Python's repr for the rest."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else repr(value)
