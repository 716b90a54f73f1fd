"""Nothing wrong, nothing lost (slow part, real `sweeper run` subprocesses on embedded Rays): Ctrl-C
during tuning, a SIGKILLed driver, two runs started together in one work directory (a stale Ray cluster
record on the machine: test_quickstart_all_methods.py)."""
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import SWEEPER
import yaml
from mlflow import MlflowClient

from sweeper import readback, tracking

pytestmark = pytest.mark.slow

TINY = {"name": "tiny", "dataset": "digits", "model": {"name": "small_cnn", "width": 8},
        "attack": {"name": "gaussian", "fraction": 0.2, "eps": 1.0}, "recipe": {"epochs": 4},
        "methods": ["gd", "ga"], "budgets": [0.02, 0.04], "trials": 2, "seeds": [0],
        "fresh_seeds": []}  # what is interrupted here is tuning (test_resume.py resumes through fresh seeds)


class Sweep:
    """`sweeper run` in a subprocess with its own Ray temp dir, its output collected line by line."""

    def __init__(self, wd: Path, *args: str, experiment: dict | None = None, env: dict | None = None):
        exp = wd.parent / f"{wd.name}-{len(list(wd.parent.glob('*.yaml')))}.yaml"
        exp.write_text(yaml.safe_dump(experiment or TINY))
        self.ray_tmp = tempfile.mkdtemp(prefix="rt-", dir="/tmp")  # short: Ray's socket paths are limited
        full_env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
                    "RAY_TMPDIR": self.ray_tmp, **(env or {})}
        # SIGINT as a terminal gives it: a shell that runs CI in the background (`cmd &`) ignores SIGINT, and
        # a child that starts with it ignored never raises KeyboardInterrupt (the SIGINT test saw exit 0)
        self.proc = subprocess.Popen([SWEEPER, "run", str(exp), "--workdir", str(wd),
                                      *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=full_env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, fragment: str, timeout: float = 300) -> None:
        deadline = time.time() + timeout
        while not any(fragment in ln for ln in self.lines):
            assert self.proc.poll() is None, "\n".join(self.lines[-30:])
            assert time.time() < deadline, f"no line with {fragment!r}:\n" + "\n".join(self.lines[-30:])
            time.sleep(0.05)

    def finish(self, timeout: float = 600) -> int:
        code = self.proc.wait(timeout=timeout)
        time.sleep(0.5)
        # Whatever Ray left of a killed driver (its processes carry the temp dir in their command lines).
        subprocess.run(["pkill", "-9", "-f", self.ray_tmp], check=False)
        return code


def runs_of(wd: Path, name: str) -> pd.DataFrame:
    client = MlflowClient(tracking.default_uri(wd))
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    return pd.DataFrame([{"status": r.info.status, "level": r.data.tags.get("level"),
                          "method": r.data.tags.get("method"), "phase": r.data.tags.get("phase"),
                          "error": r.data.tags.get("error", "")} for r in runs])


def sweep_status(wd: Path, name: str) -> str:
    return tracking.SweepRecord(tracking.default_uri(wd), name, wd).status()


def cli(wd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SWEEPER, *args, "--workdir", str(wd)], capture_output=True,
                          text=True, timeout=300)


# A method that takes its time: gradient descent after a 2-second sleep. With built-in methods on this tiny
# scenario a trial takes 0.1 s, and tuning could finish before the signal lands: a race, not an
# interruption. With this one, when the first gd trial reports, slow_gd's 4 trials (2 s each, 2 slots) are at
# least 2 s from done.
SLOW = ("'gd after a sleep: keeps tuning under way long enough to be interrupted.'\n"
        "import time\n\nfrom sweeper.methods import gd\n\n\n"
        "def unlearn(model, data, budget, *, lr=0.01):\n    time.sleep(2.0)\n"
        "    return gd.unlearn(model, data, budget, lr=lr)\n")


