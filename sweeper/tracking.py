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
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from . import procs
from .errors import SweeperError

# An unreachable server must fail fast, not after minutes of retries (STACK_NOTES).
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # progress is ours to print

from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

logging.getLogger("mlflow").setLevel(logging.WARNING)  # no database-migration chatter in the progress

SERVER_TIMEOUT_S = 5
PARENT_TABLE = "trials.csv"
CHILD_TABLE = "checkpoints.csv"
STATUS_TAG = "sweeper.status"  # running -> finished | interrupted | failed; "died" when found dead later
COMMAND_TAG = "sweeper.command"  # the command line that started the sweep (JSON list), for its resume command
OWNER_TAG = "sweeper.owner"    # host/pid/start time of the driver, to tell a killed sweep from a live one
STORE_SCHEMES = {"sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks"}  # MLflow 3.17's
TEXT_COLUMNS = ("attack", "method", "trial_id", "source_trial", "phase", "run_status", "hparams", "error", "node_id")
INTERRUPTED_TAG = "sweeper.interrupted"  # on runs an interruption (or a dead driver) closed: --resume redoes them


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


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0][:300] if lines else type(e).__name__


def sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def open_store(uri: str, workdir: Path) -> None:
    """Make sure the tracking store at `uri` exists and works, before Ray starts or anything is logged:
    a server that answers, a SQLite file that can be written (created atomically) and is not broken."""
    scheme = uri.split("://", 1)[0].split("+", 1)[0] if "://" in uri else ""
    if scheme not in STORE_SCHEMES:
        raise SweeperError(f"tracking URI {uri!r} is not one MLflow can store runs in; use sqlite:///PATH, "
                           "http(s)://HOST:PORT of an `mlflow server`, or a database URL (postgresql://, mysql://)")
    check_server(uri)
    path = sqlite_path(uri)
    if path is not None:
        _ensure_sqlite(path, workdir)
    try:
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as e:  # noqa: BLE001 - whatever MLflow raises, the user gets one line
        if "out-of-date database schema" in str(e):
            raise SweeperError(f"the MLflow store {uri} was written by another MLflow version: run `mlflow db "
                               f"upgrade {uri}` (after a backup) or pass another --tracking-uri") from None
        if path is not None:
            raise SweeperError(f"the MLflow store {path} is broken ({_first_line(e)}); it was probably left "
                               "half-written by an interrupted run: move it away or pass another --tracking-uri"
                               ) from None
        raise SweeperError(f"MLflow cannot use the tracking URI {uri!r} ({_first_line(e)})") from None


