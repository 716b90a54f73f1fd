"""The report's files: plots, the console table, report.html, and `write`, which puts every file of a
report into its folder (summary.csv, equivalence.csv, resolution.csv, importance.csv, trials.csv, two PNGs,
report.html, PARTIAL.txt). The only part of the report that imports matplotlib (on first plot)."""
from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import pandas as pd

from ..metrics import ACCURACY_TOLERANCE
from .stats import EQUIVALENT_ACC, resolution
from .overview import equivalence, importance
from .selection import REFERENCES, SCRATCH
from .summary import _with_defaults, summarize


def _plt():
    """matplotlib on first plot only, headless (Agg): a sweep on a machine without a display still plots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _levels(summary: pd.DataFrame) -> list[float]:
    """The discovery levels of a summary, highest first (a summary written before discovery has one: 1)."""
    return sorted(summary.discovery.dropna().unique(), reverse=True) if "discovery" in summary else [1.0]


def _top_level(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows of the highest discovery level (every poison identified, in a sweep that has that level):
    what the budget and Pareto plots draw; plot_discovery draws the levels."""
    return summary[summary.discovery == _levels(summary)[0]] if "discovery" in summary else summary


def _per_attack(summary: pd.DataFrame, path: Path, draw) -> None:
    """One panel per attack, `draw(ax, rows of that attack)` in each (13+ methods: distinct colours), saved."""
    plt = _plt()
    attacks_ = sorted(summary.attack.unique())
    fig, axes = plt.subplots(1, len(attacks_), figsize=(7 * len(attacks_), 4.8), squeeze=False)
    for ax, attack in zip(axes[0], attacks_):
        ax.set_prop_cycle(color=plt.get_cmap("tab20").colors)
        draw(ax, attack, summary[summary.attack == attack])
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _with_errors(ax, x, m: pd.DataFrame, label: str, **style):
    """Removal with the verdict's interval; an unbounded side is drawn to the edge of the plot."""
    lo = (m.removal - m.removal_ci_low).fillna(0).clip(lower=0, upper=3)
    hi = (m.removal_ci_high - m.removal).fillna(0).clip(lower=0, upper=3)
    return ax.errorbar(x, m.removal, yerr=[lo, hi], label=label, **{"marker": "o", "ms": 3, "capsize": 2, **style})


def plot_discovery(summary: pd.DataFrame, path: Path) -> None:
    """Per attack: each method's removal at its largest budget against the discovery level, against the gold
    retrain (solid, with the verdict's interval) and against retrain_identified (dashed); retrain_identified's
    own removal (against the gold) in black: how far retraining with what the unlearner knows gets."""
    def draw(ax, attack, s):
        searched = s[~s.method.isin(REFERENCES)]
        top = searched[searched.budget == searched.budget.max()].sort_values("discovery")
        for method, m in top.groupby("method"):
            line = _with_errors(ax, m.discovery, m, method)
            ax.plot(m.discovery, m.removal_identified, ls="--", lw=1, color=line[0].get_color())
        ident = s[s.method == "retrain_identified"].sort_values("discovery")
        x, y = list(ident.discovery), list(ident.removal)
        if 1.0 in set(s.discovery):  # at level 1 retrain_identified is retrain: removal 1 by definition
            x, y = x + [1.0], y + [1.0]
        ax.plot(x, y, color="black", marker="s", ms=4, label="retrain_identified")
        ax.axhline(1.0, color="black", ls=":", lw=1, label="retrain (gold)")
        ax.set(title=f"{attack}: removal at budget {top.budget.max():g} (dashed: vs retrain_identified)",
               xlabel="fraction of the poisons identified", ylabel="removal (0 = none, 1 = retrain)")
    _per_attack(summary, path, draw)


def relapse_lengths(summary: pd.DataFrame) -> list[float]:
    """The relapse lengths a summary holds (its `removal_relapseL` columns)."""
    return sorted(float(c[len("removal_relapse"):]) for c in summary.columns
                  if c.startswith("removal_relapse") and not c.endswith(("_ci_low", "_ci_high")))