def test_sigint_during_tuning_stops_the_sweep_and_never_looks_finished(tmp_path):
    wd = tmp_path / "wd"
    (tmp_path / "slow_gd.py").write_text(SLOW)
    (tmp_path / "slow_gd.yaml").write_text("params:\n  lr: {low: 1.0e-3, high: 1.0e-1, log: true}\n")
    exp = {**TINY, "methods": ["gd", "slow_gd"], "plugins": [str(tmp_path / "slow_gd.py")], "trials": 4,
           "budgets": [0.02, 0.04], "fresh_seeds": [1, 2]}
    run = Sweep(wd, experiment=exp)
    run.wait_for("[gaussian/gd] 1/4")
    run.proc.send_signal(signal.SIGINT)
    assert run.finish(timeout=120) == 130, "\n".join(run.lines[-20:])
    assert not (wd / "report" / "tiny").exists()  # no report that could pass for a finished one
    runs = runs_of(wd, "tiny")
    assert "RUNNING" not in set(runs.status) and "FINISHED" not in set(runs[runs.level == "parent"].status)
    assert (runs[runs.level == "parent"].status == "KILLED").all()
    tune = runs[(runs.level == "trial") & (runs.phase == "tune")]
    assert len(tune[tune.method.isin(["gd", "slow_gd"])]) < 8  # stopped during tuning (2 methods x 4 trials planned)
    # Trials in flight when Ctrl-C came (there may be none at that instant) are KILLED as interrupted.
    assert (runs[runs.error.str.contains("interrupted")].status == "KILLED").all()
    assert sweep_status(wd, "tiny") == "interrupted"
    assert any(f"--workdir {wd} --resume tiny` continues it" in ln for ln in run.lines), "\n".join(run.lines[-5:])
    listed = cli(wd, "sweeps")
    assert listed.returncode == 0 and f"--workdir {wd} --resume tiny" in listed.stdout, listed.stdout + listed.stderr
    rebuilt = cli(wd, "report")
    assert rebuilt.returncode == 0, rebuilt.stderr
    summary = pd.read_csv(wd / "report" / "tiny" / "summary.csv")
    assert {(m, b) for m, b in zip(summary.method, summary.budget) if m not in ("none", "retrain")} == \
        {(m, b) for m in ("gd", "slow_gd") for b in exp["budgets"]}  # every configured row, none silently missing
    assert "PARTIAL: interrupted" in (wd / "report" / "tiny" / "report.html").read_text()
    assert summary[summary.method.isin(["gd", "slow_gd"])].removal.isna().all()  # no fresh seeds ran: no numbers
    # Ctrl-C leaves it resumable: --resume finishes it, each of the 8 planned trials logged once
    resumed = Sweep(wd, "--resume", experiment=exp)
    assert resumed.finish() == 0, "\n".join(resumed.lines[-30:])
    assert sweep_status(wd, "tiny") == "finished"
    client = MlflowClient(tracking.default_uri(wd))
    done = client.search_runs([client.get_experiment_by_name("tiny").experiment_id], max_results=1000,
                              filter_string="tags.level = 'trial' and tags.phase = 'tune'")
    ids = [r.data.tags["trial_id"] for r in done if r.data.tags["method"] in ("gd", "slow_gd")]
    assert len(ids) == len(set(ids)) == 8 and all(r.info.status != "RUNNING" for r in done)


def test_a_killed_sweep_is_closed_by_the_next_run(tmp_path):
    wd = tmp_path / "wd"
    run = Sweep(wd)
    run.wait_for("[gaussian/gd] 1/2")
    run.proc.kill()
    assert run.finish(timeout=60) == -signal.SIGKILL
    assert "RUNNING" in set(runs_of(wd, "tiny").status)  # what SIGKILL leaves
    second = Sweep(wd, experiment={**TINY, "methods": ["gd"], "trials": 1})
    assert second.finish() == 0, "\n".join(second.lines[-20:])
    assert any("sweep tiny: its driver died earlier" in ln for ln in second.lines)
    runs = runs_of(wd, "tiny")
    assert "RUNNING" not in set(runs.status) and sweep_status(wd, "tiny") == "died"
    assert runs[runs.status == "FAILED"].error.str.contains("died without closing this run").all()
    assert sweep_status(wd, "tiny-2") == "finished"
    assert cli(wd, "report", "--sweep", "tiny").returncode == 0
    assert "PARTIAL: its driver was killed" in (wd / "report" / "tiny" / "report.html").read_text()
    compared = subprocess.run([SWEEPER, "compare", "tiny", "tiny-2", "--workdir", str(wd)],
                              capture_output=True, text=True, timeout=300)
    assert compared.returncode == 0 and "tiny-2:status" in compared.stdout, compared.stderr


def test_two_runs_started_together_are_two_separate_sweeps(tmp_path):
    wd = tmp_path / "wd"  # fresh: both race to create the MLflow store and the base models too
    runs = [Sweep(wd), Sweep(wd)]
    assert [r.finish() for r in runs] == [0, 0], "\n".join(runs[0].lines[-15:] + runs[1].lines[-15:])
    assert sorted(tracking.sweeps(tracking.default_uri(wd))) == ["tiny", "tiny-2"]
    for name in ("tiny", "tiny-2"):
        r = runs_of(wd, name)
        assert sorted(r[r.level == "parent"].method) == ["ga", "gd", "none", "retrain"]
        tune = r[(r.level == "trial") & (r.phase == "tune") & r.method.isin(["gd", "ga"])]
        assert tune.groupby("method").size().to_dict() == {"ga": 2, "gd": 2}
        live = pd.read_csv(wd / "report" / name / "summary.csv")
        assert (live[live.budget == 0.02].set_index("method").n_trials[["gd", "ga"]] == 2).all()  # not doubled
        rebuilt = readback.rebuild_report(wd, name).summary
        pd.testing.assert_frame_equal(rebuilt.reset_index(drop=True), live, check_dtype=False)
