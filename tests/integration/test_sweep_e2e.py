"""End to end through real Ray Tune, real Optuna and a real MLflow SQLite file, read back with
mlflow.search_runs."""
import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from sweeper import readback, sweep
from sweeper.metrics import DIVERGED

EXPERIMENT = {
    "name": "e2e", "dataset": "digits", "model": {"name": "small_cnn", "width": 8},
    "attack": {"name": "gaussian", "fraction": 0.2, "eps": 1.0}, "recipe": {"epochs": 8},
    "methods": ["gd", "ga"], "budgets": [0.02, 0.04], "trials": 3, "seeds": [0], "fresh_seeds": [1, 2],
    "spaces": {
        # A range a user got wrong: lr = -1 makes torch's SGD raise, so that trial must be FAILED.
        "gd": {"params": {"lr": {"low": -1.0, "high": 0.1}}, "points": [{"lr": -1.0}]},
        # lr = 1e4 of gradient ascent overflows to NaN: the trial must get the penalised objective.
        "ga": {"params": {"lr": {"low": 1.0e-5, "high": 1.0e+4, "log": True}}, "points": [{"lr": 1.0e+4}]},
    },
}


@pytest.fixture(scope="module")
def swept(tmp_path_factory, ray_session):
    wd = tmp_path_factory.mktemp("sweep")
    path = wd / "e2e.yaml"
    path.write_text(yaml.safe_dump(EXPERIMENT))
    lines = []
    result = sweep.run_sweep(path, workdir=wd / "work", progress=lines.append)
    mlflow.set_tracking_uri(result.tracking_uri)
    runs = mlflow.search_runs(experiment_names=[result.name])
    return result, runs, lines


def _tune_trial_ids(workdir: Path, sweep: str, method: str) -> set[str]:
    """Ray's own record of the trials it ran (its per-trial folders and their params.json),
    independent of our callback."""
    folder = workdir / "ray" / sweep / "gaussian"
    return {p.parent.name.split("_")[2] for p in folder.glob("_trainable_*/params.json")
            if json.loads(p.read_text())["method"] == method}


def test_every_tune_trial_has_exactly_one_child_run(swept):
    result, runs, _ = swept
    trials = runs[(runs["tags.level"] == "trial") & (runs["tags.phase"] == "tune")]
    for method in ("gd", "ga"):
        ray_ids = _tune_trial_ids(result.workdir, result.name, method)
        mine = trials[trials["tags.method"] == method]["tags.trial_id"]
        assert len(ray_ids) == 3 and sorted(mine) == sorted(ray_ids)
    parents = runs[runs["tags.level"] == "parent"]
    assert sorted(parents["tags.method"]) == ["ga", "gd", "none", "retrain"]
    for _, child in trials.iterrows():
        assert child["tags.mlflow.parentRunId"] in set(parents["run_id"])
        assert child["tags.phase"] == "tune" and child["tags.seed"] == "0" and child["tags.scenario"]


def test_a_trial_that_raises_is_failed_with_its_error(swept):
    _, runs, lines = swept
    gd = runs[(runs["tags.method"] == "gd") & (runs["tags.phase"] == "tune")]
    failed = gd[gd["params.lr"] == "-1.0"]
    assert list(failed["status"]) == ["FAILED"]
    assert "Invalid learning rate" in failed.iloc[0]["tags.error"]
    assert any("FAILED (ValueError: Invalid learning rate" in ln for ln in lines)


def test_a_diverged_trial_gets_the_penalised_objective_and_does_not_win(swept):
    result, runs, _ = swept
    ga = runs[(runs["tags.method"] == "ga") & (runs["tags.phase"] == "tune")]
    diverged = ga[ga["params.lr"] == "10000.0"].iloc[0]
    assert diverged["metrics.objective"] == DIVERGED and diverged["tags.diverged"] == "true"
    summary = result.summary
    ga_rows = summary[summary.method == "ga"]
    assert (ga_rows.objective_tuning > DIVERGED).all() and not (ga_rows.trial_id == diverged["tags.trial_id"]).any()


def test_metrics_are_stepped_by_checkpoint(swept):
    result, runs, _ = swept
    run = runs[(runs["tags.method"] == "ga") & (runs["status"] == "FINISHED") & (runs["tags.phase"] == "tune")].iloc[0]
    history = mlflow.MlflowClient(result.tracking_uri).get_metric_history(run["run_id"], "removal")
    assert [m.step for m in history] == [20, 40]  # budget in per-mille of retraining cost


def test_report_has_every_budget_and_references_and_rebuilds_from_mlflow(swept):
    result, _, _ = swept
    s = pd.read_csv(result.report_dir / "summary.csv")
    for column in ["attack", "method", "budget", "removal", "acc_val", "acc_test", "gus_z", "cost_units",
                   "n_trials", "status", "removal_ci_low", "removal_ci_high", "removal_tuning",
                   "equivalent_to_retrain", "tuning_cost_retrains", "pareto"]:
        assert column in s.columns
    assert set(s[s.method == "ga"].budget) == {0.02, 0.04}
    assert set(s.method) == {"none", "retrain", "gd", "ga"}
    assert (result.report_dir / "removal_vs_budget.png").stat().st_size > 1000
    (result.report_dir / "summary.csv").unlink()
    mlflow.set_tracking_uri(f"sqlite:///{result.workdir.parent / 'elsewhere.db'}")  # the global URI must not matter
    try:
        rebuilt = readback.rebuild_report(result.workdir)
    finally:
        mlflow.set_tracking_uri(result.tracking_uri)
    pd.testing.assert_frame_equal(rebuilt.summary.reset_index(drop=True), s, check_dtype=False)


