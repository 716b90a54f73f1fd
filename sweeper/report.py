"""The report: how much poison each method removes at each fraction of retraining's cost, and is that
as good as retraining? (DESIGN §3 statistics.)

Selection, then fresh measurement: for each (attack, method, budget) the best tuning trial by
`objective` (validation split, tuning seeds) is chosen; its configuration was re-run on fresh seeds
(`phase = fresh`), and the reported `removal` is the fresh-seed mean with a Student-t 95% interval.
The tuning value stays beside it as `removal_tuning` (optimistic: the maximum over noisy trials,
measured on the data that chose it). Built from checkpoint rows alone (what MLflow holds), so
`sweeper report` can rebuild it and `sweeper compare` can set sweeps side by side."""
from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .metrics import ACCURACY_TOLERANCE, DIVERGED
from .registry import attacks, methods

REFERENCES = ("none", "retrain")
EFFECTIVE_SE = 3.0      # removal is computed only when poisoned − retrain effect exceeds 3 standard errors
EQUIVALENT_ACC = 0.02   # "equivalent to retrain" also needs test accuracy within 0.02 of retrain's
MIN_TRIALS_FOR_IMPORTANCE = 20
MEASURED = {"removal": "removal", "attack_effect": "attack/effect", "acc_val": "acc/val", "acc_test": "acc/test"}
SIMPLE = {"mia_auc": "mia/auc", "cost_units": "cost/units", "cost_fraction": "cost/fraction",
          "cost_seconds": "cost/seconds"}
COLUMNS = (["attack", "method", "budget"]
           + [c for m in MEASURED for c in (m, f"{m}_ci_low", f"{m}_ci_high", f"{m}_halfwidth", f"{m}_tuning")]
           + ["gus_z", "gus_z_tuning", "mia_auc", "objective_tuning", "cost_units", "cost_fraction",
              "cost_seconds", "n_trials", "n_fresh", "tuning_cost_retrains", "removal_pooled", "removal_pooled_ci_low",
              "removal_pooled_ci_high", "verdict_test", "equivalent_to_retrain", "verdict", "pareto",
              "status", "trial_id", "hparams"])
# Which test each verdict uses, and why (DESIGN §3). Removal per fresh seed is always paired with that seed's
# own references (trial.SeedEvaluator). "t over seeds": a Student-t 95% interval of the per-seed removals;
# the only valid choice when the effect of a seed is one number with seed-to-seed spread (success rates,
# error rates). "pooled GUS": for Gaussian poisoning every poison's score is an exact N(0, 1) draw on a
# model that never saw its noise (m_retrain := 0), so removal = 1 − m_unlearned / m_poisoned with both
# means pooled over all poisons of the fresh seeds and a delta-method 95% interval. With 3 seeds x 240
# poisons that interval is ~2x narrower than the t interval over 3 per-seed values (whose t quantile is
# 4.3); it describes these fresh seeds' poisons, not a new draw of seeds.
T_TEST, POOLED_GUS = "t over seeds", "pooled GUS"


