"""The dry run's counts (`sweeper run --dry-run`, plan.plan) match what the shared sweep then ran: tuning
trials, base models trained, fresh runs and units at most the plan's bounds; after it, everything is cached."""
import pandas as pd
import pytest

from shared_sweep import SEARCHED
from sweeper import config, plan

pytestmark = pytest.mark.slow  # reads the shared sweep (tests/conftest.py)


def test_dry_run_counts_match_the_sweep(shared_sweep):
    before, result = shared_sweep.planned, shared_sweep.result
    assert before.base_cached == 0
    rows = pd.read_csv(result.report_dir / "trials.csv")
    tuned = rows[(rows.phase == "tune") & rows.method.isin(SEARCHED)]
    assert tuned.attack.nunique() == 2
    assert tuned.groupby(["attack", "trial_id"]).ngroups == before.tuning_trials
    assert len(list((result.workdir / "base").iterdir())) == before.base_to_train
    fresh = rows[rows.phase == "fresh"].groupby(["attack", "trial_id"]).ngroups
    assert 0 < fresh <= before.fresh_runs_max
    spent = tuned.groupby(["attack", "trial_id"])["cost/units"].max().sum()  # one tuning seed
    assert 0 < spent <= before.units_worst

    after = plan.plan(config.load(str(shared_sweep.experiment_file)), result.workdir)
    assert (after.base_to_train, after.base_cached) == (0, before.base_to_train)
    assert after.exact and after.seconds_per_unit > 0
    assert all(u <= before.retrain_units[a] for a, u in after.retrain_units.items())  # the bound held
