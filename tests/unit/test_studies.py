"""The Optuna mirror (sweeper/tuning/studies.py) on a real SQLite storage, without Ray: Tune's trial outcomes
become COMPLETE / PRUNED / FAIL with one intermediate value per budget step, recording is idempotent by Tune
trial id, reconcile makes a study hold exactly the listener's finished trials, and optuna-dashboard reads it."""
from __future__ import annotations

import json

import optuna
import pytest
from optuna.trial import TrialState

from sweeper import config
from sweeper.errors import SweeperError
from sweeper.tuning import studies

EXP = config.load("quickstart", overrides=["methods=[gd]", "budgets=[0.02,0.04]"])


def trial(trial_id, status, lr, objectives=(), error=None, over=False):
    rows = [{"budget": b, "objective": o, "removal": 0.5} for b, o in zip(EXP.budgets, objectives)]
    if over:
        rows = [{"budget": EXP.budgets[-1], "objective": -10.0, "over_budget": 1.0}]
    return {"trial_id": trial_id, "status": status, "hparams": {"lr": lr}, "rows": rows, "run_id": f"run-{trial_id}",
            "error": error}


@pytest.fixture
def mirror(tmp_path):
    url = studies.default_url(tmp_path)
    lines = []
    return studies.StudyMirror(url, "quick", EXP, lines.append), url, lines


def load(url, name="quick/gaussian/gd"):
    return optuna.load_study(study_name=name, storage=url)


def test_tune_outcomes_become_optuna_states_with_a_value_per_budget_step(mirror):
    m, url, lines = mirror
    study = m.study("gaussian", "gaussian", "gd")
    study.record(trial("a", "FINISHED", 0.01, (0.2, 0.5)))
    study.record(trial("b", "KILLED", 0.02, (0.1,)))
    study.record(trial("c", "FAILED", 0.05, (), error="RuntimeError: CUDA out of memory"))
    study.record(trial("d", "FINISHED", 0.03, over=True))
    loaded = load(url)
    by = {t.user_attrs["tune_trial_id"]: t for t in loaded.trials}
    assert by["a"].state == TrialState.COMPLETE and by["a"].value == 0.5
    assert by["a"].intermediate_values == {20: 0.2, 40: 0.5} and by["a"].params == {"lr": 0.01}
    assert by["a"].user_attrs == {"tune_trial_id": "a", "mlflow_run_id": "run-a", "budget": 0.04}
    assert by["b"].state == TrialState.PRUNED and by["b"].value == 0.1 and by["b"].intermediate_values == {20: 0.1}
    assert by["c"].state == TrialState.FAIL and by["c"].value is None and "out of memory" in by["c"].user_attrs["error"]
    assert by["d"].state == TrialState.FAIL and by["d"].intermediate_values == {}  # over budget: measured nothing
    assert "over_budget" in by["d"].user_attrs
    assert loaded.best_trial.user_attrs["tune_trial_id"] == "a"  # a pruned trial's lower-budget value never wins
    assert loaded.direction == optuna.study.StudyDirection.MAXIMIZE
    assert loaded.user_attrs == {"sweep": "quick", "attack": "gaussian", "cell": "gaussian", "method": "gd",
                                 "metric": "objective", "budgets": [0.02, 0.04]}
    assert lines == []


def test_recording_a_trial_twice_keeps_one(mirror):
    m, url, _ = mirror
    m.study("gaussian", "gaussian", "gd").record(trial("a", "FINISHED", 0.01, (0.2, 0.5)))
    again = m.study("gaussian", "gaussian", "gd")  # a new handle on the same study, as a resumed driver's
    again.record(trial("a", "FINISHED", 0.01, (0.2, 0.5)))
    again.record(trial("a", "FINISHED", 0.01, (0.2, 0.5)))
    assert len(load(url).trials) == 1


def test_reconcile_drops_trials_no_longer_known_and_adds_missing_ones(mirror):
    m, url, _ = mirror
    study = m.study("gaussian", "gaussian", "gd")
    for t in (trial("a", "FINISHED", 0.01, (0.2, 0.5)), trial("b", "KILLED", 0.02, (0.1,))):
        study.record(t)
    # --resume: b was logged after Tune's last saved state (dropped), c never reached the mirror
    resumed = m.study("gaussian", "gaussian", "gd")
    resumed.reconcile([trial("a", "FINISHED", 0.01, (0.2, 0.5)), trial("c", "FINISHED", 0.03, (0.3, 0.4))])
    loaded = load(url)
    assert sorted(t.user_attrs["tune_trial_id"] for t in loaded.trials) == ["a", "c"]
    assert loaded.user_attrs["method"] == "gd"  # a rebuilt study keeps its attributes
    resumed.reconcile([trial("a", "FINISHED", 0.01, (0.2, 0.5)), trial("c", "KILLED", 0.03, (0.3,))])  # ran again
    assert {t.user_attrs["tune_trial_id"]: t.state for t in load(url).trials} == {"a": TrialState.COMPLETE,
                                                                                 "c": TrialState.PRUNED}


