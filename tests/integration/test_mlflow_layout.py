"""The MLflow layout read back through MlflowClient: parent runs carry the experiment's settings, the chosen
configuration and the report's numbers per budget; the git commit under MLflow's own tag; the chosen model of
each (method, budget) on the first fresh seed loads with one call and reproduces its logged accuracy; each
method's Optuna study (for optuna-dashboard) holds its tuning runs."""
import json

import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from shared_sweep import SEARCHED, SHARED
from sweeper import config, load_model, provenance, sweep
from sweeper.metrics import accuracy
from sweeper.scenario import Scenario
from sweeper.tuning import studies

pytestmark = pytest.mark.slow  # reads the shared sweep (tests/conftest.py)


@pytest.fixture
def swept(shared_sweep):
    result = shared_sweep.result
    client = MlflowClient(result.tracking_uri)
    experiment = client.get_experiment_by_name(result.name)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    gaussian = [r for r in runs if r.data.tags.get("attack") == "gaussian"]
    return result, client, runs, gaussian


def test_parents_carry_settings_chosen_configuration_and_report_numbers(swept):
    result, client, _, runs = swept
    gd = next(r for r in runs if r.data.tags.get("level") == "parent" and r.data.tags["method"] == "gd")
    p = gd.data.params
    assert p["attack.eps"] == "1.0" and p["attack.fraction"] == "0.2" and p["recipe.epochs"] == str(SHARED["recipe"]["epochs"])
    assert p["model.width"] == "8" and json.loads(p["budgets"]) == [0.02, 0.04]
    s = result.summary
    row = s[(s.method == "gd") & (s.budget == 0.04) & (s.attack == "gaussian")].iloc[0]
    assert float(p["chosen.lr"]) == pytest.approx(json.loads(row.hparams)["lr"])
    history = {m.step: m.value for m in client.get_metric_history(gd.info.run_id, "removal")}
    assert set(history) == {20, 40} and history[40] == pytest.approx(row.removal)
    # two fresh seeds give no verdict, so no verdict tag (test_adaptive_fresh checks the tags of verdicts)
    assert pd.isna(row.verdict) and "verdict.0.04" not in gd.data.tags


def test_runs_carry_mlflow_source_tags(swept):
    _, _, runs, _ = swept
    rev = provenance.git_revision()  # None where the package is installed outside a checkout (CI)
    for r in runs:
        assert r.data.tags.get("mlflow.source.git.commit") == rev
        assert r.data.tags["mlflow.source.name"] == "sweeper run" and r.data.tags["mlflow.user"]


def test_the_chosen_model_loads_in_one_call_and_reproduces_its_logged_accuracy(swept, shared_sweep):
    result, client, _, runs = swept
    model = load_model(result.name, "gaussian", "gd", 0.04, workdir=result.workdir)
    fresh = next(r for r in runs if r.data.tags.get("phase") == "fresh" and r.data.tags.get("method") == "gd"
                 and r.data.tags.get("seed") == "1" and "0.04" in r.data.tags.get("selected_for", ""))
    logged = {m.step: m.value for m in client.get_metric_history(fresh.info.run_id, "acc/test")}[40]
    scenario = Scenario.from_dict(config.load(str(shared_sweep.experiment_file)).scenario.as_dict())  # gaussian's
    assert accuracy(model, scenario.load_data().test) == pytest.approx(logged)
    with pytest.raises(sweep.SweeperError, match="no model logged"):
        load_model(result.name, "gaussian", "gd", 0.03, workdir=result.workdir)


def test_each_methods_optuna_study_mirrors_its_tuning_runs(swept, shared_sweep):
    """optuna-dashboard's view (sweeper/tuning/studies.py): a study per (attack, method) holding each Tune trial
    once, as MLflow has it: its hyperparameters, its objective per budget step, its state (FINISHED -> COMPLETE,
    KILLED by ASHA -> PRUNED, FAILED or over budget -> FAIL)."""
    result, client, runs, _ = swept
    url = studies.default_url(result.workdir)
    assert any(f"optuna-dashboard {url}" in line for line in shared_sweep.lines)
    attacks = [a["name"] for a in SHARED["attack"]]
    names = {s.study_name for s in optuna.get_all_study_summaries(url) if s.study_name.startswith(f"{result.name}/")}
    assert names == {f"{result.name}/{a}/{m}" for a in attacks for m in SEARCHED}
    states = set()
    for attack in attacks:
        for method in SEARCHED:
            study = optuna.load_study(study_name=f"{result.name}/{attack}/{method}", storage=url)
            assert study.direction == optuna.study.StudyDirection.MAXIMIZE
            assert study.user_attrs["method"] == method and study.user_attrs["budgets"] == SHARED["budgets"]
            tuned = [r for r in runs if r.data.tags.get("phase") == "tune" and r.data.tags.get("attack") == attack
                     and r.data.tags.get("method") == method]
            held = {t.user_attrs["tune_trial_id"]: t for t in study.trials}
            assert len(held) == len(study.trials) == len(tuned) == SHARED["trials"]
            for run in tuned:
                t = held[run.data.tags["trial_id"]]
                assert t.user_attrs["mlflow_run_id"] == run.info.run_id
                assert {k: str(v) for k, v in t.params.items()} == run.data.params
                curve = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "objective")}
                over = run.data.metrics.get("over_budget") == 1
                expected = (TrialState.FAIL if run.info.status == "FAILED" or over else
                            TrialState.PRUNED if run.info.status == "KILLED" else TrialState.COMPLETE)
                assert t.state == expected, (method, run.info.status)
                states.add("over budget" if over else t.state.name)
                assert over == ("over_budget" in t.user_attrs)
                assert t.intermediate_values == ({} if over else curve)
                if expected != TrialState.FAIL:
                    assert t.value == run.data.metrics["objective"] == curve[max(curve)]
                    assert t.user_attrs["budget"] == max(curve) / 1000
    # gd's lr = -1 fails (shared_sweep.py); ssd's fixed cost exceeds both budgets; which ga trial ASHA stops
    # depends on which reaches the first rung first
    assert {"COMPLETE", "FAIL", "over budget"} <= states
