"""End to end through real Ray Tune, real Optuna and a real MLflow SQLite file, read back with
mlflow.search_runs."""
import json
import re
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from shared_sweep import REFERENCES, SEARCHED, SHARED
from sweeper import readback, sweep
from sweeper.metrics import DIVERGED


def tuned(runs: pd.DataFrame, attack: str = "gaussian") -> pd.DataFrame:
    return runs[(runs["tags.level"] == "trial") & (runs["tags.phase"] == "tune") & (runs["tags.attack"] == attack)]


def _tune_trial_ids(workdir: Path, sweep: str, attack: str, method: str) -> set[str]:
    """Ray's own record of the trials it ran (its per-trial folders and their params.json),
    independent of our callback."""
    folder = workdir / "ray" / sweep / attack
    return {p.parent.name.split("_")[2] for p in folder.glob("_trainable_*/params.json")
            if json.loads(p.read_text())["method"] == method}


@pytest.mark.slow  # reads the shared sweep (tests/conftest.py)
def test_every_tune_trial_has_exactly_one_child_run(shared_sweep):
    result, runs = shared_sweep.result, shared_sweep.runs
    for attack in ("gaussian", "backdoor"):
        trials = tuned(runs, attack)
        for method in SEARCHED:
            ray_ids = _tune_trial_ids(result.workdir, result.name, attack, method)
            mine = trials[trials["tags.method"] == method]["tags.trial_id"]
            assert len(ray_ids) == SHARED["trials"] and sorted(mine) == sorted(ray_ids)
        parents = runs[(runs["tags.level"] == "parent") & (runs["tags.attack"] == attack)]
        assert sorted(parents["tags.method"]) == sorted(SEARCHED + REFERENCES)
        for _, child in trials.iterrows():
            assert child["tags.mlflow.parentRunId"] in set(parents["run_id"])
            assert child["tags.seed"] == "0" and child["tags.scenario"]


@pytest.mark.slow  # reads the shared sweep (tests/conftest.py)
def test_a_trial_that_raises_is_failed_with_its_error(shared_sweep):
    runs, lines = shared_sweep.runs, shared_sweep.lines
    gd = tuned(runs)[tuned(runs)["tags.method"] == "gd"]
    failed = gd[gd["params.lr"] == "-1.0"]
    assert list(failed["status"]) == ["FAILED"]
    assert "Invalid learning rate" in failed.iloc[0]["tags.error"]
    assert any("FAILED (ValueError: Invalid learning rate" in ln for ln in lines)


@pytest.mark.slow  # reads the shared sweep (tests/conftest.py)
def test_a_diverged_trial_gets_the_penalised_objective_and_does_not_win(shared_sweep):
    ga = tuned(shared_sweep.runs)[tuned(shared_sweep.runs)["tags.method"] == "ga"]
    diverged = ga[ga["params.lr"] == "10000.0"].iloc[0]
    assert diverged["metrics.objective"] == DIVERGED and diverged["tags.diverged"] == "true"
    summary = shared_sweep.result.summary
    ga_rows = summary[(summary.method == "ga") & (summary.attack == "gaussian")]
    assert (ga_rows.objective_tuning > DIVERGED).all() and not (ga_rows.trial_id == diverged["tags.trial_id"]).any()


@pytest.mark.slow  # reads the shared sweep (tests/conftest.py)
def test_metrics_are_stepped_by_checkpoint(shared_sweep):
    result, runs = shared_sweep.result, tuned(shared_sweep.runs)
    run = runs[(runs["tags.method"] == "ga") & (runs["status"] == "FINISHED")].iloc[0]
    history = mlflow.MlflowClient(result.tracking_uri).get_metric_history(run["run_id"], "removal")
    assert [m.step for m in history] == [20, 40]  # budget in per-mille of retraining cost


@pytest.mark.slow  # reads the shared sweep (tests/conftest.py)
def test_report_has_every_budget_and_references_and_rebuilds_from_mlflow(shared_sweep, tmp_path):
    result = shared_sweep.result
    s = pd.read_csv(result.report_dir / "summary.csv")
    for column in ["attack", "method", "budget", "removal", "acc_val", "acc_test", "gus_z", "cost_units",
                   "n_trials", "status", "removal_ci_low", "removal_ci_high", "removal_tuning",
                   "equivalent_to_retrain", "tuning_cost_retrains", "pareto"]:
        assert column in s.columns
    for attack in ("gaussian", "backdoor"):
        assert set(s[(s.method == "ga") & (s.attack == attack)].budget) == {0.02, 0.04}
    assert set(s.method) == set(SEARCHED + REFERENCES)
    assert (result.report_dir / "removal_vs_budget.png").stat().st_size > 1000
    (result.report_dir / "summary.csv").unlink()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'elsewhere.db'}")  # the global URI must not matter
    try:
        rebuilt = readback.rebuild_report(result.workdir, result.name)
    finally:
        mlflow.set_tracking_uri(result.tracking_uri)
    pd.testing.assert_frame_equal(rebuilt.summary.reset_index(drop=True), s, check_dtype=False)
    assert (result.report_dir / "summary.csv").is_file()  # written again, for the tests that read it after this one


@pytest.mark.slow  # reads the shared sweep (tests/conftest.py)
def test_report_files_are_logged_to_the_parent_runs(shared_sweep):
    result, runs = shared_sweep.result, shared_sweep.runs
    parent = runs[(runs["tags.level"] == "parent") & (runs["tags.method"] == "gd")].iloc[0]
    names = {a.path for a in mlflow.MlflowClient(result.tracking_uri).list_artifacts(parent["run_id"], "report")}
    assert {"report/summary.csv", "report/removal_vs_budget.png", "report/report.html", "report/pareto.png"} <= names


