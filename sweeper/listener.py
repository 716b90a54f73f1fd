"""The sweep's ear on Ray Tune: receives a method's trial events from the Tune callback (in the driver),
writes each trial's MLflow run (one per trial id: reopened on retry, replaced when --resume runs it again) and
prints one progress line per finished trial."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

from .metrics import DIVERGED
from .report.selection import hparams_json

if TYPE_CHECKING:
    from .tracking import RunWriter
    from .tuning.studies import Study

Progress = Callable[[str], None]

_HEAD = ("attack", "method", "trial_id", "phase", "run_status", "hparams", "error", "node_id", "n_seeds")


class Listener:
    """Receives trial events from the Tune callback (in the driver) and writes them to MLflow."""

    def __init__(self, tracker: RunWriter, parent_id: str, attack: str, method: str, tags: dict, trials: int,
                 progress: Progress, label: str | None = None, inputs: list | None = None,
                 mirror: Study | None = None, done: Callable[[list[dict]], None] | None = None,
                 on_complete: Callable[[str], None] | None = None):
        self.tracker, self.parent_id, self.attack, self.method = tracker, parent_id, attack, method
        self.label = label or attack  # progress lines name the cell: the attack, and its discovery level below 1
        self.tags, self.trials, self.progress = tags, trials, progress
        self.inputs = inputs or []  # the data sets every trial of this method sees (sweeper/inputs.py)
        self.mirror = mirror  # the method's Optuna study for optuna-dashboard (tuning/studies.py), or None
        self.done = done      # hears each finished trial's rows (the estimate of time left)
        self.on_complete = on_complete  # hears the method's name when its last trial has finished
        self.runs: dict[str, str] = {}
        self.hparams: dict[str, dict] = {}
        self.rows: dict[str, list[dict]] = {}
        self.status: dict[str, str] = {}
        self.errors: dict[str, str] = {}
        self.finished = 0
        self.started_at: dict[str, float] = {}
        self.nodes: dict[str, str] = {}    # trial -> the Ray node it (last) ran on
        self.retries: dict[str, int] = {}  # trial -> failed attempts Tune retried
        self.logged: set[str] = set()      # --resume: trials read back from MLflow, not yet seen by Tune

    def trial_started(self, trial_id: str, hparams: dict) -> None:
        self.started_at[trial_id] = time.perf_counter()
        if trial_id in self.runs and trial_id not in self.logged:  # a retry reopens its run, never a second one
            return
        if trial_id in self.logged:  # --resume: Tune starts a trial the interruption cut short again
            self.logged.discard(trial_id)
            if trial_id in self.status:  # it had finished after Tune last saved its state
                del self.status[trial_id]
                self.finished -= 1
            # A new run, not the old one reopened: MLflow cannot delete a metric, and the lost attempt's
            # checkpoints (written when it finished, or by the interruption's abort) would stay in the
            # run's history; one the new attempt does not reach (ASHA may stop it earlier) would read as
            # the run's last objective. The old run is deleted, so the trial still has exactly one.
            self.tracker.discard(self.runs.pop(trial_id))
        self._open(trial_id, hparams)

    def _open(self, trial_id: str, hparams: dict) -> None:
        self.started_at.setdefault(trial_id, time.perf_counter())
        self.hparams[trial_id], self.rows[trial_id] = hparams, []
        self.runs[trial_id] = self.tracker.start_child(
            self.parent_id, f"{self.method}-{trial_id}", hparams,
            {**self.tags, "method": self.method, "attack": self.attack, "trial_id": trial_id,
             "hparams": hparams_json(hparams)}, self.inputs)

    def restore(self, trial_id: str, run_id: str, hparams: dict, status: str, rows: list[dict] | None) -> None:
        """--resume: a trial the interrupted sweep logged. With its `rows` it had finished (it counts and
        its rows stay); without, it was cut short and Tune will start it again (or never, if Tune had not
        saved it yet: `orphans` lists those afterwards). It is not written to the Optuna mirror here: which
        restored trials stay is known only after tuning (`drop_unknown`), when phases.tune reconciles."""
        self.runs[trial_id], self.hparams[trial_id] = run_id, hparams
        self.logged.add(trial_id)
        self.started_at[trial_id] = time.perf_counter()
        if rows is None:
            self.rows[trial_id] = []
            return
        self.rows[trial_id] = [{k: v for k, v in r.items() if k not in _HEAD} for r in rows]
        self.status[trial_id] = status
        if status == "FAILED" and rows and rows[0].get("error"):
            self.errors[trial_id] = rows[0]["error"]
        self.nodes.update({trial_id: rows[0]["node_id"]} if rows and rows[0].get("node_id") else {})
        self.finished += 1

    def drop_unknown(self, known: set[str] | None) -> list[str]:
        """--resume: the runs of logged trials Tune did not run again and does not hold (`known`, None when
        Tune was not resumed): its saved state predates them and it ran new trials in their place. They
        leave the tables and the count; returns their run ids, for deletion."""
        gone = [t for t in self.logged if t not in self.status or (known is not None and t not in known)]
        for t in gone:
            if t in self.status:
                del self.status[t]
                self.finished -= 1
            self.rows.pop(t, None)
            self.logged.discard(t)
        return [self.runs.pop(t) for t in gone]

    def outcomes(self) -> list[dict]:
        """Every finished trial as the Optuna mirror takes it (once Tune is done: after `drop_unknown`)."""
        return [self.outcome(t) for t in self.status]

    def outcome(self, trial_id: str) -> dict:
        return {"trial_id": trial_id, "status": self.status[trial_id], "hparams": self.hparams[trial_id],
                "rows": self.rows.get(trial_id, []), "run_id": self.runs.get(trial_id),
                "error": self.errors.get(trial_id)}

    def trial_result(self, trial_id: str, metrics: dict) -> None:
        node = metrics.pop("ray/node_id", None)
        if node is not None and self.nodes.get(trial_id) != node:
            self.nodes[trial_id] = node
            self.tracker.tag(self.runs[trial_id], {"ray.node_id": node})
        self.rows[trial_id].append(metrics)
        self.tracker.log_checkpoint(self.runs[trial_id], metrics)

    def trial_restarted(self, trial_id: str, error: str, hparams: dict) -> None:
        """Tune runs a failed trial again from its start (no checkpoints: a trial is short): forget the
        lost attempt's rows and unwritten checkpoints, so the run's table, its metrics and the report hold
        one attempt, and the run says how many attempts failed and why.
        A trial whose actor died before it started (its node went away while Tune placed it) gets its
        run here: Tune reports the failure without ever reporting the start."""
        if trial_id not in self.runs:
            self._open(trial_id, hparams)
        self.rows[trial_id] = []
        self.tracker.drop_checkpoints(self.runs[trial_id])
        self.retries[trial_id] = self.retries.get(trial_id, 0) + 1
        self.tracker.tag(self.runs[trial_id], {"retries": self.retries[trial_id], "retry_reason": error})
        self.progress(f"[{self.label}/{self.method}] trial {trial_id} failed ({error}); retrying it "
                      f"(attempt {self.retries[trial_id] + 1})")

    def trial_finished(self, trial_id: str, status: str, error: str | None, hparams: dict) -> None:
        if trial_id not in self.runs:  # failed before it ever started: it still gets its (FAILED) run
            self._open(trial_id, hparams)
        rows = self.rows.get(trial_id, [])
        diverged = any(r.get("objective") == DIVERGED and not r.get("over_budget") for r in rows)
        tags = {"error": error} if error else {}
        if diverged:
            tags["diverged"] = "true"
        self.status[trial_id] = status
        if error:
            self.errors[trial_id] = error
        self.tracker.end_child(self.runs[trial_id], status, self._table(trial_id), tags)
        self.finished += 1
        if self.mirror is not None:  # in MLflow's writer thread, after the run's own writes
            self.tracker.later(self.mirror.record, self.outcome(trial_id))
        if self.done is not None:
            self.done(rows)
        self.progress(self._line(trial_id, status, error, rows))
        if self.on_complete is not None and self.finished == self.trials:
            self.on_complete(self.method)

    def _line(self, trial_id: str, status: str, error: str | None, rows: list[dict]) -> str:
        hp = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.hparams[trial_id].items())
        head = f"[{self.label}/{self.method}] {self.finished}/{self.trials} {hp}"
        secs = time.perf_counter() - self.started_at[trial_id]
        if status == "FAILED":
            return f"{head}: FAILED ({error}) after {secs:.1f}s"
        if not rows:
            return f"{head}: no checkpoint reached"
        last = rows[-1]
        if last.get("over_budget"):
            return f"{head}: over budget (its fixed cost exceeds every checkpoint)"
        how = "stopped early" if status == "KILLED" else "finished"
        return (f"{head}: {how} at budget {last['budget']:g}, objective {last['objective']:.3f}, "
                f"removal {last.get('removal', float('nan')):.3f}, acc/val {last.get('acc/val', float('nan')):.3f} "
                f"({secs:.1f}s)")

    def table(self) -> list[dict]:
        """Every checkpoint of every trial, with the trial's final status: the parent's `trials.csv`."""
        return [row for trial_id in self.rows for row in self._table(trial_id)]

    def _table(self, trial_id: str) -> list[dict]:
        """One trial's checkpoints with its head (also the child run's `checkpoints.csv`)."""
        head = {"attack": self.attack, "method": self.method, "trial_id": trial_id, "phase": "tune",
                "run_status": self.status.get(trial_id, "RUNNING"),
                "hparams": hparams_json(self.hparams[trial_id])}
        if trial_id in self.nodes:
            head["node_id"] = self.nodes[trial_id]
        if trial_id in self.errors:
            head["error"] = self.errors[trial_id]
        return [{**head, **r} for r in self.rows[trial_id]] or [head]  # a trial failed before any checkpoint still shows
