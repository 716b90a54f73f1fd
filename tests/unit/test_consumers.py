"""Issue 23, evaluate only what is read: what each consumer of a trial's metrics reads, and that a trial logs
it where it reads it. Tuning checkpoints measure what the objective, ASHA and the report's tuning columns
read (no membership inference, no test accuracy); fresh runs measure what the report, its verdicts and the
MLflow parents read. A key a consumer reads that a trial stops logging fails here, not in a sweep."""
from __future__ import annotations

import pytest

from sweeper import sweep, trial
from sweeper.report import summary

# The objective (metrics.objective through trial.seed_objective) and the selection (report.selection): per
# checkpoint of a tuning trial.
OBJECTIVE = {"removal", "acc/val", "retrain/acc_val", "attack/ineffective", "objective"}
# ASHA (tuning/tuner.py: time_attr="budget", metric="objective") and the per-trial cost (selection.tuning_cost).
ASHA = {"budget", "objective"}
TUNING_COST = {"cost/fraction"}
# The report's tuning columns (summary._measure: *_tuning of TUNED, gus_z_tuning, objective_tuning).
TUNING_COLUMNS = {summary.MEASURED[m] for m in summary.TUNED} | {"gus/z", "objective"}
# The report from fresh runs: MEASURED and SIMPLE (summary._measure), the pooled GUS z (stats.pooled_z).
FRESH_REPORT = set(summary.MEASURED.values()) | set(summary.SIMPLE.values()) | {"gus/sum", "gus/n_valid"}
# The verdicts (report/judge.py, seed_table's columns) from fresh runs, per seed.
VERDICTS = {"attack/effect", "attack/effect_se", "acc/test"}
# What tuning trials skip: nothing in the sets above may need them from a tuning checkpoint.
SKIPPED_IN_TUNING = {"acc/test", "mia/auc"}


@pytest.fixture(scope="module")
def rows(tiny_scenario, base_dir):
    """A tuning trial's checkpoints (configured as phases.tune configures them) and a fresh run's."""
    common = {"scenario": tiny_scenario, "method": "gd", "base_dir": str(base_dir), "budgets": [0.02, 0.04]}
    tuning = trial.run_trial({**common, "seeds": [0], "membership": False, "test_accuracy": False})
    fresh = trial.run_trial({**common, "seeds": [0]})
    return tuning, fresh


def test_tuning_checkpoints_log_what_the_objective_asha_and_the_tuning_columns_read(rows):
    tuning, _ = rows
    for row in tuning:
        assert OBJECTIVE | ASHA | TUNING_COST | TUNING_COLUMNS <= set(row)
        assert not SKIPPED_IN_TUNING & set(row)  # measured nowhere they are read: skipped


def test_nothing_read_from_tuning_checkpoints_is_what_they_skip():
    assert not SKIPPED_IN_TUNING & (OBJECTIVE | ASHA | TUNING_COST | TUNING_COLUMNS)
    assert "acc_test_tuning" not in summary.COLUMNS and "acc_val_tuning" in summary.COLUMNS


def test_fresh_runs_log_what_the_report_and_its_verdicts_read(rows):
    _, fresh = rows
    for row in fresh:
        assert FRESH_REPORT | VERDICTS <= set(row)


def test_the_mlflow_parents_read_report_columns_that_exist():
    assert set(sweep.PARENT_METRICS) <= set(summary.COLUMNS)
    assert set(sweep.FLAT_METRICS) <= set(summary.COLUMNS)
