"""`sweeper run --dry-run` says what the sweep will run; its counts match what the sweep then runs."""
import pandas as pd
import yaml

from sweeper import cli, config, sweep

EXP = {"name": "dry", "dataset": "digits", "model": {"name": "small_cnn", "width": 8},
       "attack": ["gaussian", "backdoor"], "recipe": {"epochs": 3}, "methods": ["gd", "ssd"],
       "budgets": [0.02, 0.04], "trials": 2, "seeds": [0], "fresh_seeds": [1, 2]}


def test_dry_run_counts_match_the_sweep(tmp_path, ray_session, capsys):
    path = tmp_path / "dry.yaml"
    path.write_text(yaml.safe_dump(EXP))
    wd = tmp_path / "wd"
    assert cli.main(["run", str(path), "--workdir", str(wd), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "tuning: 8 trials" in out and "base models: 6 to train, 0 cached" in out
    assert not wd.exists()  # a dry run writes nothing

    before = sweep.plan(config.load(str(path)), wd)
    result = sweep.run_sweep(path, workdir=wd, progress=lambda _: None)
    rows = pd.read_csv(result.report_dir / "trials.csv")
    tuned = rows[(rows.phase == "tune") & rows.method.isin(EXP["methods"])]
    assert tuned.groupby(["attack", "trial_id"]).ngroups == before.tuning_trials
    assert len(list((wd / "base").iterdir())) == before.base_to_train
    fresh = rows[rows.phase == "fresh"].groupby(["attack", "trial_id"]).ngroups
    assert fresh <= before.fresh_runs_max
    spent = tuned.groupby(["attack", "trial_id"])["cost/units"].max().sum()  # one tuning seed
    assert spent <= before.units_worst

    after = sweep.plan(config.load(str(path)), wd)
    assert (after.base_to_train, after.base_cached) == (0, 6) and after.exact and after.seconds_per_unit > 0
    assert all(u <= before.retrain_units[a] for a, u in after.retrain_units.items())  # the bound held
