"""The trial: one method configuration on one or more seeds -> one metrics dict per budget checkpoint.

Pure with respect to the outside world: no Ray, no MLflow. The Tune edge passes `tune.report` as
`on_checkpoint`; tests pass a list's `append`."""
from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import Callable

import torch

from . import discovery as _discovery
from . import relapse as _relapse
from . import methods as _methods
from . import plugins, storage
from .attacks import Poisoning
from .budget import Budget
from .instep import InStep
from .metrics import EQUIVALENT_ACC, DIVERGED, MIA_MIN_NONMEMBERS, accuracy, membership_inference, objective, removal
from .registry import attacks, methods
from .basecache import base_models, identified_retrain
from .scenario import BaseModels, Scenario, epochs_to_quality
from .training import autocast, full_precision, prepare
from . import workercache
from .workercache import remember

Metrics = dict[str, float]
IDENTIFIED = "retrain_identified"  # the reference of a discovery level (methods/retrain_identified.py)


@dataclass
class TrialConfig:
    scenario: Scenario
    method: str
    base_dir: str                      # absolute: trials run in per-trial working directories
    budgets: list[float]               # fractions of C_retrain, ascending; the experiment's (no default here:
    #                                    a second copy of the quickstart's budgets would drift from its file)
    seeds: list[int] = field(default_factory=lambda: [0])
    hparams: dict = field(default_factory=dict)
    device: str = "auto"
    save_models: str | None = None     # a folder: the model at each checkpoint, as budget-B.safetensors
    membership: bool = True            # membership inference at each checkpoint (the report reads it from
    #                                    fresh runs only; tuning trials skip it: it was 2/3 of their evaluation)
    test_accuracy: bool = True         # accuracy on the test set at each checkpoint: tuning trials skip it too
    #                                    (the objective reads acc/val; the report reads acc/test from fresh runs)
    plugins: list[dict] = field(default_factory=list)  # plugin files (plugins.spec) this trial's names may need
    discovery: float = 1.0             # fraction of the poisons the method is told of (sweeper/discovery.py)
    relapse: dict | None = None        # fine-tune a copy at each checkpoint and measure again (sweeper/relapse.py)
    cache_entries: int = 0             # the sweep's seeds × discovery levels: what a worker's caches should hold

    @classmethod
    def from_dict(cls, d: dict) -> "TrialConfig":
        scenario = d["scenario"] if isinstance(d["scenario"], Scenario) else Scenario.from_dict(d["scenario"])
        return cls(**{**d, "scenario": scenario})


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _moved(base: BaseModels, device: torch.device) -> Poisoning:
    p = base.poisoning
    ctx = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in p.context.items()}
    return Poisoning(p.train.to(device), p.forget, ctx, p.craft_seconds, p.craft_units)


class SeedEvaluator:
    """Evaluates a model of one (scenario, seed) against that seed's references."""

    def __init__(self, base: BaseModels, device: torch.device, discovery: float = _discovery.FULL):
        self.base, self.device = base, device
        self.attack = attacks.get(base.scenario.attack)
        self.poisoning = _moved(base, device)
        self.val, self.test = base.data.val.to(device), base.data.test.to(device)
        self.nonmembers = self._nonmembers(base).to(device)
        refs = base.manifest["metrics"]
        self.m_poisoned = refs["poisoned"]["attack/effect"]
        exact = getattr(self.attack, "RETRAIN_EFFECT", None)
        self.m_retrain = exact if exact is not None else refs["retrain"]["attack/effect"]
        self.acc_val_retrain = refs["retrain"]["acc/val"]
        self.accuracy_constrained = not getattr(self.attack, "ACCURACY_IS_EFFECT", False)
        self.parts = self._discovery_parts(discovery)

    def _discovery_parts(self, level: float) -> dict[str, dict]:
        """Below full discovery, for attacks whose effect is a mean over poisons: the contexts of the identified
        and the unidentified poisons, measured apart (removal over all poisons is about d × the removal over
        the identified ones by construction; only the split shows what happened to the others)."""
        per_poison = getattr(self.attack, "PER_POISON", None)
        n = len(self.poisoning.forget)
        if level == _discovery.FULL or not per_poison:
            return {}
        known = _discovery.identified_mask(n, self.base.seed, level)
        ctx = self.poisoning.context
        parts = {"identified": _discovery.context_subset(ctx, per_poison, known.to(self.device))}
        if not known.all():
            parts["unidentified"] = _discovery.context_subset(ctx, per_poison, ~known.to(self.device))
        return parts

    def _nonmembers(self, base: BaseModels):
        """At least MIA_MIN_NONMEMBERS transformed held-out points (attacks may filter the held-out set)."""
        make = lambda copies: self.attack.mia_nonmembers(base.data.test, base.poisoning.context,  # noqa: E731
                                                         seed=base.seed, copies=copies)
        one = make(1)
        return one if len(one) >= MIA_MIN_NONMEMBERS else make(math.ceil(MIA_MIN_NONMEMBERS / max(1, len(one))))

    def effects(self, model: torch.nn.Module, test: bool = True) -> Metrics:
        """Accuracies (the test set's unless `test` is False) and the attack's effect (over all poisons, and
        per discovery part): what a relapsed model is measured on."""
        with full_precision():
            m: Metrics = {"acc/val": accuracy(model, self.val)}
            if test:
                m["acc/test"] = accuracy(model, self.test)
            m.update(self.attack.effect(model, self.poisoning.context))
            for part, ctx in self.parts.items():
                m.update({f"{part}/{k}": v for k, v in self.attack.effect(model, ctx).items()})
        return m

    @cached_property
    def clean(self):
        """The relapse data: the training set less every poison (relapse.clean_points), built once."""
        return _relapse.clean_points(self.poisoning.train, self.poisoning.forget)

    def __call__(self, model: torch.nn.Module, membership: bool = True, test: bool = True) -> Metrics:
        m = self.effects(model, test)
        with full_precision():  # GUS and membership inference are defined in fp32, even in a bf16 trial
            if membership:
                m.update(membership_inference(model, self.poisoning.forget_set, self.nonmembers))
        m["removal"] = removal(self.m_poisoned, m["attack/effect"], self.m_retrain)
        m["retrain/acc_val"] = self.acc_val_retrain  # the reference the objective's constraint uses
        m["attack/ineffective"] = float(not self.m_poisoned - self.m_retrain > 0)
        m["objective"] = seed_objective(m, self.accuracy_constrained)
        return m


