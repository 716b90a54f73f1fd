"""`sweeper run --dry-run` says what the sweep will run, and writes nothing."""
import yaml

from sweeper import cli, config, plan

EXP = {"name": "dry", "dataset": "digits", "model": {"name": "small_cnn", "width": 8},
       "attack": ["gaussian", "backdoor"], "recipe": {"epochs": 3}, "methods": ["gd", "ssd"],
       "budgets": [0.02, 0.04], "trials": 2, "seeds": [0], "fresh_seeds": [1, 2]}


def test_dry_run_says_what_will_run_and_writes_nothing(tmp_path, capsys):
    """The counts are checked against a real sweep in tests/integration/test_dry_run_vs_sweep.py (slow)."""
    path = tmp_path / "dry.yaml"
    path.write_text(yaml.safe_dump(EXP))
    wd = tmp_path / "wd"
    assert cli.main(["run", str(path), "--workdir", str(wd), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "tuning: 8 trials" in out and "base models: 6 to train, 0 cached" in out
    assert not wd.exists()  # a dry run writes nothing
    planned = plan.plan(config.load(str(path)), wd)
    assert (planned.tuning_trials, planned.base_to_train, planned.base_cached) == (8, 6, 0)
    assert not wd.exists()


def test_an_adaptive_dry_run_gives_the_range_the_looks_allow(tmp_path, capsys):
    """fresh_rounds [3, 4]: the first look's runs and base models always, the fourth seed's only for rows the
    first look leaves open (2 attacks x (2 methods x 2 budgets + 2 references) = 12 runs per fresh seed)."""
    path = tmp_path / "adaptive.yaml"
    path.write_text(yaml.safe_dump({**EXP, "fresh_seeds": [1, 2, 3, 4], "fresh_rounds": [3, 4]}))
    planned = plan.plan(config.load(str(path)), tmp_path / "wd")
    assert (planned.fresh_runs_min, planned.fresh_runs_max) == (36, 48)
    assert (planned.base_first_look, planned.base_to_train) == (8, 10)
    assert cli.main(["run", str(path), "--workdir", str(tmp_path / "wd"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "at most 48 runs" in out and "at most 36 if the first look decides every row" in out
    assert "base models: 10 to train, 0 cached (8 before tuning; the rest only for looks that run)" in out


def test_a_dry_run_counts_every_discovery_level(tmp_path, capsys):
    """discovery [0.5, 1.0]: every study and every chosen configuration twice, the shared none and retrain
    once per fresh seed and attack, one retrain_identified run per fresh seed, attack and partial level (and
    at most one model to train per attack, seed and partial level)."""
    path = tmp_path / "levels.yaml"
    path.write_text(yaml.safe_dump({**EXP, "discovery": [0.5, 1.0]}))
    planned = plan.plan(config.load(str(path)), tmp_path / "wd")
    assert planned.tuning_trials == 2 * 8
    assert planned.fresh_runs_max == 2 * 2 * (2 * 2 * 2 + 2 + 1)  # seeds x attacks x (levels x methods x budgets + refs)
    assert planned.identified_to_train == 2 * 3  # attacks x (tuning + fresh seeds) x one partial level
    assert cli.main(["run", str(path), "--workdir", str(tmp_path / "wd"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "at each of 2 discovery levels [1.0, 0.5]" in out and "up to 6 retrain_identified models" in out
