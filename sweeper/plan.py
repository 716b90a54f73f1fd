"""`sweeper run --dry-run`: what a sweep would run, computed without training or tuning anything and
without writing anything."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import methods as _methods
from . import storage as store
from .config import Experiment
from .registry import methods
from .workdir import DEFAULT_WORKDIR, prepare_storage, storage_choice


@dataclass
class Plan:
    """What `sweeper run` would do (`--dry-run`)."""
    experiment: Experiment
    tuning_trials: int           # per sweep: attacks x methods x trials
    fresh_runs_max: int          # chosen configurations (at most one per budget) x fresh seeds, plus references
    base_to_train: int           # every seed's, if every look runs
    base_cached: int
    fresh_runs_min: int          # the first look's runs: what an adaptive sweep runs if that look decides every row
    base_first_look: int         # base models trained before tuning (tuning seeds and the first look's)
    units_worst: float           # cost units if no trial stops early (base models and crafting excluded)
    retrain_units: dict          # attack -> C_retrain (from a cached manifest, else the upper bound 3·epochs·|train|)
    exact: bool                  # every C_retrain came from a manifest
    slots: int
    seconds_per_unit: float | None  # from cached manifests' training times, when there are any
    identified_to_train: int = 0  # retrain_identified models: one per (attack, seed, discovery level below 1)

    def lines(self) -> list[str]:
        exp = self.experiment
        out = [f"dry run of {exp.name} (profile {exp.profile}): attacks {', '.join(sc.attack for sc in exp.scenarios)}; "
               f"{len(exp.methods)} methods: {', '.join(exp.methods)}",
               f"tuning: {self.tuning_trials} trials ({exp.trials} per attack and method"
               + (f" at each of {len(exp.discovery)} discovery levels {list(exp.discovery)}" if exp.partial_discovery
                  else "") + f") on seeds {list(exp.seeds)}; budgets {list(exp.budgets)}",
               f"fresh seeds {list(exp.fresh_seeds)}: at most {self.fresh_runs_max} runs"
               + (f" (looks at {list(exp.fresh_rounds)} seeds: later looks only for rows still undecided, with "
                  f"their base models; at most {self.fresh_runs_min} if the first look decides every row)"
                  if len(exp.looks) > 1 else ""),
               f"base models: {self.base_to_train} to train, {self.base_cached} cached"
               + (f" ({self.base_first_look} before tuning; the rest only for looks that run)"
                  if self.base_first_look != self.base_to_train else "")
               + (f"; up to {self.identified_to_train} retrain_identified models (one per attack, seed and discovery "
                  "level below 1, trained when first measured unless cached)" if self.identified_to_train else ""),
               f"worst case (no early stopping): {'' if self.exact else '≤ '}{self.units_worst:,.0f} units = "
               f"{self.units_worst / max(self.retrain_units.values()):.1f} retrains; C_retrain "
               + ", ".join(f"{a} {u:,}" for a, u in self.retrain_units.items())]
        if self.seconds_per_unit:
            est = self.units_worst * self.seconds_per_unit / self.slots
            out.append(f"estimated wall time of the trials: ≤ {est / 60:.1f} min on {self.slots} slots "
                       "(from cached base models' training speed; evaluation, base models and crafting not included)")
        else:
            out.append(f"{self.slots} slots; wall time unknown until a base model of this scenario is trained")
        return out


def plan(exp: Experiment, workdir: str | os.PathLike = DEFAULT_WORKDIR, storage: str | os.PathLike | None = None,
         slots: int | None = None) -> Plan:
    """The sweep `exp` would run in `workdir`: counts, cached base models, worst-case cost. Writes nothing."""
    from .basecache import entry_manifest, entry_status

    wd = Path(workdir).expanduser().resolve()
    root = prepare_storage(storage_choice(storage, exp.storage), wd, probe=False)
    seeds = list(exp.seeds) + list(exp.fresh_seeds)
    first_look = set(exp.seeds) | set(exp.fresh_seeds[:exp.looks[0] if exp.looks else 0])  # as sweep._stages builds
    cached = todo = first = 0
    retrain: dict[str, int] = {}
    rates: list[float] = []
    exact = True
    for sc in exp.scenarios:
        for seed in seeds:
            if entry_status(sc, seed, store.join(root, "base")) is None:
                cached += 1
                m = entry_manifest(sc, seed, store.join(root, "base"))
                retrain.setdefault(sc.attack, int(m["retrain_units"]))
                rates.append(m["train_seconds"]["retrain"] / int(m["retrain_units"]))
            else:
                todo += 1
                first += seed in first_look
        if sc.attack not in retrain:
            exact = False
            retrain[sc.attack] = sc.recipe.retrain_units(len(sc.load_data().train))
    n_budgets, fresh, levels = len(exp.budgets), len(exp.fresh_seeds), len(exp.discovery)
    partial = sum(d < 1 for d in exp.discovery)  # levels with a retrain_identified reference
    worst = sum(_methods.worst_fraction(methods.get(m), exp.budgets) for m in exp.methods)  # per trial, summed
    units = sum(c * levels * (worst * exp.trials * len(exp.seeds) + exp.budgets[-1] * len(exp.methods) * n_budgets
                              * fresh) for c in retrain.values())
    per_seed = len(exp.scenarios) * (levels * len(exp.methods) * n_budgets + 2 + partial)
    return Plan(exp, len(exp.scenarios) * levels * len(exp.methods) * exp.trials, per_seed * fresh, todo, cached,
                per_seed * (exp.looks[0] if exp.looks else 0), first, units, retrain, exact,
                slots or (os.cpu_count() or 1), sum(rates) / len(rates) if rates else None,
                len(exp.scenarios) * len(seeds) * partial)