def _ensure_sqlite(path: Path, workdir: Path) -> None:
    folder = path.parent
    if not folder.is_dir():
        raise SweeperError(f"cannot create the MLflow store {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise SweeperError(f"cannot write the MLflow store {path}: permission denied")
    if not path.exists():
        try:
            _create_sqlite(path, (Path(workdir).resolve() / "artifacts").as_uri())
        except OSError as e:  # root passes os.access everywhere; the file system still says no
            raise SweeperError(f"cannot write the MLflow store {path}: {e.strerror or e}") from None


def _create_sqlite(path: Path, artifacts: str) -> None:
    """Build the schema (~10 s of migrations) in a private file, then publish it with a hard link, which
    fails if the name exists: an interrupted creation leaves no half-migrated store, and two runs
    starting together both end up on the one that was published first."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    _remove_abandoned(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.creating-{os.getpid()}-", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # as if created plainly (mkstemp makes it private)
    try:
        SqlAlchemyStore(f"sqlite:///{tmp}", artifacts).engine.dispose()
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another run published its store first: use that one
    finally:
        os.unlink(tmp)


def _remove_abandoned(path: Path) -> None:
    """Half-built stores of creators that were SIGKILLed (their pid is in the name and gone)."""
    for tmp in path.parent.glob(f".{path.name}.creating-*"):
        pid = tmp.name[len(f".{path.name}.creating-"):].split("-", 1)[0]
        if procs.alive({**procs.me(), "pid": pid, "started": ""}) is False:
            tmp.unlink(missing_ok=True)


def exists(uri: str, sweep: str) -> bool:
    return MlflowClient(tracking_uri=uri).get_experiment_by_name(sweep) is not None


def _step(budget: float) -> int:
    return int(round(budget * 1000))


class Tracker:
    def __init__(self, uri: str, sweep: str, workdir: Path):
        check_server(uri)
        self.uri, self.sweep, self.workdir = uri, sweep, Path(workdir).resolve()
        self.client = MlflowClient(tracking_uri=uri)
        self._experiment_id: str | None = None
        self.open_runs: set[str] = set()  # closed as KILLED/FAILED if the sweep is interrupted
        # A trial's checkpoint metrics and tags, written in one batch when it ends: one SQLite transaction per
        # trial instead of one per checkpoint (the driver's MLflow writes were ~10% of the quickstart's
        # CPU, on the cores its trials run on). A trial cut short is run again, so nothing is lost.
        self._pending: dict[str, tuple[list[Metric], dict]] = {}
        self.command: list[str] | None = None  # the command line that started the sweep, when one did

    def reserve(self, numbered: bool, command: list[str] | None = None) -> str:
        """Create the sweep's experiment now, under its own name: the store's unique constraint on names
        makes this atomic, so two runs started together can never share one sweep. `numbered`: take the
        next free name (quickstart-2, ...); otherwise a taken name is an error."""
        wanted, i = self.sweep, 1
        location = None if self.uri.startswith("http") else (self.workdir / "artifacts").as_uri()
        owner = procs.me()
        while True:
            name = wanted if i == 1 else f"{wanted}-{i}"
            try:
                self._experiment_id = self.client.create_experiment(
                    name, artifact_location=location,
                    tags={STATUS_TAG: "running", OWNER_TAG: json.dumps(owner, sort_keys=True),
                          **({COMMAND_TAG: json.dumps(command)} if command else {})})
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

    def set_status(self, status: str) -> None:
        self.client.set_experiment_tag(self.experiment_id, STATUS_TAG, status)

    def status(self) -> str:
        """running, finished, interrupted, failed or died (see close_dead_sweeps); '' before this tag existed."""
        experiment = self.client.get_experiment_by_name(self.sweep)
        return experiment.tags.get(STATUS_TAG, "") if experiment is not None else ""

    def abort(self, status: str, reason: str) -> None:
        """Close every run this tracker left open (an interruption or an error mid-sweep), with what it had."""
        for run_id in sorted(self.open_runs):
            self._flush(run_id, {"error": reason, INTERRUPTED_TAG: "true"})
            self.client.set_terminated(run_id, status)
        self.open_runs.clear()

    # -- resuming ----------------------------------------------------------------------------------
    def attach(self) -> None:
        """Take over an existing sweep (--resume): this process becomes its owner and it runs again."""
        found = self.client.get_experiment_by_name(self.sweep)
        if found is None:
            raise SweeperError(f"no sweep named {self.sweep!r} in {self.uri}")
        self._experiment_id = found.experiment_id
        self.command = json.loads(found.tags.get(COMMAND_TAG, "null"))
        self.client.set_experiment_tag(found.experiment_id, OWNER_TAG, json.dumps(procs.me(), sort_keys=True))
        self.set_status("running")

    def reopen(self, run_id: str) -> None:
        """A run an interruption closed, running again (its parent, or a trial Tune restarts)."""
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
        self.client.delete_run(run_id)
        self.open_runs.discard(run_id)

    def logged_runs(self, attack: str) -> pd.DataFrame:
        """The parents and children of `attack` as logged: run_id, status, level, method, trial_id, phase,
        whether an interruption closed it."""
        runs = self.runs()
        if runs.empty or "tags.attack" not in runs:
            return pd.DataFrame(columns=["run_id", "status", "level", "method", "trial_id", "interrupted"])
        runs = runs[runs["tags.attack"] == attack]
        get = lambda col: runs[col] if col in runs else pd.Series("", index=runs.index)  # noqa: E731
        return pd.DataFrame({"run_id": runs["run_id"], "status": runs["status"], "level": get("tags.level"),
                             "method": get("tags.method"), "trial_id": get("tags.trial_id").fillna(""),
                             "hparams": get("tags.hparams").fillna(""),
                             "interrupted": get(f"tags.{INTERRUPTED_TAG}").fillna("") == "true"})

    def child_rows(self, run_id: str) -> list[dict]:
        """A finished child's table, as it was logged."""
        text = self._read_text(run_id, CHILD_TABLE)
        if not text or not text.strip():
            return []
        table = read_table(text)
        return [{k: v for k, v in row.items() if not (isinstance(v, float) and v != v)}
                for row in table.to_dict("records")]

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
        self.open_runs.add(run.info.run_id)
        self.client.log_text(run.info.run_id, json.dumps(config, indent=1, default=str), "experiment.json")
        return run.info.run_id

    def start_child(self, parent_id: str, name: str, params: dict, tags: dict) -> str:
        run = self.client.create_run(self.experiment_id, run_name=name,
                                     tags={**tags, "mlflow.parentRunId": parent_id, "level": "trial"})
        self.open_runs.add(run.info.run_id)
        self._pending[run.info.run_id] = ([], {})
        self.client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
        return run.info.run_id

    def log_checkpoint(self, run_id: str, metrics: dict) -> None:
        """A checkpoint's metrics, stepped by budget; written with the run's end (end_child)."""
        now, step = int(time.time() * 1000), _step(metrics["budget"])
        self._pending.setdefault(run_id, ([], {}))[0].extend(
            Metric(k, float(v), now, step) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool))

    def drop_checkpoints(self, run_id: str) -> None:
        """Forget the checkpoints not yet written (a failed attempt Tune runs again from its start)."""
        self._pending.get(run_id, ([], {}))[0].clear()

    def _flush(self, run_id: str, tags: dict | None = None) -> None:
        metrics, pending_tags = self._pending.pop(run_id, ([], {}))
        all_tags = [RunTag(k, str(v)[:5000]) for k, v in {**pending_tags, **(tags or {})}.items()]
        for i in range(0, max(len(metrics), len(all_tags)), 1000):  # MLflow's batch limits: 1000 metrics
            self.client.log_batch(run_id, metrics=metrics[i:i + 1000], tags=all_tags[i:i + 1000] if i == 0 else [])

    def log_params(self, run_id: str, params: dict) -> None:
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(run_id, params=items[i:i + 100])

    def log_summary(self, run_id: str, metrics: list[tuple[str, float, float]], params: dict, tags: dict) -> None:
        """Report values on a parent: (name, value, budget) metrics stepped by budget, params, tags."""
        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(n, v, now, _step(b)) for n, v, b in metrics],
                              tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])
        if params:
            self.log_params(run_id, params)

    def log_file(self, run_id: str, path: Path, artifact_path: str) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def tag(self, run_id: str, tags: dict) -> None:
        if run_id in self._pending:  # an open trial's: written with its end
            self._pending.setdefault(run_id, ([], {}))[1].update(tags)
            return
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])

    def end_child(self, run_id: str, status: str, rows: list[dict], tags: dict | None = None) -> None:
        """status: FINISHED, KILLED (stopped early by the scheduler) or FAILED."""
        self._flush(run_id, tags)
        if rows:
            self.client.log_text(run_id, pd.DataFrame(rows).to_csv(index=False), CHILD_TABLE)
        self.client.set_terminated(run_id, status)
        self.open_runs.discard(run_id)

    def end_parent(self, run_id: str, rows: list[dict], status: str = "FINISHED", reason: str | None = None) -> None:
        self._flush(run_id)
        if rows:
            self.client.log_text(run_id, pd.DataFrame(rows).to_csv(index=False), PARENT_TABLE)
        if reason:
            self.client.set_tag(run_id, "error", reason)
        self.client.set_terminated(run_id, status)
        self.open_runs.discard(run_id)

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
            if text and text.strip():
                frames.append(read_table(text))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(TEXT_COLUMNS))

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


