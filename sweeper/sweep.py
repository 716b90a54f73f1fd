"""A sweep end to end: validate everything first, then base models, references, one tuned study per
(attack, method), MLflow logging from the driver, and the report. Ray and MLflow are reached only
through `tuning` and `tracking`."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Callable

import pandas as pd

from . import config, report
from . import storage as store
from .config import Experiment
from .errors import SweeperError
from .metrics import DIVERGED

Progress = Callable[[str], None]


@dataclass
class SweepResult:
    name: str
    workdir: Path
    tracking_uri: str
    summary: pd.DataFrame
    report_dir: Path


def prepare_workdir(workdir: str | os.PathLike) -> Path:
    path = Path(workdir).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise SweeperError(f"work directory {path} is a file")
    try:
        path.mkdir(parents=True, exist_ok=True)
        # a name of its own: two runs started together in one directory must not delete each other's probe
        with tempfile.NamedTemporaryFile(dir=path, prefix=".sweeper-write-probe-"):
            pass
    except OSError as e:
        raise SweeperError(f"work directory {path} is not writable ({e.strerror or e})") from None
    return path




def _storage_choice(storage, exp: Experiment):
    """--storage, else $SWEEPER_STORAGE, else the experiment's `storage:` (None: the work directory)."""
    if storage is not None:
        return storage
    return os.environ.get("SWEEPER_STORAGE") or exp.storage