def seed_objective(m: Metrics, accuracy_constrained: bool) -> float:
    """The objective; where the attack had no effect on this seed, removal is undefined (NaN), which
    is not divergence: the objective then scores accuracy only (0 when it is kept)."""
    if m.get("attack/ineffective"):
        rest = {k: v for k, v in m.items() if k != "removal"}
        return objective(0.0, m["acc/val"], m["retrain/acc_val"], accuracy_constrained=accuracy_constrained,
                         metrics=rest)
    return objective(m["removal"], m["acc/val"], m["retrain/acc_val"],
                     accuracy_constrained=accuracy_constrained, metrics=m)


_EVALUATORS: OrderedDict = OrderedDict()  # per process (sweeper/workercache.py): the device copies of one seed's data


def evaluator(base: BaseModels, device: torch.device, discovery: float = _discovery.FULL) -> SeedEvaluator:
    """The SeedEvaluator of (base, device, discovery level), built once per worker process: a reused Ray
    worker then keeps the seed's splits and poisoning on its device across trials instead of copying them
    for each one."""
    return remember(_EVALUATORS, (id(base), str(device), discovery),
                    lambda: SeedEvaluator(base, device, discovery))


def _run_seed(cfg: TrialConfig, seed: int, emit: Callable[[Metrics], None]) -> None:
    device = pick_device(cfg.device)
    base = base_models(cfg.scenario, seed, cfg.base_dir, device=device)
    method = methods.get(cfg.method)
    evaluate = evaluator(base, device, cfg.discovery)
    retrain_units = base.retrain_units

    spec = _relapse.Relapse.from_dict(cfg.relapse)

    def row(model, fraction: float, units: int, seconds: float, trial: tuple[int, float] | None = None) -> Metrics:
        level = {"discovery": cfg.discovery} if cfg.discovery != _discovery.FULL else {}  # rows of a level below 1 say so
        # cost/trial_*: what the trial spent up to here; above cost/fraction and cost/seconds only for a method
        # that starts over per checkpoint (scratch's compressed schedule); tuning_cost_retrains sums the fraction
        trial_units, trial_seconds = trial if trial is not None else (units, seconds)
        m = {"budget": fraction, "cost/units": units, "cost/fraction": units / retrain_units,
             "cost/trial_fraction": trial_units / retrain_units, "cost/seconds": seconds,
             "cost/trial_seconds": trial_seconds, **level, **evaluate(model, cfg.membership, cfg.test_accuracy)}
        if spec is not None:  # a deep copy is fine-tuned: the trial's model and its checkpoints are untouched
            m.update(_relapse.measure(model, evaluate.clean, cfg.scenario.recipe, spec, retrain_units, seed,
                                      evaluate.effects))
        return m

    if cfg.method == IDENTIFIED:  # its own cached model per level; its cost is its own retraining
        state, manifest = identified_retrain(base, cfg.discovery, cfg.base_dir, device)
        model = base.scenario.build_model(base.data, seed)
        model.load_state_dict(state)
        emit(row(prepare(model, device).eval(), 1.0, manifest["retrain_units"], manifest["train_seconds"]))
        return
    if _methods.kind(method) == "reference":
        which = "poisoned" if cfg.method == "none" else "retrain"
        cost = method.COST
        seconds = base.manifest["train_seconds"]["retrain"] if cost else 0.0
        m = row(base.model(which, device), cost, round(cost * retrain_units), seconds)
        if which == "retrain":
            m.update(_slack(base))
        emit(m)
        return

    model = base.model("poisoned", device)
    p = evaluate.poisoning
    retain, forget = _discovery.split(p.train, p.forget, seed, cfg.discovery)
    data = _methods.UnlearnData(retain, forget, base.data.num_classes, cfg.scenario.recipe, seed,
                                _discovery.shared_folder(base.path / "shared", cfg.discovery),
                                initial=lambda: base.scenario.build_model(base.data, seed).state_dict())

    def checkpoint(fraction: float, units: int) -> None:
        emit(row(model, fraction, units, budget.seconds, (budget.trial_units, budget.trial_seconds)))
        if cfg.save_models:
            save_model(model, cfg.save_models, model_file(fraction))

    budget = Budget(retrain_units, cfg.budgets, checkpoint, device)
    with autocast(cfg.scenario.recipe, device):  # the recipe's precision; evaluation switches back to fp32
        method.unlearn(model, data, budget, **cfg.hparams)
    if _methods.kind(method) == "fixed":
        budget.finish()


