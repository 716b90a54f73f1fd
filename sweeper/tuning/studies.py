"""The sweep's Optuna studies, mirrored into an Optuna RDB storage for optuna-dashboard.

The studies that propose configurations live inside Ray Tune's searcher checkpoint, where no dashboard
can read them, and Ray tells a study that ASHA stopped early as COMPLETE with its lower-budget value,
which would mix budgets in a dashboard's best values. The mirror writes its own studies instead, one per
(sweep, cell, method), from what the driver's listener saw: one Optuna trial per Tune trial, with one
intermediate value per budget checkpoint (step = budget in per-mille, as MLflow's steps), COMPLETE only
for trials that reached the largest budget, PRUNED for those ASHA stopped, FAIL for failed ones.

The MLflow runs stay the record: the mirror is a view, rebuilt from the listener when it disagrees
(`Study.reconcile`), and a write that fails mid-sweep is said in one line, never raised into Tune."""
from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..budget import step_of
from ..config import Experiment
from ..errors import SweeperError

OFF = "none"  # --optuna-storage none: no mirror
STATES = {"FINISHED": TrialState.COMPLETE, "KILLED": TrialState.PRUNED, "FAILED": TrialState.FAIL}


def default_url(workdir: Path) -> str:
    return f"sqlite:///{Path(workdir).resolve() / 'optuna.db'}"


def url(choice: str | None, workdir: Path) -> str | None:
    """The storage a sweep mirrors its studies to: the one named, else the work directory's; None if off."""
    if choice is not None and choice.strip().lower() == OFF:
        return None
    return choice or default_url(workdir)


def _sqlite_path(url: str) -> Path | None:
    return Path(url[len("sqlite:///"):]) if url.startswith("sqlite:///") else None


def check(url: str) -> None:
    """Before Ray starts or anything is logged: a storage the mirror could not write is bad input (one
    line, exit 2), not a failure mid-sweep. A new SQLite file is only checked for here and created by
    the first trial's write, so a sweep refused later for another reason leaves no file behind."""
    path = _sqlite_path(url)
    if path is not None:
        other = f"; pass another --optuna-storage, or `--optuna-storage {OFF}`"
        if not path.parent.is_dir():
            raise SweeperError(f"cannot create the Optuna storage {path}: folder {path.parent} does not exist{other}")
        if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            raise SweeperError(f"cannot write the Optuna storage {path}: permission denied{other}")
        if not path.exists():
            return
    open_storage(url)  # an existing file that is no storage, a database that does not answer


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """The storage at `url`, its tables created if new (SQLite here: ~0.7 s the first time in a process,
    mostly loading SQLAlchemy and Alembic; ~30 ms to open an existing one), else one line."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created in RDB": ours to say
    path = _sqlite_path(url)
    try:
        # SQLite: wait for a concurrent sweep's write rather than fail with "database is locked"
        kwargs = {"connect_args": {"timeout": 30}} if path is not None else None
        storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        storage.get_all_studies()  # a storage that opens but cannot be read is as bad
    except Exception as e:  # noqa: BLE001 - whatever SQLAlchemy or Optuna raise, the user gets one line
        raise SweeperError(f"--optuna-storage {url}: Optuna cannot use it ({_first_line(e)}); pass an "
                           f"sqlite:///PATH or database URL it can write, or `--optuna-storage {OFF}`") from None
    return storage


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0][:300] if lines else type(e).__name__


class StudyMirror:
    """One sweep's studies in one storage (`check`ed up front), opened on the first write, as is each study."""

    def __init__(self, url: str, sweep: str, exp: Experiment, progress, resumed: bool = False):
        self.url, self.sweep, self.exp, self.progress = url, sweep, exp, progress
        self.resumed = resumed  # a new sweep's name is new to MLflow: a study already under it is not its own

    @cached_property
    def storage(self) -> optuna.storages.RDBStorage:
        return open_storage(self.url)

    def study(self, attack: str, cell: str, method: str) -> "Study":
        attrs = {"sweep": self.sweep, "attack": attack, "cell": cell, "method": method, "metric": "objective",
                 "budgets": list(self.exp.budgets)}
        return Study(self, f"{self.sweep}/{cell}/{method}", attrs, self.exp.search_space(method).params)


