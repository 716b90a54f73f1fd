"""The summary: one row per (attack, discovery level, method, budget) of what a sweep set out to measure, with
its chosen configuration's fresh-seed removal, interval, verdict and status; plus the per-method equivalence
answer, the Pareto front and hyperparameter importance (docs/architecture.md, Statistics and verdicts).

Below discovery level 1 a row is judged twice: against the gold `retrain` (how much of the poison is gone:
`removal`, `verdict`) and against `retrain_identified` (as good as retraining with what the unlearner was
told: `removal_identified`, `verdict_identified`, the comparison of like with like), each gated by its own
reference gap; Gaussian rows split GUS over identified and unidentified poisons (docs/architecture.md,
Discovery)."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pandas as pd

from ..metrics import DIVERGED
from ..registry import methods
from .overview import pareto_front
from .selection import GOLD, IDENTIFIED, REFERENCES, SCRATCH, _usable, best_per_budget, tuning_cost
from .contrast import EQUIVALENT, INCONCLUSIVE, WORSE
from .judge import BETTER, NOT_BETTER, Judged, judge, kept, seed_table
from .stats import EQUIVALENT_ACC, POOLED_GUS, SEED_CONTRAST, attack_worked, pooled_removal, pooled_z, t_interval, test_for

MEASURED = {"removal": "removal", "attack_effect": "attack/effect", "acc_val": "acc/val", "acc_test": "acc/test"}
TUNED = ("removal", "attack_effect", "acc_val")  # also reported as measured by the chosen tuning trial (no
# acc_test_tuning: tuning trials measure no test accuracy, which nothing they decide reads)
SIMPLE = {"mia_auc": "mia/auc", "cost_units": "cost/units", "cost_fraction": "cost/fraction",
          "cost_seconds": "cost/seconds"}
SCRATCH_COLUMNS = ["vs_scratch", "removal_vs_scratch", "removal_vs_scratch_ci_low", "removal_vs_scratch_ci_high",
                   "vs_scratch_look", "vs_scratch_open", "status_scratch"]
IDENTIFIED_COLUMNS = ["removal_identified", "removal_identified_ci_low", "removal_identified_ci_high",
                      "verdict_identified", "status_identified", "gus_z_identified", "gus_z_unidentified"]
COLUMNS = (["attack", "discovery", "method", "budget"]
           + [c for m in MEASURED for c in (m, f"{m}_ci_low", f"{m}_ci_high", f"{m}_halfwidth")
              + ((f"{m}_tuning",) if m in TUNED else ())]
           + ["gus_z", "gus_z_tuning", "mia_auc", "objective_tuning", "cost_units", "cost_fraction",
              "cost_seconds", "n_trials", "n_fresh", "tuning_cost_retrains", "removal_pooled", "removal_pooled_ci_low",
              "removal_pooled_ci_high", "removal_tau", "verdict_test", "equivalent_to_retrain", "verdict",
              "verdict_look", "verdict_open", "verdict_seeds_needed", "pareto", "status", "trial_id", "hparams"]
           + SCRATCH_COLUMNS + ["retrain_epochs_to_quality", "retrain_epochs"] + IDENTIFIED_COLUMNS)


def relapse_columns(lengths) -> list[str]:
    """The summary's columns of each relapse length L: removal after relapse (`removal_relapseL`, its interval),
    its verdict and status, the mean effect after relapse and ‖Δθ‖ of the relapse."""
    out = []
    for length in lengths:
        key = f"relapse{length:g}"
        out += [f"removal_{key}", f"removal_{key}_ci_low", f"removal_{key}_ci_high", f"verdict_{key}",
                f"status_{key}", f"attack_effect_{key}", f"dtheta_{key}"]
    return out


_RELAPSED = re.compile(r"relapse([0-9.eE+-]+)/attack/effect")  # not relapseL/identified/attack/effect


def _lengths(rows: pd.DataFrame) -> list[float]:
    """The relapse lengths the rows were measured at (their `relapseL/attack/effect` columns)."""
    found = {m.group(1) for c in rows.columns if (m := _RELAPSED.fullmatch(str(c)))}
    return sorted(float(x) for x in found)


def plan_of(experiment: dict) -> dict:
    """What a sweep set out to measure (from its resolved experiment, `Experiment.as_dict()`): every
    (attack, method, budget) gets a row, whatever happened to its runs."""
    fresh = [int(s) for s in experiment.get("fresh_seeds") or []]
    return {"attacks": [s["attack"] for s in experiment["scenarios"]], "methods": list(experiment["methods"]),
            "discovery": [float(d) for d in experiment.get("discovery") or [1.0]],
            "relapse": [float(x) for x in (experiment.get("relapse") or {}).get("lengths", [])],
            "budgets": [float(b) for b in experiment["budgets"]], "fresh": bool(fresh), "fresh_seeds": fresh,
            # sweeps written before fresh_rounds existed looked once, at every fresh seed
            "looks": [int(n) for n in experiment.get("fresh_rounds") or ([len(fresh)] if fresh else [])]}


def _plan_from_rows(rows: pd.DataFrame) -> dict:
    searched = rows[~rows.method.isin(REFERENCES) & (rows.phase == "tune")]
    fresh = sorted(int(s) for s in rows[rows.phase == "fresh"].seed.dropna().unique())
    return {"attacks": sorted(rows.attack.dropna().unique()),
            "methods": sorted(rows[~rows.method.isin(REFERENCES)].method.dropna().unique()),
            "discovery": sorted(rows.discovery.dropna().unique(), reverse=True), "relapse": _lengths(rows),
            "budgets": sorted(searched.budget.dropna().unique()), "fresh": bool(fresh), "fresh_seeds": fresh,
            "looks": [len(fresh)] if fresh else []}


def _measure(row: dict, fresh: pd.DataFrame, best: pd.Series | None) -> None:
    """Fill mean / interval of each measured quantity from the fresh rows, and its tuning value from the
    chosen trial. A missing fresh measurement stays missing (NaN): a tuning value is never put in its place."""
    for name, key in MEASURED.items():
        mean, lo, hi = t_interval(fresh[key]) if not fresh.empty else (math.nan,) * 3
        tuned = best.get(key, math.nan) if best is not None else math.nan
        row.update({name: mean, f"{name}_ci_low": lo, f"{name}_ci_high": hi,
                    f"{name}_halfwidth": (hi - lo) / 2 if math.isfinite(lo) else math.nan})
        if name in TUNED:
            row[f"{name}_tuning"] = tuned
    row["gus_z"] = pooled_z(fresh) if not fresh.empty else math.nan
    row["gus_z_tuning"] = best.get("gus/z", math.nan) if best is not None else math.nan
    for name, key in SIMPLE.items():
        row[name] = float(fresh[key].mean()) if key in fresh and not fresh.empty else math.nan
    row["n_fresh"] = int(fresh["seed"].nunique()) if "seed" in fresh and not fresh.empty else 0


def _status(row: dict, worked: bool | None, fresh_failed: bool) -> str:
    """Why a searched row has, or has no, removal; the first reason that applies wins."""
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
    """Rows with every column the summary reads (older or partial rows may lack some)."""
    rows = rows.copy()
    for col, default in (("attack", None), ("method", None), ("budget", math.nan), ("phase", "tune"),
                         ("seed", math.nan), ("source_trial", None), ("n_seeds", 1), ("run_status", "FINISHED"),
                         ("trial_id", None), ("hparams", "{}"), ("objective", math.nan), ("discovery", 1.0)):
        if col not in rows:
            rows[col] = default
    # rows without a level: every poison identified; rounded, as rows pooled over seeds by older code drifted
    rows["discovery"] = rows.discovery.fillna(1.0).astype(float).round(9)
    return rows


def summarize(rows: pd.DataFrame, delta: float = 0.1, plan: dict | None = None) -> pd.DataFrame:
    """One row per (attack, discovery level, method, budget) of `plan` (default: what the rows contain),
    references first. Methods without usable runs still get their rows, with a status saying why."""
    rows = _with_defaults(rows)
    plan = {**_plan_from_rows(rows), **(plan or {})}
    if not plan.get("fresh_seeds"):  # a plan from before the looks: the seeds in the rows, one look
        plan.update(fresh_seeds=_plan_from_rows(rows)["fresh_seeds"], looks=_plan_from_rows(rows)["looks"])
    levels = plan.get("discovery") or [1.0]
    parts = [_level(rows[(rows.discovery == d) | rows.method.isin(GOLD)], delta, plan, float(d)) for d in levels]
    return pd.concat(parts, ignore_index=True).reindex(columns=COLUMNS + relapse_columns(plan.get("relapse") or []))


def _level(rows: pd.DataFrame, delta: float, plan: dict, level: float) -> pd.DataFrame:
    """The summary of one discovery level (its rows, and the shared none and retrain)."""
    tune, fresh = _usable(rows[rows.phase == "tune"]), _usable(rows[rows.phase == "fresh"])
    best, spent = best_per_budget(tune), tuning_cost(tune)
    looks = Looks(plan["fresh_seeds"], plan["looks"][:plan.get("looks_done", len(plan["looks"]))], len(plan["looks"]))
    out = []
    for attack in plan["attacks"]:
        t_att = tune[tune.attack == attack]
        ctx = _context(attack, rows, t_att, fresh[fresh.attack == attack], best, spent, delta, plan["fresh"], looks,
                       level, tuple(plan.get("relapse") or ()))
        refs = REFERENCES if level < 1 else GOLD
        out += [_reference_row(ctx, method, t_att[t_att.method == method]) for method in refs]
        out += [_method_row(ctx, method, budget) for method in plan["methods"] for budget in plan["budgets"]]
    summary = pd.DataFrame(out).reindex(columns=COLUMNS + relapse_columns(plan.get("relapse") or []))
    summary["discovery"] = level
    for col in ("verdict_open", "vs_scratch_open"):
        summary[col] = summary[col].astype("boolean").fillna(False).astype(bool)
    summary["pareto"] = pareto_front(summary)
    return summary


@dataclass(frozen=True)
class Looks:
    """The fresh phase's looks: the fresh seeds in the order looks take them, the cumulative counts of the
    looks evaluated (mid-sweep: those done so far), and how many were planned (which sets each look's level)."""
    order: list
    counts: list
    planned: int


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
    delta: float
    fresh_expected: bool
    looks: Looks
    level: float = 1.0       # the discovery level
    relapse: tuple = ()      # relapse lengths measured on the fresh runs


def _context(attack: str, rows: pd.DataFrame, t_att: pd.DataFrame, f_att: pd.DataFrame, best: pd.DataFrame,
             spent: dict, delta: float, fresh_expected: bool, looks: Looks, level: float = 1.0,
             relapse: tuple = ()) -> _Context:
    """Whether the attack worked: from the fresh references, else (no fresh phase yet) from the tuning ones.
    (Retraining's accuracy is compared per look, on the seeds of that look: report.judge.)"""
    refs = f_att[f_att.method.isin(REFERENCES)]
    t_refs = t_att[t_att.method.isin(REFERENCES)]
    worked = attack_worked(refs if not refs.empty else t_refs, attack)
    mine = rows[rows.attack == attack]
    return _Context(attack, best, f_att, mine, mine[mine.run_status == "FAILED"], worked, spent, delta,
                    fresh_expected, looks, level, relapse)


def _reference_row(ctx: _Context, method: str, tuned: pd.DataFrame) -> dict:
    """The row of `none` (budget 0) or `retrain` (budget 1): measured like a method's, never searched."""
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
    if method == IDENTIFIED:  # GUS over the poisons it was trained without and over those it saw
        row.update({f"gus_z_{part}": pooled_z(ctx.fresh[ctx.fresh.method == method], prefix=f"{part}/")
                    for part in ("identified", "unidentified")})
    for length in ctx.relapse:  # the controls after the same relapse
        _describe_relapse(row, ctx.fresh[ctx.fresh.method == method], length)
    if method == "retrain" and row["status"] == "ok":  # calibration: retraining must never read "worse"
        _judge(row, ctx, ctx.fresh[ctx.fresh.method == method], tuned.iloc[0] if not tuned.empty else None)
    if method == "retrain":
        _slack(row, ctx.fresh[ctx.fresh.method == method])
    return row


def _slack(row: dict, runs: pd.DataFrame) -> None:
    """How much of C_retrain is slack: the epochs θ_retrain's own training took to come within EQUIVALENT_ACC of
    its final validation accuracy (mean over the fresh seeds; retrain runs of older sweeps lack it)."""
    for col, key in (("retrain_epochs_to_quality", "retrain/epochs_to_quality"), ("retrain_epochs", "retrain/epochs")):
        if key in runs and runs[key].notna().any():
            row[col] = float(runs[key].mean())


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
    elif row["n_fresh"] > 0:
        _judge(row, ctx, mine, b)
    row["equivalent_to_retrain"] = row.get("verdict") == "equivalent"
    if ctx.level < 1 and row["n_fresh"] > 0 and row["status"] not in ("attack_ineffective", "reference_failed"):
        _judge_identified(row, ctx, mine)
    if row["n_fresh"] > 0:
        for length in ctx.relapse:
            _judge_relapse(row, ctx, mine, length)
    if method != SCRATCH and row["n_fresh"] > 0 and row["status"] == "ok":
        _judge_scratch(row, ctx, mine, budget)
    return row


def _judge_scratch(row: dict, ctx: _Context, mine: pd.DataFrame, budget: float) -> None:
    """The row against retraining from scratch for the same budget (`scratch`'s chosen configuration at this
    budget, on the same fresh seeds): the main verdict's test with the scratch model in retrain's place.

    Trained on the retain set only, the scratch model at full discovery never saw a poison, so it removes
    the poison as retraining does (for Gaussian poisoning its effect is known exactly: 0, as retrain's); what
    a short retrain gives up is accuracy. So *better* = as clean as scratch (removal_vs_scratch's lower bound
    above 1 − δ) and test accuracy more than EQUIVALENT_ACC above scratch's; *not better* = significantly less
    clean (upper bound below 1 − δ), or as clean without that accuracy gain; *inconclusive* = the removal test
    has not decided. removal_vs_scratch = 1 − mean(m_u − m_s) / mean(m_p − m_s): the share of the gap between
    θ_poisoned and the scratch model that the method closes (1: as much as scratch). Gated by that gap."""
    pick = ctx.best[(ctx.best.attack == ctx.attack) & (ctx.best.method == SCRATCH) & (ctx.best.budget == budget)]
    if pick.empty:
        return  # no scratch in this sweep (or none at this budget): nothing to compare with
    f = ctx.fresh
    theirs = f[(f.method == SCRATCH) & (f.source_trial == pick.iloc[0]["trial_id"]) & (f.budget == budget)]
    if theirs.empty:
        row["status_scratch"] = "no_fresh"
        return
    refs = pd.concat([f[f.method == "none"], theirs.assign(method="retrain")])
    exact = ctx.level >= 1  # below full discovery the scratch model saw the unidentified poisons: measured
    j = _against(row, ctx, mine, refs, exact, "status_scratch", "scratch_gap_small", _more_accurate)
    if j is None:
        return
    row.update(removal_vs_scratch=j.removal, removal_vs_scratch_ci_low=j.ci_low, removal_vs_scratch_ci_high=j.ci_high,
               vs_scratch_look=j.look, vs_scratch_open=j.open, status_scratch="ok")
    if j.verdict == EQUIVALENT:
        row["vs_scratch"] = BETTER
    elif j.verdict == WORSE or (j.verdict == INCONCLUSIVE and not j.open):  # less clean; or clean, not more accurate
        row["vs_scratch"] = NOT_BETTER
    elif j.verdict == INCONCLUSIVE:
        row["vs_scratch"] = INCONCLUSIVE


def _more_accurate(acc_u: float, acc_s: float) -> bool:
    return acc_u > acc_s + EQUIVALENT_ACC


def _relapsed(frame: pd.DataFrame, length: float) -> pd.DataFrame | None:
    """`frame` with its effects and accuracies after the relapse of `length` in place of the plain ones."""
    prefix = f"relapse{length:g}/"
    cols = {c: c[len(prefix):] for c in frame.columns if c.startswith(prefix)}
    if f"{prefix}attack/effect" not in cols:
        return None
    return frame.drop(columns=[v for v in cols.values() if v in frame]).rename(columns=cols)


def _describe_relapse(row: dict, mine: pd.DataFrame, length: float) -> None:
    after = _relapsed(mine, length)
    if after is not None and not after.empty:
        row[f"attack_effect_relapse{length:g}"] = float(after["attack/effect"].mean())
        row[f"dtheta_relapse{length:g}"] = float(after["dtheta"].mean())


def _judge_relapse(row: dict, ctx: _Context, mine: pd.DataFrame, length: float) -> None:
    """Removal after the relapse of `length`: every effect after the same relapse, (m_p^R − m_u^R) /
    (m_p^R − m_r^R), with the main verdict's statistics, gated by the relapsed controls' own gap (clean
    fine-tuning erodes θ_poisoned's effect too)."""
    _describe_relapse(row, mine, length)
    fresh, after = _relapsed(ctx.fresh[ctx.fresh.method.isin(GOLD)], length), _relapsed(mine, length)
    key = f"relapse{length:g}"
    if fresh is None or after is None:
        row[f"status_{key}"] = "no_fresh"
        return
    worked = attack_worked(fresh, ctx.attack)
    if not worked:
        row[f"status_{key}"] = "reference_failed" if worked is None else "relapse_gap_small"
        return
    table = seed_table(ctx.attack, after, fresh, ctx.looks.order)
    if table.empty:
        row[f"status_{key}"] = "no_fresh"
        return
    j = judge(table, ctx.looks.order, ctx.looks.counts, ctx.looks.planned, ctx.delta)
    row.update({f"removal_{key}": j.removal, f"removal_{key}_ci_low": j.ci_low, f"removal_{key}_ci_high": j.ci_high,
                f"status_{key}": row["status"]})
    if row["status"] == "ok":
        row[f"verdict_{key}"] = j.verdict if j.verdict else math.nan


def _judge_identified(row: dict, ctx: _Context, mine: pd.DataFrame) -> None:
    """Below level 1: the row judged against retrain_identified instead of retrain (its effect measured, never
    taken as known: it saw the unidentified poisons), gated by its own reference gap; and GUS over the
    identified and the unidentified poisons apart."""
    for part in ("identified", "unidentified"):
        row[f"gus_z_{part}"] = pooled_z(mine, prefix=f"{part}/")
    fresh = ctx.fresh[ctx.fresh.method != "retrain"].replace({"method": {IDENTIFIED: "retrain"}})
    j = _against(row, ctx, mine, fresh, False, "status_identified", "identified_gap_small")
    if j is None:
        return
    row.update(removal_identified=j.removal, removal_identified_ci_low=j.ci_low, removal_identified_ci_high=j.ci_high,
               status_identified=row["status"])
    if row["status"] == "ok":
        row["verdict_identified"] = j.verdict if j.verdict else math.nan


def _against(row: dict, ctx: _Context, mine: pd.DataFrame, refs: pd.DataFrame, exact: bool, key: str, small: str,
             accuracy=kept) -> Judged | None:
    """The main verdict's test of the row's runs `mine` against another reference (the `retrain` rows of `refs`:
    retrain_identified, scratch), gated by that reference's gap to `none`; None with row[key] saying why (`small`:
    the gap is too small) when it cannot be judged. `exact`: the attack's exact retrain effect stands in for the
    reference's measured one (stats.attack_worked)."""
    worked = attack_worked(refs[refs.method.isin(GOLD)], ctx.attack, exact_retrain=exact)
    if not worked:
        row[key] = "reference_failed" if worked is None else small
        return None
    table = seed_table(ctx.attack, mine, refs, ctx.looks.order, exact_retrain=exact)
    if table.empty:
        row[key] = "no_fresh"
        return None
    return judge(table, ctx.looks.order, ctx.looks.counts, ctx.looks.planned, ctx.delta, accuracy=accuracy)


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


def _judge(row: dict, ctx: _Context, mine: pd.DataFrame, best: pd.Series | None) -> None:
    """Removal, its interval and (status ok) the verdict from the seed contrast over the looks (report.judge);
    every fresh column of the row is then measured on the seeds the verdict used. The pooled-GUS removal of
    Gaussian poisoning stays as a description of these seeds' poisons (`removal_pooled*`)."""
    table = seed_table(ctx.attack, mine, ctx.fresh, ctx.looks.order)
    if table.empty:
        return
    j = judge(table, ctx.looks.order, ctx.looks.counts, ctx.looks.planned, ctx.delta)
    used = mine[mine.seed.isin(j.seeds)] if j.seeds else mine
    _measure(row, used, best)
    row.update(removal=j.removal, removal_ci_low=j.ci_low, removal_ci_high=j.ci_high, removal_tau=j.tau,
               removal_halfwidth=(j.ci_high - j.ci_low) / 2 if math.isfinite(j.ci_high - j.ci_low) else math.nan,
               verdict_test=SEED_CONTRAST)
    if test_for(ctx.attack, ctx.fresh) == POOLED_GUS:
        poisoned = ctx.fresh[(ctx.fresh.method == "none") & ctx.fresh.seed.isin(used.seed)]
        r, lo, hi = pooled_removal(used, poisoned)
        row.update(removal_pooled=r, removal_pooled_ci_low=lo, removal_pooled_ci_high=hi)
    if row["status"] == "ok":
        row.update(verdict=j.verdict if j.verdict else math.nan, verdict_look=j.look, verdict_open=j.open,
                   verdict_seeds_needed=j.seeds_needed)
