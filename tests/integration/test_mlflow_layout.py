"""The MLflow layout read back through MlflowClient: parent runs carry the experiment's settings, the chosen
configuration and the report's numbers per budget; the git commit under MLflow's own tag; the chosen model of
each (method, budget) on the first fresh seed loads with one call and reproduces its logged accuracy."""
import json

import pandas as pd
import pytest
from mlflow import MlflowClient

from shared_sweep import SHARED
from sweeper import config, load_model, provenance, sweep
from sweeper.metrics import accuracy
from sweeper.scenario import Scenario

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