def read_table(text: str) -> pd.DataFrame:
    """A checkpoint table as written: ids stay strings (Tune's `14095149` or `890922e8` would otherwise
    become numbers and no longer match the trial they name)."""
    return pd.read_csv(io.StringIO(text), dtype={c: str for c in TEXT_COLUMNS})


def close_dead_sweeps(uri: str) -> list[tuple[str, int]]:
    """Sweeps still marked running whose driver process on this host is gone (SIGKILL, a crash): their
    RUNNING runs become FAILED with the reason, the sweep is tagged "died". Returns (sweep, runs closed).
    A sweep whose driver ran on another host is left alone: from here we cannot tell it is dead."""
    client = MlflowClient(tracking_uri=uri)
    closed = []
    for e in client.search_experiments(filter_string=f"tags.`{STATUS_TAG}` = 'running'"):
        owner = json.loads(e.tags.get(OWNER_TAG, "{}"))
        if procs.alive(owner) is not False:
            continue
        reason = (f"the sweep's driver (pid {owner.get('pid')} on {owner.get('host')}) died without "
                  "closing this run; found by a later run in the same store")
        n = 0
        for run in _runs_with_status(client, e.experiment_id, "RUNNING"):
            client.log_batch(run.info.run_id, tags=[RunTag("error", reason), RunTag(INTERRUPTED_TAG, "true")])
            client.set_terminated(run.info.run_id, "FAILED")
            n += 1
        client.set_experiment_tag(e.experiment_id, STATUS_TAG, "died")
        closed.append((e.name, n))
    return closed


