"""The runs one sweep writes, all from the driver with explicit run ids: a parent per (attack, method)
carrying the experiment and the report, a child per trial with its checkpoints and table."""
from __future__ import annotations

import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pandas as pd
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT
from mlflow.exceptions import MlflowException

from ..budget import step_of
from .reader import CHILD_TABLE, EXPERIMENT_FILE, INTERRUPTED_TAG, PARENT_TABLE, search
from .record import SweepRecord

MAX_TAG = 5000     # characters MLflow keeps of a tag value
MAX_PARAM = 6000   # ... of a param value
BATCH_METRICS = 1000  # MLflow's batch limits
BATCH_PARAMS = 100


def _tags(tags: dict) -> list[RunTag]:
    return [RunTag(k, str(v)[:MAX_TAG]) for k, v in tags.items()]


class RunWriter:
    """Opens, fills and closes the runs of the sweep `record` owns; remembers which are open so that an
    interruption can close them (`abort`).

    `background=True` (a sweep's writer): a trial's run is created at once (its id is needed), but its
    params, inputs and everything written at its end go to one writer thread, in order, so the driver goes
    back to Ray Tune's loop at once: a trial that reports, or a slot that waits for its next trial, no longer
    waits for SQLite (~0.1 s per trial here). Every other write, and `wait()`, first lets the thread finish
    what it holds, so nothing is written out of order and a write that failed is raised there."""

    def __init__(self, record: SweepRecord, background: bool = False):
        self.record, self.client = record, record.client
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="mlflow-writes") if background else None
        self._queued: list[Future] = []
        self.open_runs: set[str] = set()  # closed as KILLED/FAILED if the sweep is interrupted
        # A trial's checkpoint metrics and tags, written in one batch when it ends: one SQLite transaction per
        # trial instead of one per checkpoint (the driver's MLflow writes were ~10% of the quickstart's
        # CPU, on the cores its trials run on). A trial cut short is run again, so nothing is lost.
        self._pending: dict[str, tuple[list[Metric], dict]] = {}

    @property
    def sweep(self) -> str:
        return self.record.sweep

    # -- opening and closing -------------------------------------------------------------------------
    def start_parent(self, attack: str, method: str, tags: dict, config: dict, name: str | None = None) -> str:
        run = self.client.create_run(self.record.experiment_id, run_name=name or f"{attack}/{method}",
                                     tags={**tags, "attack": attack, "method": method, "level": "parent"})
        self.open_runs.add(run.info.run_id)
        self.client.log_text(run.info.run_id, json.dumps(config, indent=1, default=str), EXPERIMENT_FILE)
        return run.info.run_id

    def start_child(self, parent_id: str, name: str, params: dict, tags: dict, inputs: list | None = None) -> str:
        run = self.client.create_run(self.record.experiment_id, run_name=name,
                                     tags={**tags, "mlflow.parentRunId": parent_id, "level": "trial"})
        self.open_runs.add(run.info.run_id)
        self._pending[run.info.run_id] = ([], {})
        if tags.get("discovery"):  # a level's runs: filterable by parameter, as their parents
            params = {**params, "discovery": tags["discovery"]}
        self.later(self._fill, run.info.run_id, [Param(k, str(v)) for k, v in params.items()], inputs or [])
        return run.info.run_id

    def _fill(self, run_id: str, params: list[Param], inputs: list) -> None:
        self.client.log_batch(run_id, params=params)
        self._log_inputs(run_id, inputs)

    def log_inputs(self, run_id: str, inputs: list) -> None:
        """The data sets a run saw (sweeper.inputs.Input), as MLflow inputs with their context and sweeper's
        own digest: the runs table's Dataset column then names them."""
        self.wait()
        self._log_inputs(run_id, inputs)

    def _log_inputs(self, run_id: str, inputs: list) -> None:
        if not inputs:
            return
        self.client.log_inputs(run_id, datasets=[DatasetInput(
            Dataset(name=i.name, digest=i.digest, source_type="sweeper",
                    source=json.dumps({"base_entry": i.entry}), profile=json.dumps({"num_rows": i.rows})),
            [InputTag(MLFLOW_DATASET_CONTEXT, i.context)]) for i in inputs])

    def end_child(self, run_id: str, status: str, rows: list[dict], tags: dict | None = None) -> None:
        """status: FINISHED, KILLED (stopped early by the scheduler) or FAILED. Written by the writer thread
        when there is one."""
        metrics, pending_tags = self._pending.pop(run_id, ([], {}))
        table = pd.DataFrame(rows).to_csv(index=False) if rows else None
        ended = int(time.time() * 1000)  # the run's end is when the trial ended, not when the thread wrote it
        self.later(self._end_child, run_id, status, metrics, {**pending_tags, **(tags or {})}, table, ended)

    def _end_child(self, run_id: str, status: str, metrics: list[Metric], tags: dict, table: str | None,
                   ended: int) -> None:
        self._write(run_id, metrics, tags)
        if table is not None:
            self.client.log_text(run_id, table, CHILD_TABLE)
        self.client.set_terminated(run_id, status, end_time=ended)
        self.open_runs.discard(run_id)

    # -- the writer thread ---------------------------------------------------------------------------
    def later(self, write, *args) -> None:
        """`write(*args)` in the writer thread, after everything queued before (now, without one)."""
        if self._thread is None:
            write(*args)
            return
        self._queued = [f for f in self._queued if not f.done() or f.exception() is not None]
        self._queued.append(self._thread.submit(write, *args))

    def wait(self) -> None:
        """Every queued write done; the first one that failed is raised."""
        queued, self._queued = self._queued, []
        for future in queued:
            future.result()

    def close(self) -> None:
        """The writer thread ends (once what it holds is written)."""
        if self._thread is not None:
            self._thread.shutdown(wait=True)

    def end_parent(self, run_id: str, rows: list[dict], status: str = "FINISHED", reason: str | None = None) -> None:
        self.wait()
        self._flush(run_id)
        if rows:
            self.client.log_text(run_id, pd.DataFrame(rows).to_csv(index=False), PARENT_TABLE)
        if reason:
            self.client.set_tag(run_id, "error", reason)
        self.client.set_terminated(run_id, status)
        self.open_runs.discard(run_id)

    def abort(self, status: str, reason: str) -> None:
        """Close every run left open (an interruption or an error mid-sweep), with what it had. Also the
        sweep's RUNNING runs this writer never registered: a Ctrl-C that lands inside `start_child`, after
        MLflow created the run and before `open_runs` holds it, would otherwise leave one RUNNING for good.
        The writer thread finishes what it holds first (a write of it that failed leaves its run open: closed
        here)."""
        try:
            self.wait()
        except Exception:  # noqa: BLE001 - the sweep is stopping on its own error; close what can be closed
            pass
        stray = {r.info.run_id for r in search(self.client, self.record.experiment_id, "attributes.status = 'RUNNING'")}
        for run_id in sorted(self.open_runs | stray):
            self._flush(run_id, {"error": reason, INTERRUPTED_TAG: "true"})
            self.client.set_terminated(run_id, status)
        self.open_runs.clear()

    # -- resuming ----------------------------------------------------------------------------------
    def reopen(self, run_id: str) -> None:
        """A run an interruption closed, running again (its parent, or a trial Tune restarts)."""
        self.wait()
        self.client.update_run(run_id, status="RUNNING")
        self._pending.setdefault(run_id, ([], {}))
        for tag in ("error", INTERRUPTED_TAG):
            try:
                self.client.delete_tag(run_id, tag)
            except MlflowException:
                pass  # never set
        self.open_runs.add(run_id)

    def discard(self, run_id: str) -> None:
        """Delete a run that never finished and will be redone under a new run, so no trial is logged twice."""
        self.wait()
        self.client.delete_run(run_id)
        self.open_runs.discard(run_id)

    # -- filling -----------------------------------------------------------------------------------
    def log_checkpoint(self, run_id: str, metrics: dict) -> None:
        """A checkpoint's metrics, stepped by budget; written with the run's end (end_child)."""
        now, step = int(time.time() * 1000), step_of(metrics["budget"])
        self._pending.setdefault(run_id, ([], {}))[0].extend(
            Metric(k, float(v), now, step) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool))

    def drop_checkpoints(self, run_id: str) -> None:
        """Forget the checkpoints not yet written (a failed attempt Tune runs again from its start)."""
        self._pending.get(run_id, ([], {}))[0].clear()

    def tag(self, run_id: str, tags: dict) -> None:
        if run_id in self._pending:  # an open trial's: written with its end
            self._pending[run_id][1].update(tags)
            return
        self.wait()
        self.client.log_batch(run_id, tags=_tags(tags))

    def log_params(self, run_id: str, params: dict) -> None:
        self.wait()
        items = [Param(k, str(v)[:MAX_PARAM]) for k, v in params.items()]
        for i in range(0, len(items), BATCH_PARAMS):
            self.client.log_batch(run_id, params=items[i:i + BATCH_PARAMS])

    def log_summary(self, run_id: str, metrics: list[tuple[str, float, float]], params: dict, tags: dict) -> None:
        """Report values on a parent: (name, value, budget) metrics stepped by budget, params, tags."""
        self.wait()
        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(n, v, now, step_of(b)) for n, v, b in metrics], tags=_tags(tags))
        if params:
            self.log_params(run_id, params)

    def log_file(self, run_id: str, path: Path, artifact_path: str) -> None:
        self.wait()
        self.client.log_artifact(run_id, str(path), artifact_path)

    def log_files(self, run_ids: list[str], folder: Path, artifact_path: str = "report") -> None:
        self.wait()
        for run_id in run_ids:
            self.client.log_artifacts(run_id, str(folder), artifact_path)

    def _flush(self, run_id: str, tags: dict | None = None) -> None:
        metrics, pending_tags = self._pending.pop(run_id, ([], {}))
        self._write(run_id, metrics, {**pending_tags, **(tags or {})})

    def _write(self, run_id: str, metrics: list[Metric], tags: dict) -> None:
        all_tags = _tags(tags)
        for i in range(0, max(len(metrics), len(all_tags)), BATCH_METRICS):
            self.client.log_batch(run_id, metrics=metrics[i:i + BATCH_METRICS],
                                  tags=all_tags[i:i + BATCH_METRICS] if i == 0 else [])
