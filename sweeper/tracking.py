"""The MLflow edge (the only module that imports MLflow). Everything is written from the driver with
explicit run ids: experiment = sweep; a parent run per (attack, method); one child run per trial.

Layout a user finds in the MLflow UI: sweep -> parent run "gaussian/gd" -> child runs, one per Tune trial
(tags method, attack, trial_id, seed, phase), metrics stepped by checkpoint (step = budget in per-mille
of retraining cost), a `checkpoints.csv` table per child and `trials.csv` (all checkpoints of all its
children) per parent, which is what `sweeper report` reads back."""
from __future__ import annotations

import io
import json
import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd

from .errors import SweeperError

# An unreachable server must fail fast, not after minutes of retries (STACK_NOTES).
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # progress is ours to print

from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402

logging.getLogger("mlflow").setLevel(logging.WARNING)  # no database-migration chatter in the progress

SERVER_TIMEOUT_S = 5
PARENT_TABLE = "trials.csv"
CHILD_TABLE = "checkpoints.csv"


def default_uri(workdir: Path) -> str:
    return f"sqlite:///{Path(workdir).resolve() / 'mlflow.db'}"


def check_server(uri: str) -> None:
    """One clear error if a tracking server does not answer /health within a few seconds."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=SERVER_TIMEOUT_S) as r:
            if r.status != 200:
                raise SweeperError(f"MLflow server at {uri} answered /health with HTTP {r.status}")
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise SweeperError(f"MLflow server at {uri} did not answer within {SERVER_TIMEOUT_S} s ({reason})") from None


def _step(budget: float) -> int:
    return int(round(budget * 1000))


class Tracker:
    def __init__(self, uri: str, sweep: str, workdir: Path):
        check_server(uri)
        self.uri, self.sweep, self.workdir = uri, sweep, Path(workdir).resolve()
        self.client = MlflowClient(tracking_uri=uri)
        self._experiment_id: str | None = None

    # -- writing -----------------------------------------------------------------------------------
    @property
    def experiment_id(self) -> str:
        """Created on first use, so bad input found earlier leaves nothing in MLflow."""
        if self._experiment_id is None:
            found = self.client.get_experiment_by_name(self.sweep)
            if found is not None:
                self._experiment_id = found.experiment_id
            else:
                # Local backends: artifacts in the work directory, never the current directory.
                location = None if self.uri.startswith("http") else (self.workdir / "artifacts").as_uri()
                self._experiment_id = self.client.create_experiment(self.sweep, artifact_location=location)
        return self._experiment_id

    def start_parent(self, attack: str, method: str, tags: dict, config: dict) -> str:
        run = self.client.create_run(self.experiment_id, run_name=f"{attack}/{method}",
                                     tags={**tags, "attack": attack, "method": method, "level": "parent"})
        self.client.log_text(run.info.run_id, json.dumps(config, indent=1, default=str), "experiment.json")
        return run.info.run_id

    def start_child(self, parent_id: str, name: str, params: dict, tags: dict) -> str:
        run = self.client.create_run(self.experiment_id, run_name=name,
                                     tags={**tags, "mlflow.parentRunId": parent_id, "level": "trial"})
        self.client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
        return run.info.run_id

    def log_checkpoint(self, run_id: str, metrics: dict) -> None:
        now, step = int(time.time() * 1000), _step(metrics["budget"])
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()
                                                if isinstance(v, (int, float)) and not isinstance(v, bool)])

    def end_child(self, run_id: str, status: str, rows: list[dict], tags: dict | None = None) -> None:
        """status: FINISHED, KILLED (stopped early by the scheduler) or FAILED."""
        if tags:
            self.client.log_batch(run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])
        if rows:
            self.client.log_text(run_id, pd.DataFrame(rows).to_csv(index=False), CHILD_TABLE)
        self.client.set_terminated(run_id, status)

    def end_parent(self, run_id: str, rows: list[dict], status: str = "FINISHED") -> None:
        self.client.log_text(run_id, pd.DataFrame(rows).to_csv(index=False), PARENT_TABLE)
        self.client.set_terminated(run_id, status)

    def log_files(self, run_ids: list[str], folder: Path, artifact_path: str = "report") -> None:
        for run_id in run_ids:
            self.client.log_artifacts(run_id, str(folder), artifact_path)

    # -- reading -----------------------------------------------------------------------------------
    def runs(self, level: str | None = None) -> pd.DataFrame:
        experiment = self.client.get_experiment_by_name(self.sweep)
        if experiment is None:
            raise SweeperError(f"no sweep named {self.sweep!r} in {self.uri}")
        flt = f"tags.level = '{level}'" if level else ""
        runs, token = [], None
        while True:  # the client, not mlflow.search_runs: that one reads the global tracking URI
            page = self.client.search_runs([experiment.experiment_id], filter_string=flt, max_results=1000,
                                           page_token=token)
            runs += [{"run_id": r.info.run_id, "status": r.info.status,
                      **{f"tags.{k}": v for k, v in r.data.tags.items()}} for r in page]
            token = page.token
            if not token:
                return pd.DataFrame(runs, columns=["run_id", "status"] if not runs else None)

    def read_rows(self) -> pd.DataFrame:
        """Every checkpoint of every trial of the sweep, from the parents' tables (one download each)."""
        parents = self.runs("parent")
        frames = []
        for run_id in parents["run_id"]:
            text = self._read_text(run_id, PARENT_TABLE)
            if text:
                frames.append(pd.read_csv(io.StringIO(text)))
        if not frames:
            raise SweeperError(f"sweep {self.sweep!r} has no finished (attack, method) yet")
        return pd.concat(frames, ignore_index=True)

    def read_experiment(self) -> dict:
        """The resolved experiment a parent run of this sweep logged (experiment.json), or {}."""
        for run_id in self.runs("parent")["run_id"]:
            text = self._read_text(run_id, "experiment.json")
            if text:
                return json.loads(text)
        return {}

    def _read_text(self, run_id: str, name: str) -> str | None:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = self.client.download_artifacts(run_id, name, tmp)
            except Exception:  # an interrupted parent has no table yet
                return None
            return Path(path).read_text()


def sweeps(uri: str) -> list[str]:
    """Sweep names in the store, newest first."""
    found = MlflowClient(tracking_uri=uri).search_experiments(order_by=["creation_time DESC"])
    return [e.name for e in found if e.name != "Default"]