def test_reconcile_of_a_matching_study_writes_nothing(mirror):
    m, url, _ = mirror
    t = trial("a", "FINISHED", 0.01, (0.2, 0.5))
    m.study("gaussian", "gaussian", "gd").record(t)
    study_id = load(url)._study_id
    m.study("gaussian", "gaussian", "gd").reconcile([t])
    assert load(url)._study_id == study_id and len(load(url).trials) == 1  # not rebuilt


def test_a_new_sweep_replaces_a_study_an_earlier_one_of_its_name_left(tmp_path):
    url = studies.default_url(tmp_path)
    lines = []
    for trial_id in ("old", "new"):
        m = studies.StudyMirror(url, "quick", EXP, lines.append)
        m.study("gaussian", "gaussian", "gd").record(trial(trial_id, "FINISHED", 0.01, (0.2, 0.5)))
    assert [t.user_attrs["tune_trial_id"] for t in load(url).trials] == ["new"]
    assert len(lines) == 1 and "replaced" in lines[0]


def test_an_unusable_storage_is_one_clear_error_and_a_new_file_waits_for_the_first_trial(tmp_path):
    with pytest.raises(SweeperError, match="does not exist"):
        studies.check(f"sqlite:///{tmp_path}/missing/optuna.db")
    with pytest.raises(SweeperError, match="Optuna cannot use it"):
        studies.check("nosuchdb://host/x")
    (tmp_path / "broken.db").write_text("not a database")
    with pytest.raises(SweeperError, match="Optuna cannot use it"):
        studies.check(f"sqlite:///{tmp_path}/broken.db")
    studies.check(studies.default_url(tmp_path))
    assert not (tmp_path / "optuna.db").exists()  # a sweep refused for another reason leaves none
    mirror = studies.StudyMirror(studies.default_url(tmp_path), "quick", EXP, print)
    mirror.study("gaussian", "gaussian", "gd").record(trial("a", "FINISHED", 0.01, (0.2, 0.5)))
    assert (tmp_path / "optuna.db").exists()
    studies.check(studies.default_url(tmp_path))  # an existing storage passes


def _get(app, path: str) -> dict:
    status = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "localhost",
               "SERVER_PORT": "80", "wsgi.url_scheme": "http"}
    body = b"".join(app(environ, lambda s, headers, exc=None: status.append(s)))
    assert status == ["200 OK"], body[:300]
    return json.loads(body)


def test_optuna_dashboard_reads_the_studies(mirror):
    """The dashboard's own API (its WSGI app in-process, no server) on the mirror's storage."""
    dashboard = pytest.importorskip("optuna_dashboard")
    m, url, _ = mirror
    study = m.study("gaussian", "gaussian", "gd")
    study.record(trial("a", "FINISHED", 0.01, (0.2, 0.5)))
    study.record(trial("b", "KILLED", 0.02, (0.1,)))
    app = dashboard.wsgi(studies.open_storage(url))
    (summary,) = _get(app, "/api/studies")["study_summaries"]
    assert summary["study_name"] == "quick/gaussian/gd" and summary["directions"] == ["maximize"]
    detail = _get(app, f"/api/studies/{summary['study_id']}")
    assert [t["state"] for t in detail["trials"]] == ["Complete", "Pruned"]
    assert [v["step"] for v in detail["trials"][0]["intermediate_values"]] == [20, 40]


def test_a_storage_lost_mid_sweep_is_said_once_and_stops_nothing(tmp_path):
    """A write that fails mid-sweep never reaches Tune: one line when a study first fails, one when its
    reconcile gives it up; MLflow keeps every trial."""
    (tmp_path / "gone").mkdir()
    url = studies.default_url(tmp_path / "gone")
    studies.check(url)
    (tmp_path / "gone").rmdir()  # e.g. an unmounted disk
    lines = []
    study = studies.StudyMirror(url, "quick", EXP, lines.append).study("gaussian", "gaussian", "gd")
    study.record(trial("a", "FINISHED", 0.01, (0.2, 0.5)))
    study.record(trial("b", "FINISHED", 0.02, (0.2, 0.4)))
    study.reconcile([trial("a", "FINISHED", 0.01, (0.2, 0.5)), trial("b", "FINISHED", 0.02, (0.2, 0.4))])
    assert len(lines) == 2 and "could not add trial a" in lines[0] and "left out of" in lines[1], lines