def _slack(base: BaseModels) -> Metrics:
    """The epochs θ_retrain's training took to come within EQUIVALENT_ACC of its final validation accuracy
    (its learning curve, recorded when it was trained), beside the recipe's epochs: how much of C_retrain is
    slack. NaN for bases cached before the curve was recorded."""
    curve = base.manifest.get("retrain_curve") or []
    final = base.manifest["metrics"]["retrain"]["acc/val"]
    reached = epochs_to_quality(curve, final, EQUIVALENT_ACC)
    return {"retrain/epochs_to_quality": math.nan if reached is None else float(reached),
            "retrain/epochs": float(base.scenario.recipe.epochs)}


def model_file(fraction: float) -> str:
    return f"budget-{fraction:g}.safetensors"


def save_model(model: torch.nn.Module, folder: str, name: str) -> None:
    """The state dict as `folder`/`name` in safetensors (plain tensors: loading it runs no code), written
    atomically; `folder` may be in an object store (one PUT), so a trial on any node can save it."""
    from safetensors.torch import save

    payload = save({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()})
    if storage.is_remote(folder):
        storage.write_bytes(storage.join(folder, name), payload)
        return
    storage.write_atomic(Path(folder) / name, payload)


def pool(rows: list[Metrics], accuracy_constrained: bool = True) -> Metrics:
    """Combine one checkpoint's metrics over seeds: means, except GUS z pooled over all poisons, the
    effect's standard error as that of a mean, and the objective recomputed from the pooled removal
    and accuracies (a mean of per-seed objectives would mix penalties with removals)."""
    out = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
    for key in ("budget", "discovery"):  # the same on every seed; a mean would drift by an ulp (0.1 -> 0.10000000000000002)
        if key in rows[0]:
            out[key] = rows[0][key]
    effective = [r["removal"] for r in rows if not r.get("attack/ineffective")]
    out["removal"] = sum(effective) / len(effective) if effective else math.nan
    out["attack/ineffective"] = float(not effective)
    if "gus/sum" in rows[0]:
        n = sum(r["gus/n_valid"] for r in rows)
        total = sum(r["gus/sum"] for r in rows)
        out.update({"gus/n_valid": n, "gus/sum": total, "gus/z": total / math.sqrt(n) if n else math.nan,
                    "gus/mean": total / n if n else math.nan})
    if "attack/effect_se" in rows[0]:
        out["attack/effect_se"] = math.sqrt(sum(r["attack/effect_se"] ** 2 for r in rows)) / len(rows)
    if any(r["objective"] == DIVERGED for r in rows):
        out["objective"] = DIVERGED  # a diverged seed marks the trial
    else:
        out["objective"] = seed_objective(out, accuracy_constrained)
    return out


def run_trial(config: dict | TrialConfig, on_checkpoint: Callable[[Metrics], None] | None = None) -> list[Metrics]:
    """Run a configuration on each seed; hand one pooled metrics dict per checkpoint to `on_checkpoint` as
    soon as every seed has reached it, and return them all.

    Several seeds run in step (sweeper/instep.py): each seed up to the next checkpoint, one after the other,
    so when the caller stops the trial there (`on_checkpoint` raises: ASHA's early stop) no seed has
    unlearned past it. Each seed computes exactly what it computes alone."""
    cfg = config if isinstance(config, TrialConfig) else TrialConfig.from_dict(config)
    plugins.ensure(cfg.plugins)  # a Ray worker loads the user's plugin files before resolving any name
    workercache.fit(cfg.cache_entries)  # a worker that meets every seed of the sweep loads each once
    constrained = not getattr(attacks.get(cfg.scenario.attack), "ACCURACY_IS_EFFECT", False)
    start = time.perf_counter()
    pooled_rows: list[Metrics] = []

    def report(per_seed: list[Metrics]) -> None:
        pooled = pool(per_seed, constrained)
        pooled["trial/seconds"] = time.perf_counter() - start
        pooled_rows.append(pooled)
        if on_checkpoint is not None:
            on_checkpoint(pooled)

    if len(cfg.seeds) == 1:
        _run_seed(cfg, cfg.seeds[0], lambda metrics: report([metrics]))
        return pooled_rows
    with InStep([partial(_run_seed, cfg, seed) for seed in cfg.seeds]) as rounds:
        for per_seed in rounds:
            report(per_seed)
    return pooled_rows
