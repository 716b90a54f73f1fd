"""The report: the best removal each method reaches at each budget, against none and retrain.

Built from checkpoint rows alone (what MLflow holds), so `sweeper report` can rebuild it later."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from .metrics import DIVERGED
from .registry import attacks, methods

COLUMNS = ["attack", "method", "budget", "removal", "acc_val", "acc_test", "gus_z", "attack_effect",
           "mia_auc", "objective", "cost_units", "cost_fraction", "cost_seconds", "n_trials", "status",
           "trial_id", "hparams"]
RENAME = {"acc/val": "acc_val", "acc/test": "acc_test", "gus/z": "gus_z", "attack/effect": "attack_effect",
          "mia/auc": "mia_auc", "cost/units": "cost_units", "cost/fraction": "cost_fraction",
          "cost/seconds": "cost_seconds"}
EFFECTIVE_SE = 3.0  # removal is computed only when poisoned - retrain effect exceeds 3 standard errors


def attack_worked(refs: pd.DataFrame, attack: str) -> bool:
    """DESIGN §3: m_poisoned − m_retrain above 3 standard errors (pooled over the scenario's seeds)."""
    none = refs[refs.method == "none"]
    if none.empty:
        return False
    none = none.iloc[0]
    exact = getattr(attacks.get(attack), "RETRAIN_EFFECT", None) if attack in attacks else None
    se2 = float(none.get("attack/effect_se", math.nan)) ** 2
    if exact is None:
        retrain = refs[refs.method == "retrain"]
        if retrain.empty:
            return False
        m_retrain = float(retrain.iloc[0]["attack/effect"])
        se2 += float(retrain.iloc[0].get("attack/effect_se", math.nan)) ** 2
    else:
        m_retrain = exact
    gap = float(none["attack/effect"]) - m_retrain
    return math.isfinite(gap) and math.isfinite(se2) and gap > EFFECTIVE_SE * math.sqrt(se2)


def _status(best: pd.Series, worked: bool) -> str:
    if best["objective"] <= DIVERGED:
        return "diverged"
    if not worked:
        return "attack_ineffective"
    if best["objective"] < -1:
        return "accuracy_violated"  # even the best trial lost more than the tolerated accuracy
    return "ok"


def _row(best: pd.Series, attack: str, method: str, budget: float, n: int, status: str) -> dict:
    row = {"attack": attack, "method": method, "budget": budget, "n_trials": n, "status": status,
           "trial_id": best.get("trial_id"), "hparams": best.get("hparams", "{}"),
           "objective": best.get("objective")}
    for k, v in RENAME.items():
        row[v] = best.get(k)
    row["removal"] = best.get("removal") if status not in ("attack_ineffective", "diverged") else math.nan
    return row


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (attack, method, budget): the best trial by objective among those that reached it."""
    out = []
    usable = rows[rows["run_status"] != "FAILED"]
    for attack, by_attack in usable.groupby("attack", sort=True):
        refs = by_attack[by_attack.method.isin(["none", "retrain"])]
        worked = attack_worked(refs, attack)
        for _, ref in refs.sort_values("budget").iterrows():
            out.append(_row(ref, attack, ref["method"], ref["budget"], 1, "ok" if worked else "attack_ineffective"))
        searched = by_attack[~by_attack.method.isin(["none", "retrain"])]
        budgets = sorted(searched["budget"].unique())
        for method in sorted(rows[(rows.attack == attack) & ~rows.method.isin(["none", "retrain"])].method.unique()):
            mine = searched[searched.method == method]
            for budget in budgets:
                at = mine[mine["budget"] == budget]
                if at.empty:
                    status = "over_budget" if _is_fixed(method) else "no_trials"
                    out.append({"attack": attack, "method": method, "budget": budget, "n_trials": 0,
                                "status": status})
                    continue
                best = at.loc[at["objective"].idxmax()]
                out.append(_row(best, attack, method, budget, at["trial_id"].nunique(), _status(best, worked)))
    return pd.DataFrame(out).reindex(columns=COLUMNS)


def _is_fixed(method: str) -> bool:
    return method in methods and getattr(methods.get(method), "KIND", "anytime") == "fixed"


def plot(summary: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attacks_ = sorted(summary.attack.unique())
    fig, axes = plt.subplots(1, len(attacks_), figsize=(6.5 * len(attacks_), 4.5), squeeze=False)
    for ax, attack in zip(axes[0], attacks_):
        s = summary[summary.attack == attack]
        searched = s[~s.method.isin(["none", "retrain"])]
        for method, m in searched.groupby("method"):
            ax.plot(m["budget"], m["removal"], marker="o", label=method)
        ax.axhline(1.0, color="black", ls="--", lw=1, label="retrain (cost 1.0)")
        ax.axhline(0.0, color="grey", ls=":", lw=1, label="none (cost 0)")
        ax.set(title=f"{attack}: best removal per budget", xlabel="budget (fraction of retraining cost)",
               ylabel="removal (0 = none, 1 = retrain)")
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(summary: pd.DataFrame) -> str:
    cols = ["attack", "method", "budget", "removal", "acc_val", "gus_z", "cost_fraction", "n_trials", "status"]
    with pd.option_context("display.width", 160, "display.max_rows", 500):
        return summary[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}")


def write(rows: pd.DataFrame, folder: Path) -> pd.DataFrame:
    """summary.csv, trials.csv (every checkpoint) and removal_vs_budget.png into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    summary = summarize(rows)
    summary.to_csv(folder / "summary.csv", index=False)
    rows.to_csv(folder / "trials.csv", index=False)
    plot(summary, folder / "removal_vs_budget.png")
    return summary


def hparams_json(hparams: dict) -> str:
    return json.dumps(hparams, sort_keys=True)