def prepare_storage(storage: str | os.PathLike | None, wd: Path, probe: bool = True) -> Path | str:
    """Where base models (`base/`), Ray Tune's records (`ray/`) and chosen models (`models/`) live: the work
    directory by default, a folder every node sees at the same path (an NFS/EFS mount, `file:///shared/...`),
    or an object store (`s3://bucket/prefix`, `gs://...`; see sweeper/storage.py) for a multi-node cluster,
    whose trials must never read the driver's disk. Checked writable before anything starts."""
    if storage is None or str(storage) == "":
        return wd
    text = str(storage)
    if store.is_remote(text):
        if probe:  # not for --dry-run, which writes nothing (it reads the store's manifests all the same)
            store.probe(text)
        return text
    if "://" in text and not text.startswith("file://"):
        raise SweeperError(f"--storage {text}: unknown scheme; use a path, file:///path (a folder every node "
                           "sees), s3://bucket/prefix or gs://bucket/prefix")
    path = Path(text.removeprefix("file://")).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    if path.exists() and not path.is_dir():
        raise SweeperError(f"--storage {path} is a file, not a folder")
    probe_dir = path
    while not probe_dir.exists():  # check writability at the nearest existing ancestor: create nothing yet
        probe_dir = probe_dir.parent
    if not os.access(probe_dir, os.W_OK | os.X_OK):
        raise SweeperError(f"--storage {path} is not writable")
    return path.resolve() if path.exists() else path


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("sweeper", "torch", "ray", "mlflow", "optuna"):
        try:
            out[f"version.{pkg}"] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _git_revision() -> str | None:
    here = Path(__file__).resolve().parent.parent
    if not (here / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def scenario_hash(scenario, seeds) -> str:
    payload = json.dumps({"scenario": scenario.as_dict(), "seeds": list(seeds)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


_HEAD = ("attack", "method", "trial_id", "phase", "run_status", "hparams", "error", "node_id", "n_seeds")


class Listener:
    """Receives trial events from the Tune callback (in the driver) and writes them to MLflow."""

    def __init__(self, tracker, parent_id: str, attack: str, method: str, tags: dict, trials: int,
                 progress: Progress):
        self.tracker, self.parent_id, self.attack, self.method = tracker, parent_id, attack, method
        self.tags, self.trials, self.progress = tags, trials, progress
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
        if trial_id in self.runs:  # a retried or restored trial reopens its run, never a second one
            if trial_id in self.logged:  # --resume: Tune starts a trial the interruption cut short again
                self.logged.discard(trial_id)
                if trial_id in self.status:  # it had finished after Tune last saved its state
                    del self.status[trial_id]
                    self.finished -= 1
                self.rows[trial_id] = []
                self.tracker.reopen(self.runs[trial_id])
            return
        self._open(trial_id, hparams)

    def _open(self, trial_id: str, hparams: dict) -> None:
        self.started_at.setdefault(trial_id, time.perf_counter())
        self.hparams[trial_id], self.rows[trial_id] = hparams, []
        self.runs[trial_id] = self.tracker.start_child(
            self.parent_id, f"{self.method}-{trial_id}", hparams,
            {**self.tags, "method": self.method, "attack": self.attack, "trial_id": trial_id,
             "hparams": report.hparams_json(hparams)})

    def restore(self, trial_id: str, run_id: str, hparams: dict, status: str, rows: list[dict] | None) -> None:
        """--resume: a trial the interrupted sweep logged. With its `rows` it had finished (it counts and
        its rows stay); without, it was cut short and Tune will start it again (or never, if Tune had not
        saved it yet: `orphans` lists those afterwards)."""
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
        self.progress(f"[{self.attack}/{self.method}] trial {trial_id} failed ({error}); retrying it "
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
        self.progress(self._line(trial_id, status, error, rows))

    def _line(self, trial_id: str, status: str, error: str | None, rows: list[dict]) -> str:
        hp = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.hparams[trial_id].items())
        head = f"[{self.attack}/{self.method}] {self.finished}/{self.trials} {hp}"
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
                "hparams": report.hparams_json(self.hparams[trial_id])}
        if trial_id in self.nodes:
            head["node_id"] = self.nodes[trial_id]
        if trial_id in self.errors:
            head["error"] = self.errors[trial_id]
        return [{**head, **r} for r in self.rows[trial_id]] or [head]  # a trial failed before any checkpoint still shows


def run_sweep(experiment: Experiment | str | os.PathLike | None = None, *, workdir: str | os.PathLike = "sweeper-work",
              trials: int | None = None, tracking_uri: str | None = None, address: str | None = None,
              profile: str | None = None, name: str | None = None, gpus_per_trial: float | None = None,
              storage: str | os.PathLike | None = None, max_failures: int | None = None,
              max_concurrent: int | None = None,
              resume: str | bool | None = None, progress: Progress = print,
              command: list[str] | None = None) -> SweepResult:
    """Run a whole sweep and write its report. `experiment`: an Experiment, a YAML path, a bundled
    name, or None for the quickstart. `name`: the sweep's name, which must be new; without it the
    experiment's name, numbered if taken. `command`: the command line that started it, recorded on the
    sweep so that `sweeper sweeps` can say how to resume it. Every input is checked before anything is
    written to MLflow."""
    exp = experiment if isinstance(experiment, Experiment) else config.load(experiment, profile)
    if trials is not None:
        if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
            raise SweeperError(f"--trials must be a positive integer, got {trials!r}")
        exp = replace(exp, trials=trials)
    if gpus_per_trial is not None:
        exp = replace(exp, gpus_per_trial=config.gpus_per_trial("--gpus-per-trial", gpus_per_trial))
    if max_failures is not None:
        exp = replace(exp, max_failures=config.max_failures("--max-failures", max_failures))
    if max_concurrent is not None:
        exp = replace(exp, max_concurrent=config.max_concurrent("--max-concurrent", max_concurrent))
    existed = Path(workdir).expanduser().exists()
    root = prepare_storage(_storage_choice(storage, exp),
                           Path(workdir).expanduser().resolve())
    wd = prepare_workdir(workdir)
    from . import tracking  # the MLflow edge: imported only when a sweep really runs
    from . import tuning    # the Ray edge

    uri = tracking_uri or tracking.default_uri(wd)
    started = False
    try:
        address = tuning.check(address)  # seconds; before a new tracking store's ~10 s of schema creation
        tracking.open_store(uri, wd)  # before Ray starts: a bad URI costs nothing and leaves nothing
        if resume:
            name = _resumable(uri, wd, exp, resume)
            if tracking.Tracker(uri, name, wd).status() == "finished":
                progress(f"sweep {name} had finished: rebuilding its report only")
                return rebuild_report(wd, name, tracking_uri)
        elif name and tracking.exists(uri, name):  # early and clear; reserve() below is the atomic check
            raise SweeperError(f"a sweep named {name!r} already exists in {uri}; choose another --name "
                               "(or leave it out to get a numbered one)")
        started = tuning.start(address)
        tuning.check_device(exp.device, embedded=started and not address)
    except SweeperError:
        if started:
            tuning.stop()
        if not existed:
            shutil.rmtree(wd, ignore_errors=True)  # bad input leaves nothing behind, not even the work directory
        raise
    try:
        for dead, n in tracking.close_dead_sweeps(uri):
            progress(f"sweep {dead}: its driver died earlier; {n} runs it left RUNNING are now FAILED")
        tracker = tracking.Tracker(uri, name or exp.name, wd)
        if resume:
            tracker.attach()
        else:
            tracker.reserve(numbered=name is None, command=command)
        where = ("embedded " if started and not address else "joined ") + tuning.describe()
        if resume:
            where = f"resuming sweep {name}; {where}"
        return _run(exp, wd, root, uri, tracker, tuning, progress, where, bool(resume))
    finally:
        if started:
            tuning.stop()


@dataclass
class Plan:
    """What `sweeper run` would do (`--dry-run`), computed without training or tuning anything."""
    experiment: Experiment
    tuning_trials: int           # per sweep: attacks x methods x trials
    fresh_runs_max: int          # chosen configurations (at most one per budget) x fresh seeds, plus references
    base_to_train: int
    base_cached: int
    units_worst: float           # cost units if no trial stops early (base models and crafting excluded)
    retrain_units: dict          # attack -> C_retrain (from a cached manifest, else the upper bound 3·epochs·|train|)
    exact: bool                  # every C_retrain came from a manifest
    slots: int
    seconds_per_unit: float | None  # from cached manifests' training times, when there are any

    def lines(self) -> list[str]:
        exp = self.experiment
        out = [f"dry run of {exp.name} (profile {exp.profile}): attacks {', '.join(sc.attack for sc in exp.scenarios)}; "
               f"{len(exp.methods)} methods: {', '.join(exp.methods)}",
               f"tuning: {self.tuning_trials} trials ({exp.trials} per attack and method) on seeds {list(exp.seeds)}; "
               f"budgets {list(exp.budgets)}",
               f"fresh seeds {list(exp.fresh_seeds)}: at most {self.fresh_runs_max} runs",
               f"base models: {self.base_to_train} to train, {self.base_cached} cached",
               f"worst case (no early stopping): {'' if self.exact else '≤ '}{self.units_worst:,.0f} units = "
               f"{self.units_worst / max(self.retrain_units.values()):.1f} retrains; C_retrain "
               + ", ".join(f"{a} {u:,}" for a, u in self.retrain_units.items())]
        if self.seconds_per_unit:
            est = self.units_worst * self.seconds_per_unit / self.slots
            out.append(f"estimated wall time of the trials: ≤ {est / 60:.1f} min on {self.slots} slots "
                       "(from cached base models' training speed; evaluation, base models and crafting not included)")
        else:
            out.append(f"{self.slots} slots; wall time unknown until a base model of this scenario is trained")
        return out


def plan(exp: Experiment, workdir: str | os.PathLike = "sweeper-work", storage: str | os.PathLike | None = None,
         slots: int | None = None) -> Plan:
    """The sweep `exp` would run in `workdir`: counts, cached base models, worst-case cost. Writes nothing."""
    from .basecache import entry_manifest, entry_status

    wd = Path(workdir).expanduser().resolve()
    root = prepare_storage(_storage_choice(storage, exp), wd, probe=False)
    seeds = list(exp.seeds) + list(exp.fresh_seeds)
    cached = todo = 0
    retrain: dict[str, int] = {}
    rates: list[float] = []
    exact = True
    for sc in exp.scenarios:
        for seed in seeds:
            if entry_status(sc, seed, store.join(root, "base")) is None:
                cached += 1
                m = entry_manifest(sc, seed, store.join(root, "base"))
                retrain.setdefault(sc.attack, int(m["retrain_units"]))
                rates.append(m["train_seconds"]["retrain"] / int(m["retrain_units"]))
            else:
                todo += 1
        if sc.attack not in retrain:
            exact = False
            retrain[sc.attack] = sc.recipe.retrain_units(len(sc.load_data().train))
    n_budgets, fresh = len(exp.budgets), len(exp.fresh_seeds)
    units = sum(c * exp.budgets[-1] * (len(exp.methods) * exp.trials * len(exp.seeds)
                                       + len(exp.methods) * n_budgets * fresh) for c in retrain.values())
    return Plan(exp, len(exp.scenarios) * len(exp.methods) * exp.trials,
                len(exp.scenarios) * (len(exp.methods) * n_budgets + 2) * fresh, todo, cached, units, retrain,
                exact, slots or (os.cpu_count() or 1), sum(rates) / len(rates) if rates else None)


def _resumable(uri: str, wd: Path, exp: Experiment, resume: str | bool) -> str:
    """The sweep --resume continues: the one named, else the newest unfinished sweep of this experiment
    (its name, or its name numbered). It must not be running, and must have run this same experiment."""
    from . import tracking

    tracking.close_dead_sweeps(uri)  # a SIGKILLed driver left its sweep "running": it is resumable
    statuses = dict(tracking.sweep_statuses(uri))
    if isinstance(resume, str):
        if resume not in statuses:
            raise SweeperError(f"--resume {resume}: no sweep of that name in {uri} (known: "
                               f"{', '.join(statuses) or 'none'})")
        name = resume
    else:
        mine = [n for n, st in statuses.items() if st != "finished"
                and (n == exp.name or re.fullmatch(re.escape(exp.name) + r"-\d+", n))]
        if not mine:
            raise SweeperError(f"--resume: no unfinished sweep of experiment {exp.name!r} in {uri}; nothing to resume")
        name = mine[0]
    if statuses[name] == "running":
        raise SweeperError(f"--resume {name}: the sweep is still running (its driver is alive, or runs on another "
                           "host); stop it first")
    logged = tracking.Tracker(uri, name, wd).read_experiment()
    now = json.loads(json.dumps(exp.as_dict(), default=str))
    if logged and logged != now:
        keys = sorted(k for k in set(logged) | set(now) if logged.get(k) != now.get(k))
        raise SweeperError(f"--resume {name}: this experiment differs from the one the sweep ran (in "
                           f"{', '.join(keys)}); resume it with the same file, profile and options")
    return name


def _run(exp: Experiment, wd: Path, root: Path | str, uri: str, tracker, tuning, progress: Progress, where: str,
         resumed: bool = False) -> SweepResult:
    """The sweep proper. Whatever stops it (Ctrl-C, an error) closes every run it opened, as KILLED or
    FAILED, and tags the sweep, so an interrupted sweep never looks finished."""
    attack_runs: list[_AttackRun] = []
    try:
        result = _stages(exp, wd, root, uri, tracker, tuning, progress, where, attack_runs, resumed)
    except BaseException as e:
        _abort(tracker, attack_runs, e, progress)
        raise
    tracker.set_status("finished")
    return result


def _abort(tracker, attack_runs: list["_AttackRun"], error: BaseException, progress: Progress) -> None:
    interrupted = isinstance(error, KeyboardInterrupt)
    status = "KILLED" if interrupted else "FAILED"
    reason = ("interrupted (SIGINT / Ctrl-C)" if interrupted
              else f"the sweep stopped on an error: {type(error).__name__}: {str(error)[:300]}")
    try:
        for run in attack_runs:
            for method, parent in run.parents.items():
                if parent in tracker.open_runs:
                    tracker.end_parent(parent, run.rows(method), status, reason)
        tracker.abort(status, reason)
        tracker.set_status("interrupted" if interrupted else "failed")
    except Exception as e:  # noqa: BLE001 - never hide the original error behind a cleanup error
        progress(f"could not close every MLflow run ({type(e).__name__}); the next `sweeper run` in this store "
                 "marks them FAILED")
        return
    resume = f"; `{resume_command(tracker.command, tracker.sweep, {})}` continues it" if tracker.command else ""
    progress(f"sweep {tracker.sweep} {'interrupted' if interrupted else 'failed'}: its open runs are {status}; "
             f"`sweeper report --sweep {tracker.sweep}` writes its partial report{resume}")


def _stages(exp: Experiment, wd: Path, root: Path | str, uri: str, tracker, tuning, progress: Progress, where: str,
            attack_runs: list["_AttackRun"], resumed: bool = False) -> SweepResult:
    sweep = tracker.sweep
    base_dir = str(store.join(root, "base"))
    if root != wd:
        where += f"; storage {store.display(root)}"
    t0 = time.perf_counter()
    progress(f"sweep {sweep}: attacks {', '.join(sc.attack for sc in exp.scenarios)}; {len(exp.methods)} methods "
             f"x {exp.trials} trials, budgets {list(exp.budgets)}, tuning seeds {list(exp.seeds)}, fresh seeds "
             f"{list(exp.fresh_seeds)}; {where}; tracking {uri}")
    all_seeds = list(exp.seeds) + list(exp.fresh_seeds)
    from . import plugins

    plugin_specs = [plugins.spec(p) for p in exp.plugins]  # shipped with every task: workers need no path
    built = tuning.build_bases(list(exp.scenarios), all_seeds, base_dir, exp.device, exp.max_failures, plugin_specs)
    progress(f"base models: {built} ({time.perf_counter() - t0:.1f}s)")
    common = {**_versions(), "sweep": sweep, "profile": exp.profile, "mlflow.source.name": "sweeper run",
              "mlflow.source.type": "LOCAL", "mlflow.user": _user()}
    if rev := _git_revision():
        common["git_revision"] = common["mlflow.source.git.commit"] = rev
    rows: list[dict] = []
    parents: list[str] = []
    for scenario in exp.scenarios:
        tags = {**common, "scenario": scenario_hash(scenario, all_seeds)}
        base = {"scenario": scenario.as_dict(), "base_dir": base_dir, "seeds": list(exp.seeds),
                "budgets": list(exp.budgets), "device": exp.device, "plugins": plugin_specs}
        logged = tracker.logged_runs(scenario.attack) if resumed else None
        open_parents = _parents(tracker, scenario.attack, ("none", "retrain", *exp.methods), tags, exp, logged)
        parents += open_parents.values()
        run = _AttackRun(exp, scenario.attack, base, root, tracker, tuning, tags, open_parents,
                         {m: [] for m in open_parents}, progress, logged=logged)
        attack_runs.append(run)
        _references(run)
        _tune(run)
        _fresh(run)
        for method, parent in open_parents.items():
            tracker.end_parent(parent, run.tables[method])
            rows += run.tables[method]
    folder = report_folder(wd, sweep)
    summary = report.write(pd.DataFrame(rows), folder, exp.delta, exp.search_space, f"sweeper report: {sweep}",
                           report.plan_of(exp.as_dict()))
    tracker.log_files(parents, folder)
    for run in attack_runs:
        _log_parent_summary(run, summary[summary.attack == run.attack])
    progress(report.table(summary))
    progress(f"report: {folder / 'report.html'} ({time.perf_counter() - t0:.1f}s); "
             f"MLflow: mlflow ui --backend-store-uri {uri}")
    return SweepResult(sweep, wd, uri, summary, folder)


def _parents(tracker, attack: str, methods, tags: dict, exp: Experiment, logged: pd.DataFrame | None) -> dict[str, str]:
    """A parent run per method: new, or (--resume) the interrupted sweep's, reopened. A new one carries
    the experiment's settings as flat dotted params (`attack.eps`, `recipe.epochs`), for filtering."""
    out = {}
    settings = experiment_params(exp, attack)
    for m in methods:
        found = [] if logged is None else list(logged[(logged.level == "parent") & (logged.method == m)].run_id)
        if found:
            tracker.reopen(found[0])
            out[m] = found[0]
        else:
            out[m] = tracker.start_parent(attack, m, tags, exp.as_dict())
            tracker.log_params(out[m], settings)
    return out


def experiment_params(exp: Experiment, attack: str) -> dict[str, str]:
    """The settings of `exp` for one attack, flattened: dataset.*, model.*, attack.*, recipe.*, and the
    sweep's own (budgets, trials, seeds, ...)."""
    sc = next(s for s in exp.scenarios if s.attack == attack)
    flat = {"dataset.name": sc.dataset, "model.name": sc.model, "attack.name": sc.attack}
    for prefix, params in (("dataset", sc.dataset_params), ("model", sc.model_params), ("attack", sc.attack_params),
                           ("recipe", sc.recipe.as_dict())):
        flat.update({f"{prefix}.{k}": v for k, v in params.items()})
    flat.update({k: v for k, v in exp.as_dict().items() if k not in ("scenarios", "spaces", "name", "plugins")})
    flat.update({f"plugin.{Path(p).stem}": p for p in exp.plugins})
    return {k: json.dumps(v) if isinstance(v, (list, dict)) else str(v) for k, v in flat.items()}


PARENT_METRICS = ("removal", "removal_ci_low", "removal_ci_high", "removal_pooled", "acc_test", "acc_val",
                  "attack_effect", "cost_fraction")


def _log_parent_summary(run: "_AttackRun", summary: pd.DataFrame) -> None:
    """Each parent run gets its report rows as metrics stepped by budget (step = per-mille, as the
    trials'), the configuration chosen at its largest budget as params and, per budget, as a tag: the
    UI's Compare view then works on parent runs."""
    for method, parent in run.parents.items():
        mine = summary[summary.method == method].sort_values("budget")
        metrics = [(name, float(r[name]), float(r["budget"])) for _, r in mine.iterrows()
                   for name in PARENT_METRICS if name in r and pd.notna(r[name])]
        chosen = {f"{r['budget']:g}": json.loads(r["hparams"]) for _, r in mine.iterrows()
                  if isinstance(r["hparams"], str) and r["hparams"] not in ("", "{}")}
        last = chosen[max(chosen, key=float)] if chosen else {}
        run.tracker.log_summary(parent, metrics, {f"chosen.{k}": v for k, v in last.items()},
                                {"chosen_per_budget": json.dumps(chosen, sort_keys=True),
                                 **{f"verdict.{r['budget']:g}": r["verdict"] for _, r in mine.iterrows()
                                    if isinstance(r["verdict"], str)}})


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def report_folder(wd: Path, sweep: str) -> Path:
    """Each sweep's report in its own folder: two sweeps in one work directory never overwrite each other."""
    return wd / "report" / sweep


@dataclass
class _AttackRun:
    """What the three phases of one attack (references, tuning, fresh seeds) share."""
    exp: Experiment
    attack: str
    base: dict                     # the trial config common to every method
    root: Path | str               # the storage root: base/, ray/, models/ (the work directory unless --storage)
    tracker: object
    tuning: object
    tags: dict
    parents: dict[str, str]        # method -> open parent run id
    tables: dict[str, list[dict]]  # method -> every checkpoint row, for the parent's trials.csv
    progress: Progress
    listeners: dict[str, Listener] = field(default_factory=dict)  # while tuning runs
    logged: pd.DataFrame | None = None  # --resume: this attack's runs as the interrupted sweep logged them

    def rows(self, method: str) -> list[dict]:
        """Everything measured for `method` so far, tuning trials still in flight included."""
        live = self.listeners[method].table() if method in self.listeners else []
        return self.tables[method] + live


def _tune(run: _AttackRun) -> None:
    exp = run.exp
    tags = {**run.tags, "phase": "tune", "seed": ",".join(map(str, exp.seeds))}
    run.listeners = {m: Listener(run.tracker, run.parents[m], run.attack, m, tags, exp.trials, run.progress)
                     for m in exp.methods}
    bases = {m: {**run.base, "method": m, "membership": False} for m in exp.methods}  # MIA: fresh runs measure it
    storage = store.join(run.root, "ray", run.tracker.sweep)
    restored = _restore_tuned(run)
    total = exp.trials * len(exp.methods)
    if restored == total:
        run.progress(f"[{run.attack}] tuning: all {total} trials were logged before; not redone")
        known = None
    elif run.logged is not None and run.tuning.can_resume(storage, run.attack):
        run.progress(f"[{run.attack}] tuning: resuming Ray Tune's records ({restored} of {total} trials logged)")
        known = run.tuning.resume_attack(exp, run.attack, bases, storage, run.listeners)
    else:
        known = set()  # a new Tuner: nothing logged before belongs to it
        run.tuning.tune_attack(exp, run.attack, bases, storage, run.listeners)
    for listener in run.listeners.values():
        for run_id in listener.drop_unknown(known):
            run.tracker.discard(run_id)
    finished = sum(listener.finished for listener in run.listeners.values())
    if finished < total:  # Tune returned without running every trial: it was stopped
        raise KeyboardInterrupt(f"Ray Tune stopped after {finished} of {total} trials")
    for m, listener in run.listeners.items():
        run.tables[m] += [{**r, "n_seeds": len(exp.seeds)} for r in listener.table()]
    run.listeners = {}


def _restore_tuned(run: _AttackRun) -> int:
    """--resume: hand each method's listener the Tune trials the interrupted sweep logged; returns how
    many of them had finished (an interruption's runs are reopened when Tune restarts them)."""
    if run.logged is None:
        return 0
    done = 0
    children = run.logged[(run.logged.level == "trial") & run.logged.method.isin(run.exp.methods)]
    for r in children.itertuples():
        if r.status == "RUNNING" or not r.hparams:
            continue
        finished = not r.interrupted
        rows = run.tracker.child_rows(r.run_id) if finished else None
        if finished and not rows:  # closed, but its table never got written: redo it
            finished, rows = False, None
        run.listeners[r.method].restore(r.trial_id, r.run_id, json.loads(r.hparams), r.status, rows)
        done += finished
    return done


def _models_dir(run: _AttackRun, method: str, source: str) -> Path | str:
    return store.join(run.root, "models", run.tracker.sweep, run.attack, method, source)


def _reuse(run: _AttackRun, method: str, name: str) -> bool:
    """--resume: True if the plain run `name` finished before the interruption (its rows join the
    tables); one the interruption cut short is deleted, to be run again under a new run."""
    if run.logged is None:
        return False
    mine = run.logged[(run.logged.level == "trial") & (run.logged.trial_id == name)
                      & (run.logged.method == method)]
    for r in mine.itertuples():
        rows = [] if r.interrupted else run.tracker.child_rows(r.run_id)
        if rows:
            run.tables[method] += rows
            return True
        run.tracker.discard(r.run_id)
    return False


def _log_plain(run: _AttackRun, method: str, name: str, hparams: dict, tags: dict, result, extra: dict) -> None:
    """One plain (non-Tune) trial as a child run of `method`'s parent; its rows go to the parent's table
    and, whole, to the child's own table (which --resume reads back)."""
    child = run.tracker.start_child(run.parents[method], name, hparams,
                                    {**run.tags, **tags, "method": method, "attack": run.attack, "trial_id": name})
    head = {"attack": run.attack, "method": method, "trial_id": name, **extra, "hparams": report.hparams_json(hparams)}
    if isinstance(result, str):
        rows = [{**head, "run_status": "FAILED", "error": result}]
        run.tracker.end_child(child, "FAILED", rows, {"error": result})
        run.tables[method] += rows
        return
    for r in result:
        run.tracker.log_checkpoint(child, r)
    rows = [{**head, "run_status": "FINISHED", **r} for r in result]
    run.tracker.end_child(child, "FINISHED", rows)
    run.tables[method] += rows


def _references(run: _AttackRun) -> None:
    """`none` and `retrain` on the tuning seeds (pooled): evaluated from the cached base models."""
    seeds = run.exp.seeds
    todo = [m for m in ("none", "retrain") if not _reuse(run, m, m)]
    results = run.tuning.run_trials([{**run.base, "method": m} for m in todo], run.exp.gpus_per_trial,
                                    run.exp.max_failures, run.exp.device) if todo else []
    for method, result in zip(todo, results):
        _log_plain(run, method, method, {}, {"phase": "tune", "seed": ",".join(map(str, seeds))}, result,
                   {"phase": "tune", "n_seeds": len(seeds)})
        if isinstance(result, str):
            run.progress(f"[{run.attack}/{method}] FAILED ({result}): removal cannot be computed without it")
        else:
            z = f", gus/z {result[0]['gus/z']:.2f}" if "gus/z" in result[0] else ""
            run.progress(f"[{run.attack}/{method}] effect {result[0]['attack/effect']:.3f}{z} pooled over tuning "
                         f"seeds, acc/val {result[0]['acc/val']:.3f}")


def _fresh(run: _AttackRun) -> None:
    """Re-measure each chosen configuration (and the references) on seeds the selection never saw."""
    exp, base = run.exp, run.base
    if not exp.fresh_seeds:
        return
    tune_rows = pd.DataFrame([r for m in exp.methods for r in run.tables[m]])
    chosen = report.selections(tune_rows) if not tune_rows.empty else []
    jobs = [({**base, "method": m, "seeds": [s]}, m, m, {}, s) for m in ("none", "retrain") for s in exp.fresh_seeds]
    jobs += [({**base, "method": c["method"], "hparams": c["hparams"], "seeds": [s], "budgets": c["budgets"]},
              c["method"], c["trial_id"], c["hparams"], s) for c in chosen for s in exp.fresh_seeds]
    jobs = [j for j in jobs if not _reuse(run, j[1], f"{j[2]}-fresh{j[4]}")]
    for cfg, method, source, _, seed in jobs:  # the chosen unlearned models on the first fresh seed
        if method not in report.REFERENCES and seed == exp.fresh_seeds[0]:
            cfg["save_models"] = str(_models_dir(run, method, source))
    t0 = time.perf_counter()
    results = run.tuning.run_trials([j[0] for j in jobs], run.exp.gpus_per_trial, run.exp.max_failures,
                                    run.exp.device) if jobs else []
    for (cfg, method, source, hparams, seed), result in zip(jobs, results):
        tags = {"phase": "fresh", "seed": str(seed), "selected_from": source,
                "selected_for": ",".join(f"{b:g}" for b in cfg.get("budgets", []))}
        extra = {"phase": "fresh", "seed": seed, "source_trial": source, "n_seeds": 1}
        _log_plain(run, method, f"{source}-fresh{seed}", hparams, tags, result, extra)
        if "save_models" in cfg and not isinstance(result, str):
            _log_models(run, method, cfg["save_models"])
        if isinstance(result, str):
            run.progress(f"[{run.attack}/{method}] fresh seed {seed} of {source}: FAILED ({result})")
    run.progress(f"[{run.attack}] fresh seeds {list(exp.fresh_seeds)}: {len(chosen)} chosen configurations + "
                 f"references re-measured in {len(jobs)} runs ({time.perf_counter() - t0:.1f}s)")


def _log_models(run: _AttackRun, method: str, folder: str) -> None:
    """The chosen models a fresh run saved (on whichever node ran it) as artifacts of the method's parent."""
    if not store.is_remote(folder):
        for path in sorted(Path(folder).glob("budget-*.safetensors")):
            run.tracker.log_file(run.parents[method], path, "models")
        return
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted(store.download_dir(folder, Path(tmp))):
            if path.name.startswith("budget-") and path.suffix == ".safetensors":
                run.tracker.log_file(run.parents[method], path, "models")


PARTIAL = {"running": "still running, or its driver died on another host", "interrupted": "interrupted",
           "failed": "stopped on an error", "died": "its driver was killed"}


def _open_existing(wd: Path, tracking_uri: str | None) -> str:
    """The tracking URI of an existing store (never creates one), checked to work."""
    from . import tracking

    uri = tracking_uri or tracking.default_uri(wd)
    path = tracking.sqlite_path(uri)
    if path is not None and not path.exists():
        raise SweeperError(f"no sweep found in {wd} (no {path.name})")
    tracking.open_store(uri, wd)
    tracking.close_dead_sweeps(uri)
    return uri


def rebuild_report(workdir: str | os.PathLike, sweep: str | None = None, tracking_uri: str | None = None) -> SweepResult:
    """Rebuild the report of a sweep (the newest in the store unless named) from MLflow alone, into
    `report/<sweep>/`. A sweep that did not finish gets a report marked partial."""
    from . import tracking

    wd = Path(workdir).expanduser().resolve()
    uri = _open_existing(wd, tracking_uri)
    names = tracking.sweeps(uri)
    if not names:
        raise SweeperError(f"no sweep found in {uri}")
    sweep = sweep or names[0]
    if sweep not in names:
        raise SweeperError(f"no sweep named {sweep!r} in {uri} (known: {', '.join(names)})")
    tracker = tracking.Tracker(uri, sweep, prepare_workdir(wd))
    folder = report_folder(wd, sweep)
    logged = tracker.read_experiment()
    from . import plugins

    plugins.ensure([plugins.spec(p) for p in logged.get("plugins", []) if Path(p).is_file()])  # their spaces
    state = tracker.status()
    summary = report.write(tracker.read_rows(), folder, logged.get("delta", config.DEFAULT_DELTA),
                           lambda m: config.search_space(m, logged.get("spaces")), f"sweeper report: {sweep}",
                           report.plan_of(logged) if logged else None, PARTIAL.get(state))
    return SweepResult(sweep, wd, uri, summary, folder)


def load_model(sweep: str, attack: str, method: str, budget: float, workdir: str | os.PathLike = "sweeper-work",
               tracking_uri: str | None = None):
    """The unlearned model the sweep chose for (attack, method, budget), as re-run on its first fresh seed
    and logged to the method's parent run (`models/budget-B.safetensors`), in eval mode on the CPU:

        model = sweeper.load_model("quickstart", "gaussian", "gd", 0.1)

    The architecture and its normalisation come from the experiment the sweep logged (its data set is
    loaded for the input statistics); the weights load with safetensors, which runs no code."""
    from safetensors.torch import load_file

    from . import tracking

    wd = Path(workdir).expanduser().resolve()
    uri = _open_existing(wd, tracking_uri)
    tracker = tracking.Tracker(uri, sweep, wd)
    logged = tracker.read_experiment()
    parents = tracker.runs("parent")
    mine = parents[(parents.get("tags.attack") == attack) & (parents.get("tags.method") == method)]
    scenarios = [sc for sc in logged.get("scenarios", []) if sc.get("attack") == attack]
    if mine.empty or not scenarios:
        raise SweeperError(f"sweep {sweep!r} has no method {method!r} against attack {attack!r}")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = tracker.client.download_artifacts(mine.run_id.iloc[0], f"models/{_model_name(budget)}", tmp)
        except Exception:  # noqa: BLE001 - MLflow raises several types for a missing artifact
            raise SweeperError(f"sweep {sweep!r}: no model logged for {attack}/{method} at budget {budget:g} "
                               "(not chosen at that budget, or not re-measured on fresh seeds)") from None
        state = load_file(path)
    from .scenario import Scenario

    scenario = Scenario.from_dict(scenarios[0])
    model = scenario.build_model(scenario.load_data(), int(logged["fresh_seeds"][0]))
    model.load_state_dict(state)
    return model.eval()


def _model_name(budget: float) -> str:
    from .trial import model_file

    return model_file(budget)


def list_sweeps(workdir: str | os.PathLike = "sweeper-work", tracking_uri: str | None = None) -> pd.DataFrame:
    """The sweeps of a store, newest first: status (running, finished, interrupted, failed, died), start,
    driver, tuning trials logged, the report's path if one was written, and for one that did not finish
    the command that continues it."""
    from . import tracking

    wd = Path(workdir).expanduser().resolve()
    uri = _open_existing(wd, tracking_uri)  # as report/compare: a dead driver's sweep reads "died"
    rows = tracking.sweep_overview(uri)
    for row in rows:
        page = report_folder(wd, row["sweep"]) / "report.html"
        row["report"] = str(page) if page.exists() else ""
        command = row.pop("command")
        row["resume"] = ""
        if row["status"] in ("interrupted", "failed", "died"):
            row["resume"] = resume_command(command, row["sweep"], tracking.Tracker(uri, row["sweep"], wd).read_experiment())
    return pd.DataFrame(rows, columns=["sweep", "status", "started_utc", "driver", "tuning_trials", "report", "resume"])


def resume_command(command: list[str] | None, sweep: str, logged: dict) -> str:
    """The command that continues `sweep`: the one that started it (same experiment, overrides, options,
    storage) with --resume in place of --name; without one recorded (a sweep started from Python), the
    experiment's name and profile."""
    if not command:
        profile = f" --profile {logged['profile']}" if logged.get("profile") else ""
        return f"sweeper run {logged.get('name', sweep)}{profile} --resume {sweep}"
    kept, skip = [], False
    for arg in command:  # a sweep is recorded only when it starts, never with --resume: drop --name alone
        if skip:
            skip = False
        elif arg == "--name":
            skip = True
        elif not arg.startswith("--name="):
            kept.append(arg)
    return shlex.join([*kept, "--resume", sweep])


def compare_sweeps(names: list[str], workdir: str | os.PathLike = "sweeper-work",
                   tracking_uri: str | None = None) -> pd.DataFrame:
    """Sweeps side by side from MLflow alone: removal (fresh mean ± 95% half-width) and status per
    (attack, method, budget), one column group per sweep."""
    from . import tracking

    if len(set(names)) != len(names) or len(names) < 2:
        raise SweeperError("compare needs at least two different sweep names")
    wd = Path(workdir).expanduser().resolve()
    uri = _open_existing(wd, tracking_uri)
    known = tracking.sweeps(uri)
    missing = [n for n in names if n not in known]
    if missing:
        raise SweeperError(f"no sweep named {', '.join(missing)} in {uri} (known: {', '.join(known) or 'none'})")
    frames = []
    for name in names:
        tracker = tracking.Tracker(uri, name, wd)
        logged = tracker.read_experiment()
        s = report.summarize(tracker.read_rows(), logged.get("delta", config.DEFAULT_DELTA),
                             report.plan_of(logged) if logged else None)
        s = s.set_index(["attack", "method", "budget"])[["removal", "removal_halfwidth", "acc_test", "status"]]
        frames.append(s.add_prefix(f"{name}:"))
    return pd.concat(frames, axis=1).reset_index()