@pytest.mark.slow  # reads the shared sweep (tests/conftest.py)
def test_chosen_configurations_are_re_measured_on_fresh_seeds(shared_sweep):
    result, runs = shared_sweep.result, shared_sweep.runs
    fresh = runs[(runs["tags.phase"] == "fresh") & (runs["tags.attack"] == "gaussian")]
    assert set(fresh["tags.seed"]) == {"1", "2"}
    s = result.summary
    ok = s[(s.method == "gd") & (s.status == "ok") & (s.attack == "gaussian")]
    assert len(ok) > 0  # the loop below must check something
    for _, row in ok.iterrows():
        mine = fresh[fresh["tags.selected_from"] == row.trial_id]
        assert len(mine) == 2 and f"{row.budget:g}" in mine.iloc[0]["tags.selected_for"]
        client = mlflow.MlflowClient(result.tracking_uri)
        m_u = {r.run_id: [m.value for m in client.get_metric_history(r.run_id, "attack/effect")
                          if m.step == round(row.budget * 1000)][0] for r in mine.itertuples()}
        poisoned = fresh[fresh["tags.method"] == "none"].set_index("tags.seed")["metrics.attack/effect"]
        m_p = [poisoned[seed] for seed in mine["tags.seed"]]
        # the fresh seeds' ratio of means against their own θ_poisoned (m_retrain = 0 exactly for Gaussian
        # noise), not the tuning value
        assert row.removal == pytest.approx(1 - sum(m_u.values()) / sum(m_p))
        assert row.n_fresh == 2 and row.removal_ci_low <= row.removal <= row.removal_ci_high
        assert pd.isna(row.verdict)  # two fresh seeds: an interval, no verdict
    for ref in ("none", "retrain"):  # references measured on the same fresh seeds
        assert len(fresh[fresh["tags.method"] == ref]) == 2


@pytest.mark.slow  # reads the shared sweep (tests/conftest.py)
def test_a_methods_fresh_runs_are_queued_when_its_study_finishes_while_others_still_tune(shared_sweep):
    """Issue 23: no phase barrier between a method's tuning and its fresh runs. Each method's study says it is
    done right after its own last trial, and the first to finish does so before the cell's last trial."""
    lines = shared_sweep.lines
    for attack in ("gaussian", "backdoor"):
        trials = [i for i, line in enumerate(lines) if re.match(rf"\[{attack}/\w+\] \d+/2 ", line)]
        done = {m: i for i, line in enumerate(lines) for m in SEARCHED
                if line.startswith(f"[{attack}/{m}] study done: ")}
        assert set(done) == set(SEARCHED)
        for m, i in done.items():
            assert re.match(rf"\[{attack}/{m}\] 2/2 ", lines[i - 1]), lines[i - 1]  # its own last trial
        assert min(done.values()) < max(trials)  # queued while another method was still tuning


@pytest.mark.slow  # reads the shared sweep (tests/conftest.py)
def test_compare_puts_two_sweeps_side_by_side(shared_sweep, tmp_path, capsys):
    from sweeper import cli

    result = shared_sweep.result
    small = {**SHARED, "attack": SHARED["attack"][0], "methods": ["gd"], "trials": 1, "spaces": {}}
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(small))
    second = sweep.run_sweep(path, workdir=result.workdir, progress=lambda _: None)
    assert second.name == "shared-2"  # the name was taken: numbered, never mixed into the first sweep
    table = readback.compare_sweeps(["shared", "shared-2"], result.workdir)
    assert {"shared:removal", "shared-2:removal", "shared:status", "shared-2:status"} <= set(table.columns)
    gaussian = table[table.attack == "gaussian"]
    gd = gaussian[(gaussian.method == "gd") & (gaussian.budget == 0.04)].iloc[0]
    assert gd["shared-2:status"] in ("ok", "accuracy_violated", "attack_ineffective")
    assert gaussian[gaussian.method == "ga"]["shared-2:status"].isna().all()  # ga only in the first sweep
    assert table[table.attack == "backdoor"]["shared-2:status"].isna().all()  # and so was backdoor
    assert cli.main(["compare", "shared", "nope", "--workdir", str(result.workdir)]) == 2
    assert "no sweep named nope" in capsys.readouterr().err


def test_routing_searcher_state_survives_save_and_restore(tmp_path):
    """Tune checkpoints the searcher so that a restored sweep resumes every method's study."""
    from sweeper import config, tuning

    exp = config.parse({**SHARED, "attack": SHARED["attack"][0], "methods": ["gd", "ga"], "spaces": {}}, "e2e.yaml")
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


@pytest.mark.slow  # reads the shared sweep (tests/conftest.py)
def test_max_concurrent_caps_the_trials_tune_runs_at_once(shared_sweep, tmp_path):
    """--max-concurrent 1 on 2 cores: Tune runs one trial at a time; by default (the shared sweep) two."""
    exp = {**SHARED, "attack": SHARED["attack"][0], "methods": ["gd"], "trials": 3, "fresh_seeds": [], "spaces": {}}
    (tmp_path / "mc.yaml").write_text(yaml.safe_dump(exp))
    result = sweep.run_sweep(tmp_path / "mc.yaml", workdir=tmp_path / "work", name="mc-1", max_concurrent=1,
                             progress=lambda _: None)
    mlflow.set_tracking_uri(result.tracking_uri)
    assert _most_at_once(mlflow.search_runs(experiment_names=[result.name])) == 1
    assert _most_at_once(shared_sweep.runs) == 2