def plot_relapse(summary: pd.DataFrame, path: Path) -> None:
    """Per attack (highest discovery level): each method's removal before (solid) and after the longest
    relapse (dashed) against budget; both controls after the same relapse, θ_retrain at 1 and θ_poisoned at 0
    by the normalisation, with their effects before → after in the title."""
    key = f"relapse{relapse_lengths(summary)[-1]:g}"

    def draw(ax, attack, s):
        for method, m in s[~s.method.isin(REFERENCES)].groupby("method"):
            line = ax.plot(m.budget, m.removal, marker="o", ms=3, label=method)
            ax.plot(m.budget, m[f"removal_{key}"], ls="--", marker="x", ms=3, color=line[0].get_color())
        ax.axhline(1.0, color="black", ls=":", lw=1, label=f"retrain ({key}: 1 by definition)")
        ax.axhline(0.0, color="grey", ls=":", lw=1, label=f"none ({key}: 0 by definition)")
        refs = s[s.method.isin(["none", "retrain"])].set_index("method")
        effects = "; ".join(f"{m} {refs.loc[m, 'attack_effect']:.3f} → {refs.loc[m, f'attack_effect_{key}']:.3f}"
                            for m in ("none", "retrain") if m in refs.index)
        ax.set(title=f"{attack}: removal before (solid) and after {key} (dashed)\ncontrols' effect: {effects}",
               xlabel="budget (fraction of retraining cost)", ylabel="removal (0 = none, 1 = retrain)")
    _per_attack(_top_level(summary), path, draw)


def plot_removal(summary: pd.DataFrame, path: Path) -> None:
    """Per attack: each method's fresh-seed removal with the interval its verdict used, against budget;
    retrain and none as lines."""
    def draw(ax, attack, s):
        for method, m in s[~s.method.isin((*REFERENCES, SCRATCH))].groupby("method"):
            _with_errors(ax, m.budget, m, method)
        scratch = s[s.method == SCRATCH]
        if not scratch.empty:  # the baseline every method is judged against at the same budget
            _with_errors(ax, scratch.budget, scratch, "scratch (retrain within the budget)", color="black", lw=2.5,
                         ls="-.")
        ax.axhline(1.0, color="black", ls="--", lw=1, label="retrain (cost 1.0)")
        ax.axhline(0.0, color="grey", ls=":", lw=1, label="none (cost 0)")
        ax.set(title=f"{attack}: removal of the chosen configuration, fresh seeds (the verdict's interval)",
               xlabel="budget (fraction of retraining cost)", ylabel="removal (0 = none, 1 = retrain)")
    _per_attack(_top_level(summary), path, draw)


def plot_pareto(summary: pd.DataFrame, path: Path) -> None:
    """Per attack: removal against cost, coloured by test accuracy, with the non-dominated rows joined."""
    plt = _plt()
    summary = _top_level(summary)
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
        scratch = ok[ok.method == SCRATCH].sort_values("cost_fraction")
        if not scratch.empty:
            ax.plot(scratch.cost_fraction, scratch.removal, color="black", lw=2, ls="-.",
                    label="scratch (retrain within the budget)")
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


REMOVAL = "removal [interval]"  # the interval the verdict used (Fieller's, at the verdict's level)
VS_SCRATCH = "removal vs scratch [interval]"


def _bound(v: float) -> str:
    return f"{v:.2f}" if math.isfinite(v) else ("∞" if v > 0 else "−∞")


def _with_interval(s: pd.DataFrame) -> list[str]:
    """Removal as "estimate [low, high]" ("-" where undefined, the estimate alone where it has no interval)."""
    out = []
    for r, lo, hi in zip(s.removal.astype(float), s.removal_ci_low.astype(float), s.removal_ci_high.astype(float)):
        if not math.isfinite(r):
            out.append("-")
        elif math.isnan(lo) or math.isnan(hi):
            out.append(f"{r:.3f}")
        else:
            out.append(f"{r:.3f} [{_bound(lo)}, {_bound(hi)}]")
    return out