def _runs_with_status(client: MlflowClient, experiment_id: str, status: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=f"attributes.status = '{status}'",
                                  max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def sweep_statuses(uri: str) -> list[tuple[str, str]]:
    """(name, status) of every sweep in the store, newest first."""
    found = MlflowClient(tracking_uri=uri).search_experiments(order_by=["creation_time DESC"])
    return [(e.name, e.tags.get(STATUS_TAG, "")) for e in found if e.name != "Default"]


def sweep_overview(uri: str) -> list[dict]:
    """Every sweep in the store, newest first: name, status, when it started (UTC), its driver, and how
    many tuning trials it logged. Read only."""
    client = MlflowClient(tracking_uri=uri)
    out = []
    for e in client.search_experiments(order_by=["creation_time DESC"]):
        if e.name == "Default":
            continue
        owner = json.loads(e.tags.get(OWNER_TAG, "{}"))
        trials, token = 0, None
        while True:
            page = client.search_runs([e.experiment_id], "tags.level = 'trial' and tags.phase = 'tune'",
                                      max_results=1000, page_token=token)
            trials, token = trials + len(page), page.token
            if not token:
                break
        started = datetime.fromtimestamp(e.creation_time / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M")
        out.append({"sweep": e.name, "status": e.tags.get(STATUS_TAG, ""), "started_utc": started,
                    "driver": f"{owner['host']}:{owner['pid']}" if owner.get("pid") else "",
                    "tuning_trials": trials, "command": json.loads(e.tags.get(COMMAND_TAG, "null"))})
    return out


def sweeps(uri: str) -> list[str]:
    """Sweep names in the store, newest first."""
    found = MlflowClient(tracking_uri=uri).search_experiments(order_by=["creation_time DESC"])
    return [e.name for e in found if e.name != "Default"]