class Study:
    """One (sweep, cell, method) study. Its trials are the method's finished Tune trials, each given as
    the listener holds it: {trial_id, status, hparams, rows, run_id, error}."""

    def __init__(self, mirror: StudyMirror, name: str, attrs: dict, distributions: dict):
        self.mirror, self.name, self.attrs, self.distributions = mirror, name, attrs, distributions
        self._study: optuna.Study | None = None
        self._have: set[str] = set()  # Tune trial ids the study holds
        self.stale = False  # a write failed: reconcile rebuilds the study

    def record(self, trial: dict) -> None:
        """Add one finished Tune trial, unless the study holds it already (idempotent by Tune trial id)."""
        try:
            study = self._open()
            if trial["trial_id"] not in self._have:
                study.add_trial(frozen(trial, self.distributions))
                self._have.add(trial["trial_id"])
        except Exception as e:  # noqa: BLE001 - the dashboard's view must never stop a sweep
            if not self.stale:  # one line per study, not one per trial of a storage that went away
                self.mirror.progress(f"optuna-dashboard: study {self.name}: could not add trial {trial['trial_id']} "
                                     f"({_first_line(e)}); it is rebuilt when the cell's tuning ends")
            self.stale = True

    def reconcile(self, trials: list[dict]) -> None:
        """Make the study hold exactly `trials` (the listener's finished trials, once Tune is done): a
        resumed sweep drops trials logged after Tune's last saved state, and a trial Tune ran again may
        have ended otherwise. Missing trials are added; as Optuna cannot delete a trial, any other
        difference rebuilds the study. If that fails too, the study is removed, never left half-written."""
        try:
            want = {t["trial_id"]: frozen(t, self.distributions) for t in trials}
            study = self._open()
            held = study.get_trials(deepcopy=False)
            have = {t.user_attrs.get("tune_trial_id"): t for t in held}
            if self.stale or len(have) < len(held) or any(
                    tid not in want or _key(t) != _key(want[tid]) for tid, t in have.items()):
                self._rebuild(list(want.values()))
                return
            study.add_trials([t for tid, t in want.items() if tid not in have])
            self._have = set(want)
        except Exception as e:  # noqa: BLE001
            self._drop(e)

    def _open(self) -> optuna.Study:
        if self._study is None:
            if not self.mirror.resumed and self._replace():
                self.mirror.progress(f"optuna-dashboard: study {self.name} was left in {self.mirror.url} by "
                                     "an earlier sweep of the same name (another MLflow store?); replaced")
            study = optuna.create_study(storage=self.mirror.storage, study_name=self.name, direction="maximize",
                                        load_if_exists=True)
            for key, value in self.attrs.items():
                if study.user_attrs.get(key) != value:
                    study.set_user_attr(key, value)
            self._have = {t.user_attrs.get("tune_trial_id") for t in study.get_trials(deepcopy=False)}
            self._study = study
        return self._study

    def _replace(self) -> bool:
        """Delete a study of this name that an earlier sweep left; True if there was one."""
        try:
            optuna.delete_study(study_name=self.name, storage=self.mirror.storage)
        except KeyError:  # Optuna's "no such study"
            return False
        return True

    def _rebuild(self, trials: list[FrozenTrial]) -> None:
        optuna.delete_study(study_name=self.name, storage=self.mirror.storage)
        self._study, self.stale = None, False
        self._open().add_trials(trials)
        self._have = {t.user_attrs["tune_trial_id"] for t in trials}

    def _drop(self, error: Exception) -> None:
        self._study, self.stale = None, True
        try:
            optuna.delete_study(study_name=self.name, storage=self.mirror.storage)
        except Exception:  # noqa: BLE001 - already absent, or the storage is gone: the line below says it
            pass
        self.mirror.progress(f"optuna-dashboard: study {self.name} could not be written ({_first_line(error)}); "
                             f"it is left out of {self.mirror.url} (the MLflow runs hold every trial)")


def frozen(trial: dict, distributions: dict) -> FrozenTrial:
    """A finished Tune trial as an Optuna trial. A fixed-cost method over every checkpoint reports one
    marker row (over_budget) and Ray tells its study the penalty; it measured nothing, so here it is FAIL
    with the reason, no value. A KILLED (ASHA) trial is PRUNED with, as Optuna's own pruned trials, its
    last intermediate value."""
    rows = [r for r in trial["rows"] if "budget" in r and "objective" in r]
    over = any(r.get("over_budget") for r in rows)
    steps = {} if over else {step_of(r["budget"]): float(r["objective"]) for r in rows}
    state = STATES[trial["status"]]
    if over or (state == TrialState.COMPLETE and not steps):
        state = TrialState.FAIL
    value = steps[max(steps)] if steps and state != TrialState.FAIL else None
    attrs = {"tune_trial_id": trial["trial_id"]}
    if trial.get("run_id"):
        attrs["mlflow_run_id"] = trial["run_id"]
    if steps:
        attrs["budget"] = max(float(r["budget"]) for r in rows)  # the largest budget reached
    if over:
        attrs["over_budget"] = "its fixed cost exceeds every checkpoint"
    if trial.get("error"):
        attrs["error"] = str(trial["error"])[:300]
    return optuna.trial.create_trial(state=state, value=value, params=dict(trial["hparams"]),
                                     distributions={k: distributions[k] for k in trial["hparams"]},
                                     intermediate_values=steps, user_attrs=attrs)


def _key(t: FrozenTrial) -> tuple:
    """What a study holds of a trial, for comparison (not its number, id or times)."""
    return (t.state, t.values, sorted(t.intermediate_values.items()), sorted(t.params.items()),
            sorted(t.user_attrs.items()))