def table(summary: pd.DataFrame, delta: float | None = None, folder: Path | None = None) -> str:
    """What the sweep prints when it ends: equivalence.csv's one line per (attack, method) — the verdict
    over its budgets in words, the smallest equivalent budget, the best removal, what tuning cost — then
    the rows still open at the last look and how far they sit from the margin, and where the rest is
    (report.html, summary.csv: every budget, interval, accuracy and GUS)."""
    eq = equivalence(summary).rename(columns={"smallest_equivalent_budget": "equivalent_from",
                                               "tuning_cost_retrains": "tuning_cost"})
    cols = ["attack", "method", "verdict", "equivalent_from", "best_removal", "tuning_cost"]
    if (summary.method == SCRATCH).any():
        cols.insert(4, "vs_scratch")
    if len(_levels(summary)) > 1:
        cols[1:1] = ["discovery"]
    with pd.option_context("display.width", 220, "display.max_rows", 1000, "display.max_colwidth", 80):
        text = eq[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}") if not eq.empty else \
            "no searched method"
    undecided = open_text(summary, delta)
    rest = (f"every budget, interval, accuracy and GUS: {folder / 'report.html'} and {folder / 'summary.csv'}"
            if folder is not None else "every budget, interval, accuracy and GUS: report.html and summary.csv")
    return text + ("\n" + undecided if undecided else "") + "\n" + rest


def open_text(summary: pd.DataFrame, delta: float | None = None) -> str:
    """One line naming the searched rows still undecided after the last look, each with its interval
    (the margin is 1 − δ: "worse" needs the upper bound below it, "equivalent" the lower bound above it)."""
    open_ = summary[summary.verdict_open.fillna(False).astype(bool) & ~summary.method.isin(REFERENCES)]
    if open_.empty:
        return ""
    parts = [f"{r.method}@{r.budget:g} {r.removal:.2f} [{_bound(r.removal_ci_low)}, {_bound(r.removal_ci_high)}] "
             f"({int(r.n_fresh)} seeds{_distance(r, delta)}{_projection(r)})" for r in open_.itertuples()]
    margin = f" (margin 1 − δ = {1 - delta:g})" if delta else ""
    return (f"undecided after the last look{margin}, {len(parts)} rows: " + "; ".join(parts)
            + ". More fresh seeds (fresh_rounds, or --profile resolve on the quickstart) could decide them.")


def _distance(r, delta: float | None) -> str:
    return f", {r.removal - (1 - delta):+.2f} from the margin" if delta else ""


def _projection(r) -> str:
    """contrast.margin's projected seed count: where today's mean and spread would decide the row."""
    need = getattr(r, "verdict_seeds_needed", math.nan)
    if pd.isna(need):  # a decided row, or a summary written before the column existed
        return ""
    return f"; about {need:.0f} seeds would decide it if its mean and spread held" if math.isfinite(need) else \
        "; no seed count would decide it at its current mean"


def _img(path: Path) -> str:
    """A PNG inlined, so report.html is one file that can be mailed or moved alone."""
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" style="max-width:100%">'


