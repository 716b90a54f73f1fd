"""Picking configurations from tuning rows: what the sweep needs mid-run (which trial each fresh phase
re-runs) as well as the summary. Kept free of scipy, matplotlib and the rest of the report, so that the
sweep can import it without loading them (docs/architecture.md, Fresh seeds and selection: selection, then fresh
measurement)."""
from __future__ import annotations

import json

import pandas as pd

REFERENCES = ("none", "retrain", "retrain_identified")  # measured, never searched
SCRATCH = "scratch"  # the baseline every method is also judged against at the same budget (methods/scratch.py)
GOLD = REFERENCES[:2]  # measured once per attack, shared by its discovery levels
IDENTIFIED = "retrain_identified"  # the reference of a discovery level below 1 (methods/retrain_identified.py)


def _usable(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows that measured something: not from failed runs, not a fixed-cost method's over-budget marker."""
    over = rows["over_budget"].fillna(0).astype(bool) if "over_budget" in rows else False
    return rows[(rows["run_status"] != "FAILED") & ~over]


def best_per_budget(tune: pd.DataFrame) -> pd.DataFrame:
    """The best tuning checkpoint by objective for each (attack, method, budget), with trial counts."""
    tune = _usable(tune)
    tune = tune[~tune.method.isin(REFERENCES)]
    if tune.empty:
        return tune.assign(n_trials=[])
    idx = tune.groupby(["attack", "method", "budget"])["objective"].idxmax()
    best = tune.loc[idx].copy()
    counts = tune.groupby(["attack", "method", "budget"])["trial_id"].nunique()
    best["n_trials"] = [counts[(a, m, b)] for a, m, b in zip(best.attack, best.method, best.budget)]
    return best.reset_index(drop=True)


def selections(tune: pd.DataFrame) -> list[dict]:
    """What the fresh phase must re-run: each chosen tuning trial once, at the budgets it won."""
    best = best_per_budget(tune)
    out = []
    for (attack, method, trial_id), group in best.groupby(["attack", "method", "trial_id"], sort=True):
        out.append({"attack": attack, "method": method, "trial_id": trial_id,
                    "hparams": json.loads(group["hparams"].iloc[0]), "budgets": sorted(group["budget"])})
    return out


def tuning_cost(tune: pd.DataFrame) -> dict[tuple[str, str], float]:
    """All units each method's search spent (every trial to where it stopped, on every tuning seed),
    as a multiple of one retrain. A trial that starts over per checkpoint (scratch, compressed) spent the
    sum of its runs: its last `cost/trial_fraction`."""
    tune = tune[~tune.method.isin(REFERENCES)]
    if tune.empty or "cost/fraction" not in tune:
        return {}
    last = tune.sort_values("budget").groupby(["attack", "method", "trial_id"]).tail(1)
    spent = last["cost/fraction"]  # rows written before cost/trial_fraction existed: the same for every method then
    if "cost/trial_fraction" in last:
        spent = last["cost/trial_fraction"].fillna(spent)
    per_trial = spent.fillna(0) * last.get("n_seeds", 1)
    return per_trial.groupby([last.attack, last.method]).sum().to_dict()


def hparams_json(hparams: dict) -> str:
    """The one spelling of a configuration in rows and runs (sorted keys), so equal configurations compare
    equal as strings."""
    return json.dumps(hparams, sort_keys=True)
