"""The report: how much poison each method removes at each fraction of retraining's cost, and is that
as good as retraining? (docs/architecture.md, Statistics and verdicts.)

Selection, then fresh measurement: for each (attack, method, budget) the best tuning trial by
`objective` (validation split, tuning seeds) is chosen; its configuration was re-run on fresh seeds
(`phase = fresh`), and the reported `removal` is the fresh-seed mean with a Student-t 95% interval.
The tuning value stays beside it as `removal_tuning` (optimistic: the maximum over noisy trials,
measured on the data that chose it). Built from checkpoint rows alone (what MLflow holds), so
`sweeper report` can rebuild it and `sweeper compare` can set sweeps side by side.

Parts: `stats` (intervals and tests), `selection` (picking configurations; what the sweep needs mid-run),
`summary` (the rows of the report), `render` (plots, table, HTML, the files). Every name is re-exported
here lazily (PEP 562): `from sweeper import report` loads none of the parts, and `report.selections`
loads only `selection`, so a running sweep does not import scipy or matplotlib to pick its fresh trials."""
from __future__ import annotations

import importlib

# name -> the part that defines it; the old single module's public names, all of them
_PARTS = {
    "stats": ("EFFECTIVE_SE", "EQUIVALENT_ACC", "T_TEST", "POOLED_GUS", "t_interval", "noninferior", "verdict",
              "test_for", "pooled_removal", "resolution", "pooled_z", "attack_worked"),
    "selection": ("REFERENCES", "best_per_budget", "selections", "tuning_cost", "hparams_json"),
    "summary": ("MEASURED", "SIMPLE", "COLUMNS", "plan_of", "summarize"),
    "overview": ("MIN_TRIALS_FOR_IMPORTANCE", "pareto_front", "equivalence", "importance"),
    "render": ("plot_removal", "plot_pareto", "table", "html_page", "write"),
}
_WHERE = {name: part for part, names in _PARTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    """Load the part that defines `name` on first use and keep the name here for the next one."""
    if name in _PARTS:
        return importlib.import_module(f"{__name__}.{name}")
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE) | set(_PARTS))