def _resolution_text(res: pd.DataFrame, delta: float) -> str:
    """`resolution` in one sentence per attack, for the top of report.html."""
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
    """report.html: how to read it, the two plots (inlined), the verdicts, the summary and the importances."""
    fmt = {"float_format": lambda v: f"{v:.3f}", "index": False, "border": 0, "na_rep": "-"}
    compact = summary.copy()
    compact[REMOVAL] = _with_interval(compact)
    cols = ["attack", "method", "budget", REMOVAL, "removal_pooled", "removal_tuning", "acc_test",
            "acc_val_tuning", "gus_z", "cost_fraction", "tuning_cost_retrains", "n_trials", "n_fresh", "removal_tau",
            "verdict", "verdict_look", "verdict_test", "pareto", "status", "hparams"]
    scratch = (summary.method == SCRATCH).any()
    if scratch:
        compact[VS_SCRATCH] = _with_interval(compact.assign(removal=compact.removal_vs_scratch,
                                                            removal_ci_low=compact.removal_vs_scratch_ci_low,
                                                            removal_ci_high=compact.removal_vs_scratch_ci_high))
        cols[cols.index("verdict_test") + 1:cols.index("verdict_test") + 1] = ["vs_scratch", VS_SCRATCH]
    for c in ("n_trials", "n_fresh"):
        compact[c] = compact[c].astype("Int64")
    partial = len(_levels(summary)) > 1
    cols += [c for c in summary.columns if "relapse" in c]
    if partial:
        cols[1:1] = ["discovery"]
        cols += ["removal_identified", "removal_identified_ci_low", "removal_identified_ci_high", "verdict_identified",
                 "status_identified", "gus_z_identified", "gus_z_unidentified"]
    n_fresh = int(summary.n_fresh.max()) if summary.n_fresh.notna().any() else 0
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}} table{{border-collapse:collapse;font-size:12px}}
td,th{{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}} th{{background:#f4f4f4}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p><b>Resolution.</b> {_resolution_text(resolution(summary, delta), delta)}. A method exactly as good as retraining
reads <i>equivalent</i> only when δ exceeds 1 − the lower bound its interval gets (estimated from the retrain row's).
{html.escape(open_text(summary, delta))}</p>
<p>Removal: 0 = nothing removed, 1 = as good as retraining. For each (attack, method, budget) the best tuning
configuration (by objective on the validation split and tuning seeds) was re-run on fresh seeds, each paired with
that seed's own <code>none</code> and <code>retrain</code>. Removal is 1 − mean(m_unlearned − m_retrain) / mean(m_poisoned −
m_retrain) over those seeds, with Fieller's interval from the verdict's own t test (shown in brackets);
<code>removal_tuning</code> is the optimistic tuning value, <code>removal_tau</code> the estimated seed-to-seed spread of
removal (a description; it narrows nothing). <b>Verdict</b> against retraining at margin δ = {delta:g}, from a one-sided t
test over fresh seeds of each seed's contrast (m_unlearned − m_retrain) − δ·(m_poisoned − m_retrain), each side at
α = 0.025 split over the planned looks: <i>worse</i> = significantly short of 1 − δ (the paper's claim; the upper
bound below 1 − δ); <i>equivalent</i> = significantly above 1 − δ (the lower bound above it) with test accuracy within
{EQUIVALENT_ACC} of retrain's; <i>inconclusive</i> = neither yet (too few or too noisy seeds); empty = fewer than 3 fresh
seeds. <code>verdict_look</code>: the look that decided it (its seeds are the ones shown). The <code>retrain</code> row goes
through the same test as a calibration check: it must never read <i>worse</i>. Accuracy constraint of the objective:
validation accuracy within {ACCURACY_TOLERANCE} of retrain's. Costs in fractions of one retraining;
<code>tuning_cost_retrains</code> counts every unit the method's search spent.</p>
{_scratch_text(summary) if scratch else ""}{_slack_text(summary)}
{_discovery_section(folder) if partial else ""}{_relapse_section(folder) if relapse_lengths(summary) else ""}<h2>Removal vs budget</h2>{_img(folder / "removal_vs_budget.png")}
<h2>Verdict per method</h2>{eq.to_html(**fmt)}
<h2>Pareto view</h2>{_img(folder / "pareto.png")}
<h2>Summary</h2><p>One row per (attack, method, budget); every column, intervals included, is in
<code>summary.csv</code>. Fresh seeds per configuration: {n_fresh}.</p>{compact[cols].to_html(**fmt)}
<h2>Hyperparameter importance</h2>{imp.to_html(**fmt)}
</body></html>"""


def _scratch_text(summary: pd.DataFrame) -> str:
    return f"""<p><b>Against retraining from scratch at equal cost.</b> <code>scratch</code> retrains the model from
its initialisation on the retain set within the budget (the recipe's schedule cut at the budget, or compressed into
it: searched, as its learning rate), swept and chosen like a method. Each row is also judged against
<code>scratch</code>'s chosen configuration at the same budget on the same fresh seeds, with the verdict's test and
the scratch model in retrain's place: <code>removal vs scratch</code> is the share of the gap between θ_poisoned and
the scratch model that the method closes. The scratch model never saw a poison, so it is as clean as retraining
(for Gaussian poisoning its effect is 0 exactly); what a short retrain loses is accuracy. <code>vs_scratch</code>
reads <i>better</i> when the method is as clean (lower bound above 1 − δ) and more than {EQUIVALENT_ACC} more
accurate on the test set, <i>not better</i> when it is significantly less clean or as clean without that gain,
<i>inconclusive</i> otherwise. The verdict table says from which budget, if any, a method beats retraining from
scratch.</p>"""


def _slack_text(summary: pd.DataFrame) -> str:
    """How much of C_retrain is slack: θ_retrain's epochs to within EQUIVALENT_ACC of its final accuracy."""
    parts = []
    for r in summary[(summary.method == "retrain") & summary.retrain_epochs_to_quality.notna()].itertuples():
        parts.append(f"{html.escape(r.attack)}: {r.retrain_epochs_to_quality:.1f} of {r.retrain_epochs:.0f} epochs "
                     f"({r.retrain_epochs_to_quality / r.retrain_epochs:.2f} of C_retrain)")
    if not parts:
        return ""
    return (f"<p><b>The retrain reference, measured.</b> θ_retrain's own training came within {EQUIVALENT_ACC} of its "
            f"final validation accuracy after (mean over fresh seeds) {'; '.join(parts)}: the rest of C_retrain bought "
            "less than that. Budgets are fractions of the full recipe, so a long recipe flatters methods close to "
            "retraining; <code>scratch</code> is the comparison that does not depend on it.</p>\n")


def _relapse_section(folder: Path) -> str:
    return f"""<h2>Removal before and after relapse</h2><p>Each fresh run's model at its selected budgets was copied
and fine-tuned on clean points only (no poison, identified or not) for each relapse length (a fraction of one
retraining, the recipe's optimiser), then measured again; so were θ_poisoned and θ_retrain of the seed. Removal
after relapse, <code>removal_relapseL</code>, is (m_p − m_u) / (m_p − m_r) with every effect after the same relapse
(clean fine-tuning erodes θ_poisoned's effect too; the normalisation keeps that erosion from reading as removal),
judged with the main verdict's statistics (<code>verdict_relapseL</code>; <code>status_relapseL</code> says
<i>relapse_gap_small</i> where the relapsed controls no longer differ). <code>dtheta_relapseL</code> is ‖Δθ‖ of the
relapse: a relapse that did nothing shows as 0. Relapse compute is evaluation, never charged to a budget.</p>
{_img(folder / "removal_relapse.png")}"""


def _discovery_section(folder: Path) -> str:
    return f"""<h2>Removal vs discovery</h2><p>Rows come per discovery level: the fraction of the poisons the
unlearner was told of (the others stay in its retain set, believed clean). Below level 1 each row is judged twice:
<code>removal</code> and <code>verdict</code> against the gold <code>retrain</code> (how much of the poison is gone), and
<code>removal_identified</code> and <code>verdict_identified</code> against <code>retrain_identified</code>, retraining
without only the identified poisons (as good as retraining with what was known? the comparison of like with like);
<code>status_identified</code> says <i>identified_gap_small</i> where that reference is too close to the poisoned model
to normalise by. For Gaussian poisoning <code>gus_z_identified</code> and <code>gus_z_unidentified</code> pool GUS over
each part of the poisons: removal over all poisons is about d times the removal over the identified ones by
construction, and only the split shows whether unlearning touched the others. The budget and Pareto plots show the
highest level.</p>{_img(folder / "removal_vs_discovery.png")}"""


def write(rows: pd.DataFrame, folder: Path, delta: float = 0.1, space_of=None, title: str = "sweeper report",
          plan: dict | None = None, partial: str | None = None) -> pd.DataFrame:
    """summary.csv, equivalence.csv, resolution.csv, importance.csv, trials.csv, two PNGs and report.html into
    `folder`. `partial`: why the sweep is incomplete (interrupted, died, ...); said in the title and in
    PARTIAL.txt. Returns the summary."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = _with_defaults(rows)
    summary = summarize(rows, delta, plan)
    if partial:
        title = f"{title} (PARTIAL: {partial})"
    (folder / "PARTIAL.txt").unlink(missing_ok=True)  # a report rebuilt once the sweep completed is not partial
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
    (folder / "removal_relapse.png").unlink(missing_ok=True)
    if relapse_lengths(summary):
        plot_relapse(summary, folder / "removal_relapse.png")
    (folder / "removal_vs_discovery.png").unlink(missing_ok=True)
    if len(_levels(summary)) > 1:
        plot_discovery(summary, folder / "removal_vs_discovery.png")
    (folder / "report.html").write_text(html_page(summary, eq, imp, folder, delta, title))
    if partial:
        (folder / "PARTIAL.txt").write_text(f"This sweep is incomplete: {partial}. Rows of methods it never reached "
                                            "say not_run; rows without fresh-seed measurements say no_fresh.\n")
    return summary
