"""A sweep's record: its MLflow experiment, reserved atomically under its own name, with its owner (the
driver's host, pid and start time), its status and the command that started it; and the store-wide
view of every sweep (statuses, an overview, sweeps whose driver died)."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import RunTag
from mlflow.exceptions import MlflowException

from .. import procs
from ..errors import SweeperError
from .reader import INTERRUPTED_TAG, search
from .store import artifact_location, check_server

STATUS_TAG = "sweeper.status"  # running -> finished | interrupted | failed; "died" when found dead later
COMMAND_TAG = "sweeper.command"  # the command line that started the sweep (JSON list), for its resume command
OWNER_TAG = "sweeper.owner"    # host/pid/start time of the driver, to tell a killed sweep from a live one
# MLflow 3's UI opens an experiment without this tag in its GenAI view (traces, latency): a sweep trains models,
# so it opens on the runs table instead (docs/architecture.md, Where users look).
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"


class SweepRecord:
    """One sweep in one store. `reserve` (a new sweep) or `attach` (--resume) make this process its owner;
    a record opened on an existing sweep only to read it needs neither."""

    def __init__(self, uri: str, sweep: str, workdir: Path):
        check_server(uri)
        self.uri, self.sweep, self.workdir = uri, sweep, Path(workdir).resolve()
        self.client = MlflowClient(tracking_uri=uri)
        self._experiment_id: str | None = None
        self.command: list[str] | None = None  # the command line that started the sweep, when one did

    def reserve(self, numbered: bool, command: list[str] | None = None) -> str:
        """Create the sweep's experiment now, under its own name: the store's unique constraint on names
        makes this atomic, so two runs started together can never share one sweep. `numbered`: take the
        next free name (quickstart-2, ...); otherwise a taken name is an error."""
        wanted, i = self.sweep, 1
        tags = {KIND_TAG: KIND, STATUS_TAG: "running", OWNER_TAG: json.dumps(procs.me(), sort_keys=True),
                **({COMMAND_TAG: json.dumps(command)} if command else {})}
        while True:
            name = wanted if i == 1 else f"{wanted}-{i}"
            try:
                self._experiment_id = self.client.create_experiment(
                    name, artifact_location=artifact_location(self.uri, self.workdir), tags=tags)
            except MlflowException as e:
                if e.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                if not numbered:
                    raise SweeperError(f"a sweep named {name!r} already exists in {self.uri}; choose another "
                                       "--name (or leave it out to get a numbered one)") from None
                i += 1
                continue
            self.sweep, self.command = name, command
            return name

    def attach(self) -> None:
        """Take over an existing sweep (--resume): this process becomes its owner and it runs again."""
        found = self._experiment()
        self._experiment_id = found.experiment_id
        self.command = json.loads(found.tags.get(COMMAND_TAG, "null"))
        self.client.set_experiment_tag(found.experiment_id, OWNER_TAG, json.dumps(procs.me(), sort_keys=True))
        self.client.set_experiment_tag(found.experiment_id, KIND_TAG, KIND)  # a sweep logged before the tag existed
        self.set_status("running")

    @property
    def experiment_id(self) -> str:
        """The sweep's experiment: the one `reserve` created or `attach` took over, else the existing one
        of this name. Never creates one: only `reserve` does, atomically."""
        if self._experiment_id is None:
            self._experiment_id = self._experiment().experiment_id
        return self._experiment_id

    def _experiment(self):
        found = self.client.get_experiment_by_name(self.sweep)
        if found is None:
            raise SweeperError(f"no sweep named {self.sweep!r} in {self.uri}")
        return found

    def set_status(self, status: str) -> None:
        self.client.set_experiment_tag(self.experiment_id, STATUS_TAG, status)

    def status(self) -> str:
        """running, finished, interrupted, failed or died (see close_dead_sweeps); '' before this tag existed."""
        experiment = self.client.get_experiment_by_name(self.sweep)
        return experiment.tags.get(STATUS_TAG, "") if experiment is not None else ""


def _experiments(client: MlflowClient, **kwargs) -> list:
    return [e for e in client.search_experiments(**kwargs) if e.name != "Default"]


def close_dead_sweeps(uri: str) -> list[tuple[str, int]]:
    """Sweeps still marked running whose driver process on this host is gone (SIGKILL, a crash): their
    RUNNING runs become FAILED with the reason, the sweep is tagged "died". Returns (sweep, runs closed).
    A sweep whose driver ran on another host is left alone: from here we cannot tell it is dead."""
    client = MlflowClient(tracking_uri=uri)
    closed = []
    for e in _experiments(client, filter_string=f"tags.`{STATUS_TAG}` = 'running'"):
        owner = json.loads(e.tags.get(OWNER_TAG, "{}"))
        if procs.alive(owner) is not False:
            continue
        reason = (f"the sweep's driver (pid {owner.get('pid')} on {owner.get('host')}) died without "
                  "closing this run; found by a later run in the same store")
        running = list(search(client, e.experiment_id, "attributes.status = 'RUNNING'"))
        for run in running:
            client.log_batch(run.info.run_id, tags=[RunTag("error", reason), RunTag(INTERRUPTED_TAG, "true")])
            client.set_terminated(run.info.run_id, "FAILED")
        client.set_experiment_tag(e.experiment_id, STATUS_TAG, "died")
        closed.append((e.name, len(running)))
    return closed


def sweep_statuses(uri: str) -> list[tuple[str, str]]:
    """(name, status) of every sweep in the store, newest first."""
    found = _experiments(MlflowClient(tracking_uri=uri), order_by=["creation_time DESC"])
    return [(e.name, e.tags.get(STATUS_TAG, "")) for e in found]


def sweeps(uri: str) -> list[str]:
    """Sweep names in the store, newest first."""
    return [name for name, _ in sweep_statuses(uri)]


def sweep_overview(uri: str) -> list[dict]:
    """Every sweep in the store, newest first: name, status, when it started (UTC), its driver, and how
    many tuning trials it logged. Read only."""
    client = MlflowClient(tracking_uri=uri)
    out = []
    for e in _experiments(client, order_by=["creation_time DESC"]):
        owner = json.loads(e.tags.get(OWNER_TAG, "{}"))
        trials = sum(1 for _ in search(client, e.experiment_id, "tags.level = 'trial' and tags.phase = 'tune'"))
        started = datetime.fromtimestamp(e.creation_time / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M")
        out.append({"sweep": e.name, "status": e.tags.get(STATUS_TAG, ""), "started_utc": started,
                    "driver": f"{owner['host']}:{owner['pid']}" if owner.get("pid") else "",
                    "tuning_trials": trials, "command": json.loads(e.tags.get(COMMAND_TAG, "null"))})
    return out
