"""--resume: a sweep whose driver was SIGKILLed mid-tuning, continued, ends with the same trials, MLflow runs
and report rows as an uninterrupted run of the same experiment, and no trial logged twice."""
import signal
import subprocess

import optuna
import pandas as pd
import pytest
from helpers import SWEEPER
from mlflow import MlflowClient
from test_interruptions import Sweep, sweep_status

from sweeper import tracking
from sweeper.tuning import studies

pytestmark = pytest.mark.slow

EXP = {"name": "res", "dataset": "digits", "model": {"name": "small_cnn", "width": 8},
       "attack": {"name": "gaussian", "fraction": 0.2, "eps": 1.0}, "recipe": {"epochs": 4},
       # three methods, so that the kill (during ga) leaves one not yet started
       "methods": ["gd", "ga", "ngd"], "budgets": [0.02, 0.04], "trials": 3, "seeds": [0],
       "fresh_seeds": [1, 2]}


def trials(wd, name) -> pd.DataFrame:
    client = MlflowClient(tracking.default_uri(wd))
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    return pd.DataFrame([{"status": r.info.status, "level": r.data.tags.get("level"), "name": r.info.run_name,
                          "method": r.data.tags.get("method"), "phase": r.data.tags.get("phase"),
                          "trial_id": r.data.tags.get("trial_id"), "objective": r.data.metrics.get("objective"),
                          "params": dict(r.data.params)} for r in runs])


def assert_studies_match(wd, name: str, tuned: pd.DataFrame) -> None:
    """Each method's Optuna study (optuna-dashboard's view) holds each tuning run once, in the run's state:
    none of the trials the killed driver mirrored after Tune's last saved state, none twice."""
    for method in EXP["methods"]:
        study = optuna.load_study(study_name=f"{name}/gaussian/{method}", storage=studies.default_url(wd))
        held = [t.user_attrs["tune_trial_id"] for t in study.trials]
        mine = tuned[tuned.method == method]
        assert len(held) == len(set(held)) == len(mine) == EXP["trials"], (method, held)
        assert set(held) == set(mine.trial_id)
        state = {"FINISHED": "COMPLETE", "KILLED": "PRUNED", "FAILED": "FAIL"}
        assert ({t.user_attrs["tune_trial_id"]: t.state.name for t in study.trials}
                == {r.trial_id: state[r.status] for r in mine.itertuples()})
        logged = {r.trial_id: r for r in mine.itertuples()}
        for t in study.trials:  # values and parameters as MLflow holds them (its last objective: the largest budget)
            run = logged[t.user_attrs["tune_trial_id"]]
            assert {k: float(v) for k, v in t.params.items()} == pytest.approx({k: float(run.params[k]) for k in t.params})
            if t.state.name in ("COMPLETE", "PRUNED"):
                assert t.value == pytest.approx(run.objective)


def summary(wd, name) -> list[tuple]:
    s = pd.read_csv(wd / "report" / name / "summary.csv")
    return sorted(map(tuple, s[["attack", "method", "budget", "status"]].astype(str).values.tolist()))


def test_a_killed_sweep_resumes_to_what_an_uninterrupted_one_gives(tmp_path):
    calm_wd, wd = tmp_path / "calm", tmp_path / "wd"
    calm = Sweep(calm_wd, experiment=EXP)  # runs alongside the rest (own work dir and Ray) until compared
    killed = Sweep(wd, experiment=EXP)
    killed.wait_for("[gaussian/ga] 1/3")  # gd's trials are done, ga's are under way, ngd's not started
    killed.proc.send_signal(signal.SIGKILL)
    killed.finish()

    exp = next(tmp_path.glob("wd-*.yaml"))
    nothing = subprocess.run([SWEEPER, "run", str(exp), "--workdir", str(wd), "--resume", "nope"],
                             capture_output=True, text=True, timeout=300)
    assert nothing.returncode == 2 and "no sweep of that name" in nothing.stderr

    resumed = Sweep(wd, "--resume", experiment=EXP)
    assert resumed.finish() == 0, "\n".join(resumed.lines[-30:])
    assert calm.finish() == 0, "\n".join(calm.lines[-20:])
    assert any("resuming sweep res" in ln for ln in resumed.lines)
    assert sweep_status(wd, "res") == "finished"

    before, after = trials(calm_wd, "res"), trials(wd, "res")
    assert not (after.status == "RUNNING").any()
    tuned = after[(after.level == "trial") & (after.phase == "tune")]
    assert tuned.trial_id.is_unique  # no trial logged twice
    assert_studies_match(wd, "res", tuned)
    for frame in (before, after):
        frame["key"] = frame.level + "/" + frame.method.fillna("") + "/" + frame.phase.fillna("")
    assert before.key.value_counts().to_dict() == after.key.value_counts().to_dict()
    assert summary(wd, "res") == summary(calm_wd, "res")

    again = Sweep(wd, "--resume", "res", experiment=EXP)  # a finished sweep: only its report is rebuilt
    assert again.finish() == 0
    assert any("rebuilding its report only" in ln for ln in again.lines)
    assert len(trials(wd, "res")) == len(after)