# -- statistics ------------------------------------------------------------------------------------------
def t_interval(values) -> tuple[float, float, float]:
    """Mean and Student-t 95% interval; NaN bounds with fewer than two finite values."""
    x = np.asarray([v for v in values if isinstance(v, (int, float)) and math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    if len(x) < 2:
        return float(x.mean()), math.nan, math.nan
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def noninferior(ci_low: float, acc: float, retrain_acc: float, delta: float) -> bool:
    """DESIGN §3 "equivalent to retrain": the lower 95% bound of removal above 1 − δ and accuracy within
    EQUIVALENT_ACC of retrain's."""
    return bool(math.isfinite(ci_low) and ci_low > 1 - delta and acc >= retrain_acc - EQUIVALENT_ACC)


def verdict(ci_low: float, ci_high: float, acc: float, retrain_acc: float, delta: float) -> str:
    """DESIGN §3's three-way answer against retraining at margin δ: `equivalent` (lower 95% bound of
    removal above 1 − δ and accuracy kept), `worse` (upper bound below 1 − δ: significantly short of
    retraining, the paper's claim), else `inconclusive` (too few seeds, or too noisy, to say either)."""
    if noninferior(ci_low, acc, retrain_acc, delta):
        return "equivalent"
    if math.isfinite(ci_high) and ci_high < 1 - delta:
        return "worse"
    return "inconclusive"


def test_for(attack: str, fresh: pd.DataFrame) -> str:
    """POOLED_GUS where every poison has a GUS score and the retrain effect is exactly 0, else T_TEST."""
    exact = getattr(attacks.get(attack), "RETRAIN_EFFECT", None) if attack in attacks else None
    return POOLED_GUS if exact == 0 and "gus/sum" in fresh and fresh["gus/sum"].notna().any() else T_TEST


def pooled_removal(mine: pd.DataFrame, poisoned: pd.DataFrame) -> tuple[float, float, float]:
    """Removal 1 − m_u / m_p from GUS pooled over every poison of the fresh seeds (m = −mean score, each
    score N(0, 1) given its model, so SE(m) = 1/√N), with a delta-method 95% interval."""
    n_u, n_p = float(mine["gus/n_valid"].sum()), float(poisoned["gus/n_valid"].sum())
    if n_u == 0 or n_p == 0:
        return math.nan, math.nan, math.nan
    m_u, m_p = -float(mine["gus/sum"].sum()) / n_u, -float(poisoned["gus/sum"].sum()) / n_p
    if not m_p > 0:
        return math.nan, math.nan, math.nan
    r = 1 - m_u / m_p
    se = math.sqrt((1 / n_u) / m_p**2 + (m_u**2 / m_p**4) / n_p)
    return r, r - 1.96 * se, r + 1.96 * se


def _judge(row: dict, ctx: "_Context", mine: pd.DataFrame) -> None:
    """The row's verdict by its attack's test (see T_TEST / POOLED_GUS)."""
    row["verdict_test"] = test_for(ctx.attack, ctx.fresh)
    lo, hi = row["removal_ci_low"], row["removal_ci_high"]
    if row["verdict_test"] == POOLED_GUS:
        poisoned = ctx.fresh[(ctx.fresh.method == "none") & ctx.fresh.seed.isin(mine.seed)]
        r, lo, hi = pooled_removal(mine, poisoned)
        row.update(removal_pooled=r, removal_pooled_ci_low=lo, removal_pooled_ci_high=hi)
    row["verdict"] = verdict(lo, hi, row["acc_test"], ctx.retrain_acc, ctx.delta)


def resolution(summary: pd.DataFrame, delta: float = 0.1) -> pd.DataFrame:
    """Per attack: the smallest δ this sweep can resolve and the fresh seeds δ = `delta` would need. A
    method exactly as good as retraining is called equivalent only if its lower bound, 1 − half-width,
    exceeds 1 − δ; the half-width it would get is estimated by the retrain row's own (same test)."""
    out = []
    for attack, g in summary[summary.method == "retrain"].groupby("attack", sort=True):
        r = g.iloc[0]
        n = int(r.n_fresh) if pd.notna(r.n_fresh) else 0
        pooled = r.get("verdict_test") == POOLED_GUS
        lo, hi = (r.removal_pooled_ci_low, r.removal_pooled_ci_high) if pooled else (r.removal_ci_low, r.removal_ci_high)
        half = (hi - lo) / 2 if pd.notna(lo) and pd.notna(hi) else math.nan
        out.append({"attack": attack, "test": r.get("verdict_test") or T_TEST, "n_fresh": n,
                    "smallest_delta": half, f"fresh_seeds_for_delta_{delta:g}": _seeds_needed(half, n, pooled, delta)})
    return pd.DataFrame(out)


def _seeds_needed(half: float, n: int, pooled: bool, delta: float) -> float:
    """Fresh seeds whose half-width would fall below `delta`: 1/√n scaling (pooled poisons), or the
    t interval's (per-seed sd held at its estimate)."""
    if not math.isfinite(half) or n < 2:
        return math.nan
    if pooled:
        return float(max(2, math.ceil(n * (half / delta) ** 2)))
    sd = half * math.sqrt(n) / stats.t.ppf(0.975, n - 1)
    k = 2
    while stats.t.ppf(0.975, k - 1) * sd / math.sqrt(k) >= delta and k < 10_000:
        k += 1
    return float(k)


def pooled_z(rows: pd.DataFrame) -> float:
    if "gus/sum" not in rows or rows["gus/n_valid"].sum() == 0:
        return math.nan
    return float(rows["gus/sum"].sum() / math.sqrt(rows["gus/n_valid"].sum()))


def attack_worked(refs: pd.DataFrame, attack: str) -> bool | None:
    """DESIGN §3: m_poisoned − m_retrain above 3 standard errors, pooled over the seeds in `refs`;
    None when a reference it needs was not measured (its runs failed): then nobody can say."""
    none, retrain = refs[refs.method == "none"], refs[refs.method == "retrain"]
    if none.empty:
        return None
    exact = getattr(attacks.get(attack), "RETRAIN_EFFECT", None) if attack in attacks else None
    se2 = float((none["attack/effect_se"] ** 2).sum()) / len(none) ** 2
    if exact is None:
        if retrain.empty:
            return None
        m_retrain = float(retrain["attack/effect"].mean())
        se2 += float((retrain["attack/effect_se"] ** 2).sum()) / len(retrain) ** 2
    else:
        m_retrain = exact
    gap = float(none["attack/effect"].mean()) - m_retrain
    return math.isfinite(gap) and math.isfinite(se2) and gap > EFFECTIVE_SE * math.sqrt(se2)


# -- selection -------------------------------------------------------------------------------------------
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
    as a multiple of one retrain."""
    tune = tune[~tune.method.isin(REFERENCES)]
    if tune.empty or "cost/fraction" not in tune:
        return {}
    last = tune.sort_values("budget").groupby(["attack", "method", "trial_id"]).tail(1)
    per_trial = last["cost/fraction"].fillna(0) * last.get("n_seeds", 1)
    return per_trial.groupby([last.attack, last.method]).sum().to_dict()


# -- the summary -----------------------------------------------------------------------------------------
def plan_of(experiment: dict) -> dict:
    """What a sweep set out to measure (from its resolved experiment, `Experiment.as_dict()`): every
    (attack, method, budget) gets a row, whatever happened to its runs."""
    return {"attacks": [s["attack"] for s in experiment["scenarios"]], "methods": list(experiment["methods"]),
            "budgets": [float(b) for b in experiment["budgets"]], "fresh": bool(experiment.get("fresh_seeds"))}


def _plan_from_rows(rows: pd.DataFrame) -> dict:
    searched = rows[~rows.method.isin(REFERENCES) & (rows.phase == "tune")]
    return {"attacks": sorted(rows.attack.dropna().unique()),
            "methods": sorted(rows[~rows.method.isin(REFERENCES)].method.dropna().unique()),
            "budgets": sorted(searched.budget.dropna().unique()), "fresh": bool((rows.phase == "fresh").any())}


def _measure(row: dict, fresh: pd.DataFrame, best: pd.Series | None) -> None:
    """Fill mean / interval of each measured quantity from the fresh rows, and its tuning value from the
    chosen trial. A missing fresh measurement stays missing (NaN): a tuning value is never put in its place."""
    for name, key in MEASURED.items():
        mean, lo, hi = t_interval(fresh[key]) if not fresh.empty else (math.nan,) * 3
        tuned = best.get(key, math.nan) if best is not None else math.nan
        row.update({name: mean, f"{name}_ci_low": lo, f"{name}_ci_high": hi,
                    f"{name}_halfwidth": (hi - lo) / 2 if math.isfinite(lo) else math.nan, f"{name}_tuning": tuned})
    row["gus_z"] = pooled_z(fresh) if not fresh.empty else math.nan
    row["gus_z_tuning"] = best.get("gus/z", math.nan) if best is not None else math.nan
    for name, key in SIMPLE.items():
        row[name] = float(fresh[key].mean()) if key in fresh and not fresh.empty else math.nan
    row["n_fresh"] = int(fresh["seed"].nunique()) if "seed" in fresh and not fresh.empty else 0


def _status(row: dict, worked: bool | None, fresh_failed: bool) -> str:
    if worked is None:
        return "reference_failed"  # without none/retrain nobody can say whether the attack worked
    if not worked:
        return "attack_ineffective"
    if row.get("objective_tuning", 0) <= DIVERGED:
        return "diverged"
    if row.get("objective_tuning", 0) < -1:
        return "accuracy_violated"  # even the best trial lost more than the tolerated accuracy
    if row.get("n_fresh", 0) == 0:
        return "fresh_failed" if fresh_failed else "no_fresh"
    if not math.isfinite(row.get("removal", math.nan)):
        return "diverged"
    return "ok"


def _with_defaults(rows: pd.DataFrame) -> pd.DataFrame:
    rows = rows.copy()
    for col, default in (("attack", None), ("method", None), ("budget", math.nan), ("phase", "tune"),
                         ("seed", math.nan), ("source_trial", None), ("n_seeds", 1), ("run_status", "FINISHED"),
                         ("trial_id", None), ("hparams", "{}"), ("objective", math.nan)):
        if col not in rows:
            rows[col] = default
    return rows


def summarize(rows: pd.DataFrame, delta: float = 0.1, plan: dict | None = None) -> pd.DataFrame:
    """One row per (attack, method, budget) of `plan` (default: what the rows contain), references first.
    Methods without usable runs still get their rows, with a status saying why."""
    rows = _with_defaults(rows)
    plan = plan or _plan_from_rows(rows)
    tune, fresh = _usable(rows[rows.phase == "tune"]), _usable(rows[rows.phase == "fresh"])
    failed = rows[rows.run_status == "FAILED"]
    best = best_per_budget(tune)
    spent = tuning_cost(tune)
    out = []
    for attack in plan["attacks"]:
        f_att, t_att = fresh[fresh.attack == attack], tune[tune.attack == attack]
        refs = f_att[f_att.method.isin(REFERENCES)]
        t_refs = t_att[t_att.method.isin(REFERENCES)]
        worked = attack_worked(refs if not refs.empty else t_refs, attack)
        retrain_acc = float(refs[refs.method == "retrain"]["acc/test"].mean()) if not refs.empty else math.nan
        ctx = _Context(attack, best, f_att, rows[rows.attack == attack], failed[failed.attack == attack], worked,
                       spent, retrain_acc, delta, plan["fresh"])
        out += [_reference_row(ctx, method, t_att[t_att.method == method]) for method in REFERENCES]
        out += [_method_row(ctx, method, budget) for method in plan["methods"] for budget in plan["budgets"]]
    summary = pd.DataFrame(out, columns=COLUMNS)
    summary["pareto"] = pareto_front(summary)
    return summary.reindex(columns=COLUMNS)


@dataclass
class _Context:
    """What every row of one attack is computed against."""
    attack: str
    best: pd.DataFrame       # the chosen tuning checkpoint per (attack, method, budget)
    fresh: pd.DataFrame      # usable fresh rows of this attack
    rows: pd.DataFrame       # every row of this attack, failed ones included
    failed: pd.DataFrame     # rows of FAILED runs of this attack
    worked: bool | None      # None: the references could not be measured
    spent: dict
    retrain_acc: float
    delta: float
    fresh_expected: bool


def _reference_row(ctx: _Context, method: str, tuned: pd.DataFrame) -> dict:
    row = {"attack": ctx.attack, "method": method, "budget": 0.0 if method == "none" else 1.0,
           "n_trials": 1, "trial_id": method, "hparams": "{}",
           "objective_tuning": tuned["objective"].iloc[0] if not tuned.empty else math.nan}
    _measure(row, ctx.fresh[ctx.fresh.method == method], tuned.iloc[0] if not tuned.empty else None)
    if tuned.empty and row["n_fresh"] == 0:
        ran = (ctx.rows.method == method).any()
        row["status"] = "failed" if (ctx.failed.method == method).any() else ("not_run" if not ran else "no_fresh")
    elif ctx.worked is None:
        row["status"] = "reference_failed"
    elif ctx.fresh_expected and row["n_fresh"] == 0:
        row["status"] = "fresh_failed" if (ctx.failed.method == method).any() else "no_fresh"
    else:
        row["status"] = "ok" if ctx.worked else "attack_ineffective"
    if method == "retrain" and row["status"] == "ok":  # calibration: retraining must never read "worse"
        _judge(row, ctx, ctx.fresh[ctx.fresh.method == method])
    return row


def _method_row(ctx: _Context, method: str, budget: float) -> dict:
    row = {"attack": ctx.attack, "method": method, "budget": budget, "n_trials": 0,
           "tuning_cost_retrains": ctx.spent.get((ctx.attack, method), math.nan), "equivalent_to_retrain": False}
    best = ctx.best
    pick = best[(best.attack == ctx.attack) & (best.method == method) & (best.budget == budget)]
    if pick.empty:
        row["status"] = _why_no_pick(ctx, method)
        return row
    b = pick.iloc[0]
    f = ctx.fresh
    mine = f[(f.method == method) & (f.source_trial == b["trial_id"]) & (f.budget == budget)]
    fresh_failed = bool(((ctx.failed.method == method) & (ctx.failed.phase == "fresh")
                         & (ctx.failed.source_trial == b["trial_id"])).any())
    row.update(n_trials=int(b["n_trials"]), trial_id=b["trial_id"], hparams=b["hparams"],
               objective_tuning=b["objective"])
    _measure(row, mine, b)
    row["status"] = _status(row, ctx.worked, fresh_failed)
    if row["status"] in ("attack_ineffective", "diverged", "reference_failed"):
        row["removal"] = math.nan  # undefined, whatever a formula would print
    if row["status"] == "ok":
        _judge(row, ctx, mine)
    row["equivalent_to_retrain"] = row.get("verdict") == "equivalent"
    return row


def _why_no_pick(ctx: _Context, method: str) -> str:
    """Status of a (method, budget) without a usable tuning checkpoint."""
    mine = ctx.rows[(ctx.rows.method == method) & (ctx.rows.phase == "tune")]
    if mine.empty:
        return "not_run"        # the sweep never got to this method (interrupted, or it died)
    if (mine.run_status == "FAILED").all():
        return "failed"         # every trial raised; their errors are in the runs' `error` tags
    return "over_budget" if _is_fixed(method) else "no_trials"


def _is_fixed(method: str) -> bool:
    return method in methods and getattr(methods.get(method), "KIND", "anytime") == "fixed"


def pareto_front(summary: pd.DataFrame) -> list[bool]:
    """Non-dominated (removal up, cost down) among rows that keep accuracy (status ok), per attack."""
    flags = []
    for _, r in summary.iterrows():
        if r.get("status") != "ok" or not math.isfinite(r.get("removal", math.nan)):
            flags.append(False)
            continue
        peers = summary[(summary.attack == r.attack) & (summary.status == "ok")]
        dominated = ((peers.cost_fraction <= r.cost_fraction) & (peers.removal >= r.removal)
                     & ((peers.cost_fraction < r.cost_fraction) | (peers.removal > r.removal))).any()
        flags.append(not dominated)
    return flags


def equivalence(summary: pd.DataFrame) -> pd.DataFrame:
    """Per (attack, method): the three-way answer over its budgets, in words ("equivalent from budget b",
    "worse at every budget", "worse at b1, b2; inconclusive at b3", "inconclusive"), and the smallest
    equivalent budget (empty when there is none)."""
    out = []
    searched = summary[~summary.method.isin(REFERENCES)]
    for (attack, method), g in searched.groupby(["attack", "method"], sort=True):
        eq = g[g.verdict == "equivalent"]
        out.append({"attack": attack, "method": method, "verdict": _in_words(g),
                    "smallest_equivalent_budget": f"{eq.budget.min():g}" if not eq.empty else "",
                    "best_removal": g.removal.max(), "tuning_cost_retrains": g.tuning_cost_retrains.iloc[0]})
    return pd.DataFrame(out)


def _in_words(g: pd.DataFrame) -> str:
    judged = g[g.verdict.isin(["equivalent", "worse", "inconclusive"])]
    if judged.empty:
        return "no verdict (" + ", ".join(sorted(set(g.status.dropna()))) + ")"
    eq = judged[judged.verdict == "equivalent"]
    if not eq.empty:
        return f"equivalent from budget {eq.budget.min():g}"
    worse = judged[judged.verdict == "worse"]
    if len(worse) == len(judged):
        return "worse at every budget" if len(judged) == len(g) else \
            f"worse at every judged budget ({', '.join(f'{b:g}' for b in worse.budget)})"
    if worse.empty:
        return "inconclusive"
    rest = judged[judged.verdict == "inconclusive"]
    return (f"worse at {', '.join(f'{b:g}' for b in worse.budget)}; "
            f"inconclusive at {', '.join(f'{b:g}' for b in rest.budget)}")


# -- hyperparameter importance ---------------------------------------------------------------------------
def importance(tune: pd.DataFrame, space_of) -> pd.DataFrame:
    """Per method, Optuna's parameter importances over its tuning trials' final objectives; below
    MIN_TRIALS_FOR_IMPORTANCE trials it says so instead of printing noise."""
    from . import spaces

    out = []
    searched = _usable(tune[~tune.method.isin(REFERENCES)])
    for (attack, method), g in searched.groupby(["attack", "method"], sort=True):
        final = g.sort_values("budget").groupby("trial_id").tail(1)
        if len(final) < MIN_TRIALS_FOR_IMPORTANCE:
            out.append({"attack": attack, "method": method, "parameter": "-",
                        "importance": f"too few trials ({len(final)} < {MIN_TRIALS_FOR_IMPORTANCE})"})
            continue
        trials = [(json.loads(h), v) for h, v in zip(final.hparams, final.objective)]
        try:
            scores = spaces.importances(space_of(method), trials)
        except Exception as e:  # a space edited since the sweep ran, a constant objective, ...
            scores = {"-": f"not computed ({type(e).__name__})"}
        out += [{"attack": attack, "method": method, "parameter": k,
                 "importance": round(v, 3) if isinstance(v, float) else v} for k, v in scores.items()]
    return pd.DataFrame(out, columns=["attack", "method", "parameter", "importance"])


# -- output ----------------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_removal(summary: pd.DataFrame, path: Path) -> None:
    plt = _plt()
    attacks_ = sorted(summary.attack.unique())
    fig, axes = plt.subplots(1, len(attacks_), figsize=(7 * len(attacks_), 4.8), squeeze=False)
    for ax, attack in zip(axes[0], attacks_):
        s = summary[summary.attack == attack]
        ax.set_prop_cycle(color=plt.get_cmap("tab20").colors)  # 13+ methods: distinct colours
        for method, m in s[~s.method.isin(REFERENCES)].groupby("method"):
            lo = (m.removal - m.removal_ci_low).fillna(0).clip(lower=0)
            hi = (m.removal_ci_high - m.removal).fillna(0).clip(lower=0)
            ax.errorbar(m.budget, m.removal, yerr=[lo, hi], marker="o", ms=3, capsize=2, label=method)
        ax.axhline(1.0, color="black", ls="--", lw=1, label="retrain (cost 1.0)")
        ax.axhline(0.0, color="grey", ls=":", lw=1, label="none (cost 0)")
        ax.set(title=f"{attack}: removal of the chosen configuration, fresh seeds (95% CI)",
               xlabel="budget (fraction of retraining cost)", ylabel="removal (0 = none, 1 = retrain)")
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_pareto(summary: pd.DataFrame, path: Path) -> None:
    plt = _plt()
    attacks_ = sorted(summary.attack.unique())
    fig, axes = plt.subplots(1, len(attacks_), figsize=(7 * len(attacks_), 4.8), squeeze=False)
    for ax, attack in zip(axes[0], attacks_):
        s = summary[(summary.attack == attack) & ~summary.method.isin(REFERENCES)]
        ok = s[s.status == "ok"]
        sc = ax.scatter(ok.cost_fraction, ok.removal, c=ok.acc_test, cmap="viridis", s=25, label="accuracy kept")
        bad = s[s.status == "accuracy_violated"]
        ax.scatter(bad.cost_fraction, bad.removal, marker="x", color="red", s=20, label="accuracy violated")
        front = ok[ok.pareto.fillna(False).astype(bool)].sort_values("cost_fraction")
        ax.plot(front.cost_fraction, front.removal, color="black", lw=1, marker="o", mfc="none", ms=9,
                label="non-dominated")
        for _, r in front.iterrows():
            ax.annotate(r.method, (r.cost_fraction, r.removal), fontsize=7, xytext=(4, 4), textcoords="offset points")
        ax.scatter([0, 1], [0, 1], marker="*", s=120, color=["grey", "black"])
        ax.annotate("none", (0, 0), fontsize=8, xytext=(4, -10), textcoords="offset points")
        ax.annotate("retrain", (1, 1), fontsize=8, xytext=(-40, -12), textcoords="offset points")
        ax.set_xscale("symlog", linthresh=0.01)
        ax.set(xlim=(0, 1.2), title=f"{attack}: removal vs cost",
               xlabel="cost (fraction of retraining)", ylabel="removal (fresh seeds)")
        fig.colorbar(sc, ax=ax, label="test accuracy")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _with_halfwidth(s: pd.DataFrame) -> list[str]:
    return [("-" if not math.isfinite(r) else f"{r:.3f} ± {h:.3f}" if math.isfinite(h) else f"{r:.3f}")
            for r, h in zip(s.removal.astype(float), s.removal_halfwidth.astype(float))]


def table(summary: pd.DataFrame) -> str:
    s = summary.copy()
    s["removal ± 95%"] = _with_halfwidth(s)
    cols = ["attack", "method", "budget", "removal ± 95%", "removal_tuning", "acc_test", "gus_z",
            "cost_fraction", "n_trials", "verdict", "status"]
    with pd.option_context("display.width", 200, "display.max_rows", 1000):
        return s[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}")


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" style="max-width:100%">'


def _resolution_text(res: pd.DataFrame, delta: float) -> str:
    parts = []
    for r in res.itertuples():
        need = res.loc[r.Index, f"fresh_seeds_for_delta_{delta:g}"]
        if math.isfinite(r.smallest_delta):
            parts.append(f"{html.escape(r.attack)} ({r.test}, {r.n_fresh} fresh seeds): the smallest resolvable δ is "
                         f"{r.smallest_delta:.2f}; δ = {delta:g} needs about {need:.0f} fresh seeds")
        else:
            parts.append(f"{html.escape(r.attack)}: cannot be estimated (the retrain row has no interval)")
    return "; ".join(parts) or "no retrain row"


def html_page(summary: pd.DataFrame, eq: pd.DataFrame, imp: pd.DataFrame, folder: Path, delta: float,
              title: str) -> str:
    fmt = {"float_format": lambda v: f"{v:.3f}", "index": False, "border": 0, "na_rep": "-"}
    compact = summary.copy()
    compact["removal ± 95%"] = _with_halfwidth(compact)
    cols = ["attack", "method", "budget", "removal ± 95%", "removal_pooled", "removal_tuning", "acc_test",
            "acc_test_tuning", "gus_z", "cost_fraction", "tuning_cost_retrains", "n_trials", "n_fresh", "verdict",
            "verdict_test", "pareto", "status", "hparams"]
    for c in ("n_trials", "n_fresh"):
        compact[c] = compact[c].astype("Int64")
    n_fresh = int(summary.n_fresh.max()) if summary.n_fresh.notna().any() else 0
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}} table{{border-collapse:collapse;font-size:12px}}
td,th{{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}} th{{background:#f4f4f4}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p><b>Resolution.</b> {_resolution_text(resolution(summary, delta), delta)}. A method exactly as good as retraining
reads <i>equivalent</i> only when δ exceeds the half-width its interval gets (estimated from the retrain row's).</p>
<p>Removal: 0 = nothing removed, 1 = as good as retraining. For each (attack, method, budget) the best tuning
configuration (by objective on the validation split and tuning seeds) was re-run on fresh seeds; removal is their mean
with a Student-t 95% interval (half-width shown), <code>removal_tuning</code> the optimistic tuning value.
<b>Verdict</b> against retraining at margin δ = {delta:g}: <i>equivalent</i> = lower 95% bound of removal &gt; 1 − δ and
test accuracy within {EQUIVALENT_ACC} of retrain's; <i>worse</i> = upper 95% bound &lt; 1 − δ (significantly short of
retraining); <i>inconclusive</i> = neither (too few or too noisy seeds to tell). The <code>retrain</code> row goes through the
same test as a calibration check: it must never read <i>worse</i>. Accuracy constraint of the objective: validation accuracy within
{ACCURACY_TOLERANCE} of retrain's. Costs in fractions of one retraining; <code>tuning_cost_retrains</code> counts
every unit the method's search spent.</p>
<h2>Removal vs budget</h2>{_img(folder / "removal_vs_budget.png")}
<h2>Verdict per method</h2>{eq.to_html(**fmt)}
<h2>Pareto view</h2>{_img(folder / "pareto.png")}
<h2>Summary</h2><p>One row per (attack, method, budget); every column, intervals included, is in
<code>summary.csv</code>. Fresh seeds per configuration: {n_fresh}.</p>{compact[cols].to_html(**fmt)}
<h2>Hyperparameter importance</h2>{imp.to_html(**fmt)}
</body></html>"""


def write(rows: pd.DataFrame, folder: Path, delta: float = 0.1, space_of=None, title: str = "sweeper report",
          plan: dict | None = None, partial: str | None = None) -> pd.DataFrame:
    """summary.csv, equivalence.csv, importance.csv, trials.csv, two PNGs and report.html into `folder`.
    `partial`: why the sweep is incomplete (interrupted, died, ...); said in the title and in PARTIAL.txt."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = _with_defaults(rows)
    summary = summarize(rows, delta, plan)
    if partial:
        title = f"{title} (PARTIAL: {partial})"
    (folder / "PARTIAL.txt").unlink(missing_ok=True)
    eq = equivalence(summary)
    tune = rows[rows.phase == "tune"]
    imp = importance(tune, space_of) if space_of else pd.DataFrame(columns=["attack", "method", "parameter", "importance"])
    summary.to_csv(folder / "summary.csv", index=False)
    eq.to_csv(folder / "equivalence.csv", index=False)
    resolution(summary, delta).to_csv(folder / "resolution.csv", index=False)
    imp.to_csv(folder / "importance.csv", index=False)
    rows.to_csv(folder / "trials.csv", index=False)
    plot_removal(summary, folder / "removal_vs_budget.png")
    plot_pareto(summary, folder / "pareto.png")
    (folder / "report.html").write_text(html_page(summary, eq, imp, folder, delta, title))
    if partial:
        (folder / "PARTIAL.txt").write_text(f"This sweep is incomplete: {partial}. Rows of methods it never reached "
                                            "say not_run; rows without fresh-seed measurements say no_fresh.\n")
    return summary


def hparams_json(hparams: dict) -> str:
    return json.dumps(hparams, sort_keys=True)
