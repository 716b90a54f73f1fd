"""The MLflow layout read back through MlflowClient: parent runs carry the experiment's settings, the chosen
configuration and the report's numbers per budget; the git commit under MLflow's own tag; the chosen model of
each (method, budget) on the first fresh seed loads with one call and reproduces its logged accuracy."""
import json

import pytest
import yaml
from mlflow import MlflowClient

from sweeper import load_model, sweep
from sweeper.metrics import accuracy
from sweeper.scenario import Scenario

EXP = {"name": "layout", "dataset": "digits", "model": {"name": "small_cnn", "width": 8},
       "attack": {"name": "gaussian", "fraction": 0.2, "eps": 1.0}, "recipe": {"epochs": 4},
       "methods": ["gd"], "budgets": [0.02, 0.04], "trials": 2, "seeds": [0], "fresh_seeds": [1, 2]}


@pytest.fixture(scope="module")
def swept(tmp_path_factory, ray_session):
    tmp = tmp_path_factory.mktemp("layout")
    (tmp / "layout.yaml").write_text(yaml.safe_dump(EXP))
    result = sweep.run_sweep(tmp / "layout.yaml", workdir=tmp / "wd", progress=lambda _: None)
    client = MlflowClient(result.tracking_uri)
    experiment = client.get_experiment_by_name("layout")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    return result, client, runs


def test_parents_carry_settings_chosen_configuration_and_report_numbers(swept):
    result, client, runs = swept
    gd = next(r for r in runs if r.data.tags.get("level") == "parent" and r.data.tags["method"] == "gd")
    p = gd.data.params
    assert p["attack.eps"] == "1.0" and p["attack.fraction"] == "0.2" and p["recipe.epochs"] == "4"
    assert p["model.width"] == "8" and json.loads(p["budgets"]) == [0.02, 0.04]
    row = result.summary[(result.summary.method == "gd") & (result.summary.budget == 0.04)].iloc[0]
    assert float(p["chosen.lr"]) == pytest.approx(json.loads(row.hparams)["lr"])
    history = {m.step: m.value for m in client.get_metric_history(gd.info.run_id, "removal")}
    assert set(history) == {20, 40} and history[40] == pytest.approx(row.removal)
    assert gd.data.tags["verdict.0.04"] == row.verdict


def test_runs_carry_mlflow_source_tags(swept):
    _, _, runs = swept
    rev = sweep._git_revision()  # None where the package is installed outside a checkout (CI)
    for r in runs:
        assert r.data.tags.get("mlflow.source.git.commit") == rev
        assert r.data.tags["mlflow.source.name"] == "sweeper run" and r.data.tags["mlflow.user"]


def test_the_chosen_model_loads_in_one_call_and_reproduces_its_logged_accuracy(swept):
    result, client, runs = swept
    model = load_model("layout", "gaussian", "gd", 0.04, workdir=result.workdir)
    fresh = next(r for r in runs if r.data.tags.get("phase") == "fresh" and r.data.tags.get("method") == "gd"
                 and r.data.tags.get("seed") == "1" and "0.04" in r.data.tags.get("selected_for", ""))
    logged = {m.step: m.value for m in client.get_metric_history(fresh.info.run_id, "acc/test")}[40]
    scenario = Scenario.from_dict(sweep.config.load(str(result.workdir.parent / "layout.yaml")).scenario.as_dict())
    assert accuracy(model, scenario.load_data().test) == pytest.approx(logged)
    with pytest.raises(sweep.SweeperError, match="no model logged"):
        load_model("layout", "gaussian", "gd", 0.03, workdir=result.workdir)
