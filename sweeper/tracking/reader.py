"""Reading a sweep back from MLflow: plain functions over a `SweepRecord`, every search through one
pager. Used by `sweeper report`, `compare`, `sweeps`, `load_model` and --resume."""
from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pandas as pd
from mlflow import MlflowClient

from ..errors import SweeperError
from .store import first_line

if TYPE_CHECKING:
    from .record import SweepRecord

PARENT_TABLE = "trials.csv"
CHILD_TABLE = "checkpoints.csv"
EXPERIMENT_FILE = "experiment.json"
INTERRUPTED_TAG = "sweeper.interrupted"  # on runs an interruption (or a dead driver) closed: --resume redoes them
TEXT_COLUMNS = ("attack", "method", "trial_id", "source_trial", "phase", "run_status", "hparams", "error", "node_id")
PAGE = 1000  # MLflow's largest search page


def search(client: MlflowClient, experiment_id: str, filter_string: str = "") -> Iterator:
    """Every run of the experiment that matches, page after page (the client, not mlflow.search_runs:
    that one reads the process's global tracking URI)."""
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=PAGE, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def runs(record: SweepRecord, level: str | None = None) -> pd.DataFrame:
    """The sweep's runs (parents, trials, or both): run_id, status and every tag as `tags.NAME`."""
    flt = f"tags.level = '{level}'" if level else ""
    rows = [{"run_id": r.info.run_id, "status": r.info.status, **{f"tags.{k}": v for k, v in r.data.tags.items()}}
            for r in search(record.client, record.experiment_id, flt)]
    return pd.DataFrame(rows, columns=None if rows else ["run_id", "status"])


def logged_runs(record: SweepRecord, attack: str) -> pd.DataFrame:
    """The parents and children of `attack` as logged: run_id, status, level, method, trial_id, hparams,
    whether an interruption closed it, its discovery level's tag ('' for runs without one) (--resume reads
    this)."""
    found = runs(record)
    if found.empty or "tags.attack" not in found:
        return pd.DataFrame(columns=["run_id", "status", "level", "method", "trial_id", "hparams", "interrupted",
                                     "discovery"])
    found = found[found["tags.attack"] == attack]
    get = lambda col: found[col] if col in found else pd.Series("", index=found.index)  # noqa: E731
    return pd.DataFrame({"run_id": found["run_id"], "status": found["status"], "level": get("tags.level"),
                         "method": get("tags.method"), "trial_id": get("tags.trial_id").fillna(""),
                         "hparams": get("tags.hparams").fillna(""),
                         "interrupted": get(f"tags.{INTERRUPTED_TAG}").fillna("") == "true",
                         "discovery": get("tags.discovery").fillna("")})


def child_rows(record: SweepRecord, run_id: str) -> list[dict]:
    """A finished child's table, as it was logged."""
    text = read_text(record, run_id, CHILD_TABLE)
    if not text or not text.strip():
        return []
    return [{k: v for k, v in row.items() if not (isinstance(v, float) and v != v)}
            for row in read_table(text).to_dict("records")]


def read_rows(record: SweepRecord) -> pd.DataFrame:
    """Every checkpoint of every trial of the sweep, from the parents' tables (one download each)."""
    frames = []
    for run_id in runs(record, "parent")["run_id"]:
        text = read_text(record, run_id, PARENT_TABLE)
        if text and text.strip():
            frames.append(read_table(text))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(TEXT_COLUMNS))


def read_experiment(record: SweepRecord) -> dict:
    """The resolved experiment a parent run of this sweep logged (experiment.json), or {}."""
    for run_id in runs(record, "parent")["run_id"]:
        text = read_text(record, run_id, EXPERIMENT_FILE)
        if text:
            return json.loads(text)
    return {}


def read_text(record: SweepRecord, run_id: str, name: str) -> str | None:
    """A text artifact of a run; None only if the run has none of that name (an interrupted parent has
    no table yet). Any other failure is one line: a transient error must not read as "absent", which
    would, say, let --resume skip its check that the experiment is the same."""
    try:
        if name not in {a.path for a in record.client.list_artifacts(run_id)}:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            return Path(record.client.download_artifacts(run_id, name, tmp)).read_text()
    except Exception as e:  # noqa: BLE001 - MLflow, the file system or the network: one line either way
        raise SweeperError(f"cannot read {name} of run {run_id} from {record.uri}: {first_line(e)}") from None


def read_table(text: str) -> pd.DataFrame:
    """A checkpoint table as written: ids stay strings (Tune's `14095149` or `890922e8` would otherwise
    become numbers and no longer match the trial they name)."""
    return pd.read_csv(io.StringIO(text), dtype={c: str for c in TEXT_COLUMNS})