def test_report_files_are_logged_to_the_parent_runs(swept):
    result, runs, _ = swept
    parent = runs[(runs["tags.level"] == "parent") & (runs["tags.method"] == "gd")].iloc[0]
    names = {a.path for a in mlflow.MlflowClient(result.tracking_uri).list_artifacts(parent["run_id"], "report")}
    assert {"report/summary.csv", "report/removal_vs_budget.png", "report/report.html", "report/pareto.png"} <= names


def test_chosen_configurations_are_re_measured_on_fresh_seeds(swept):
    result, runs, _ = swept
    fresh = runs[runs["tags.phase"] == "fresh"]
    assert set(fresh["tags.seed"]) == {"1", "2"}
    s = result.summary
    ok = s[(s.method == "gd") & (s.status == "ok")]
    assert len(ok) > 0  # the loop below must check something
    for _, row in ok.iterrows():
        mine = fresh[fresh["tags.selected_from"] == row.trial_id]
        assert len(mine) == 2 and f"{row.budget:g}" in mine.iloc[0]["tags.selected_for"]
        history = [mlflow.MlflowClient(result.tracking_uri).get_metric_history(r, "removal") for r in mine.run_id]
        values = [m.value for h in history for m in h if m.step == round(row.budget * 1000)]
        assert row.removal == pytest.approx(sum(values) / 2)  # fresh mean, not the tuning value
        assert row.n_fresh == 2 and row.removal_ci_low <= row.removal <= row.removal_ci_high
    for ref in ("none", "retrain"):  # references measured on the same fresh seeds
        assert len(fresh[fresh["tags.method"] == ref]) == 2


@pytest.mark.slow
def test_compare_puts_two_sweeps_side_by_side(swept, capsys):
    from sweeper import cli

    result, _, _ = swept
    small = {**EXPERIMENT, "methods": ["gd"], "trials": 1, "spaces": {}}
    path = result.workdir.parent / "small.yaml"
    path.write_text(yaml.safe_dump(small))
    second = sweep.run_sweep(path, workdir=result.workdir, progress=lambda _: None)
    assert second.name == "e2e-2"  # the name was taken: numbered, never mixed into the first sweep
    table = readback.compare_sweeps(["e2e", "e2e-2"], result.workdir)
    assert {"e2e:removal", "e2e-2:removal", "e2e:status", "e2e-2:status"} <= set(table.columns)
    gd = table[(table.method == "gd") & (table.budget == 0.04)].iloc[0]
    assert gd["e2e-2:status"] in ("ok", "accuracy_violated", "attack_ineffective")
    assert table[table.method == "ga"]["e2e-2:status"].isna().all()  # ga only in the first sweep
    assert cli.main(["compare", "e2e", "nope", "--workdir", str(result.workdir)]) == 2
    assert "no sweep named nope" in capsys.readouterr().err


def test_routing_searcher_state_survives_save_and_restore(tmp_path):
    """Tune checkpoints the searcher so that a restored sweep resumes every method's study."""
    from sweeper import config, tuning

    exp = config.parse({**EXPERIMENT, "spaces": {}}, "e2e.yaml")
    make = lambda: tuning.RoutingSearcher({m: tuning.tuner._study(exp, "gaussian", m) for m in exp.methods}, 2)  # noqa: E731
    a = make()
    first = [a.suggest(f"t{i}") for i in range(3)]
    assert [c["method"] for c in first] == ["gd", "gd", "ga"]  # method by method, equal counts
    assert first[0]["hparams"] == {"lr": 0.01}                 # the signature default first
    a.on_trial_complete("t0", {"objective": 0.1, "budget": 0.04})
    a.save(str(tmp_path / "searcher.pkl"))
    b = make()
    b.restore(str(tmp_path / "searcher.pkl"))
    assert b.left == a.left == {"gd": 0, "ga": 1} and b.owner == a.owner
    assert b.suggest("t3")["method"] == "ga" and b.suggest("t4") == "FINISHED"


def _most_at_once(runs: pd.DataFrame) -> int:
    """The most tune-trial MLflow runs open at one moment (a run opens as Tune starts its trial and closes
    as Tune reports it complete)."""
    tune = runs[(runs["tags.level"] == "trial") & (runs["tags.phase"] == "tune") & ~runs["tags.method"].isin(["none", "retrain"])]
    events = sorted([(t, 1) for t in tune.start_time] + [(t, -1) for t in tune.end_time], key=lambda e: (e[0], e[1]))
    now = most = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def test_max_concurrent_caps_the_trials_tune_runs_at_once(tmp_path, ray_session):
    """--max-concurrent 1 on 2 cores: Tune runs one trial at a time; by default it runs two."""
    exp = {**{k: v for k, v in EXPERIMENT.items() if k != "spaces"}, "methods": ["gd"], "trials": 4, "fresh_seeds": []}
    (tmp_path / "mc.yaml").write_text(yaml.safe_dump(exp))
    seen = {}
    for cap in (1, None):
        result = sweep.run_sweep(tmp_path / "mc.yaml", workdir=tmp_path / "work", name=f"mc-{cap}",
                                 max_concurrent=cap, progress=lambda _: None)
        mlflow.set_tracking_uri(result.tracking_uri)
        seen[cap] = _most_at_once(mlflow.search_runs(experiment_names=[result.name]))
    assert seen == {1: 1, None: 2}
