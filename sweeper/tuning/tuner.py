"""One attack, one Tuner: a routing searcher (one Optuna study per method) and a routing scheduler (one
ASHA per method), and the driver-side callback that hands Tune's trial events to the sweep's listeners.

Why not one Tuner per method: each Tuner costs ~2-3 s of fixed set-up here (new trial actors, each
importing torch) and leaves slots idle while its last trials finish; with 13 methods that was ~30% of
the quickstart's slot time outside trials. Why not one plain Tuner with one ASHA: ASHA compares a trial
with every other trial at the same rung, so it would stop a weak method's trials because a *different*
method is better, which is not the question. Routing keeps exactly one study and one scheduler per
method, with equal trial counts, inside a single Tuner whose actors are reused across methods and whose
slots stay busy until the very end."""
from __future__ import annotations

import pickle
import re
import zlib
from pathlib import Path
from typing import Callable, Protocol

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from .. import spaces
from .. import storage as store
from ..config import REDUCTION_FACTOR, Experiment
from ..metrics import DIVERGED
from ..trial import run_trial
from .cluster import slots
from .tasks import Pool



class TrialListener(Protocol):
    def trial_started(self, trial_id: str, hparams: dict) -> None: ...
    def trial_result(self, trial_id: str, metrics: dict) -> None: ...
    def trial_restarted(self, trial_id: str, error: str, hparams: dict) -> None: ...
    def trial_finished(self, trial_id: str, status: str, error: str | None, hparams: dict) -> None: ...


def _trainable(config: dict, bases: dict) -> None:
    base = bases[config["method"]]
    node = ray.get_runtime_context().get_node_id()  # where the trial ran: a tag on its MLflow run
    rows = run_trial({**base, "hparams": config["hparams"]},
                     on_checkpoint=lambda metrics: tune.report({**metrics, "ray/node_id": node}))
    if not rows:  # a fixed-cost method over every checkpoint: tell the searcher it achieved nothing
        tune.report({"budget": base["budgets"][-1], "objective": DIVERGED, "over_budget": 1.0})


class RoutingSearcher(Searcher):
    """One OptunaSearch per method. Suggests method by method (each study sees its own earlier results
    before most of its proposals, as it would alone); the next method's trials start while the previous
    method's last ones run. Configs are {"method": name, "hparams": {...}}."""

    def __init__(self, studies: dict[str, OptunaSearch], trials: int):
        super().__init__(metric="objective", mode="max")
        self.studies, self.left = studies, {m: trials for m in studies}
        self.owner: dict[str, str] = {}

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # each study has its own space, metric and mode

    def suggest(self, trial_id: str):
        for method, left in self.left.items():
            if left == 0:
                continue
            hparams = self.studies[method].suggest(trial_id)
            if hparams is None:
                return None
            self.owner[trial_id] = method
            self.left[method] -= 1
            return {"method": method, "hparams": hparams}
        return Searcher.FINISHED

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.studies[self.owner[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.studies[self.owner[trial_id]].on_trial_complete(trial_id, result, error)

    def save(self, checkpoint_path: str) -> None:
        """Tune checkpoints the searcher with the experiment, so a restored sweep resumes every study."""
        state = {"owner": self.owner, "left": self.left,
                 "studies": {m: study.__dict__.copy() for m, study in self.studies.items()}}
        with open(checkpoint_path, "wb") as f:
            pickle.dump(state, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        self.owner, self.left = state["owner"], state["left"]
        for m, study_state in state["studies"].items():
            self.studies[m].__dict__.update(study_state)


class RoutingScheduler(FIFOScheduler):
    """One ASHA per method: a trial is compared only with trials of its own method."""

    def __init__(self, make: Callable[[], ASHAScheduler]):
        super().__init__()
        self._make, self._per_method = make, {}

    def _for(self, trial):
        return self._per_method.setdefault(trial.config["method"], self._make())

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True

    def on_trial_add(self, tc, trial):
        self._for(trial).on_trial_add(tc, trial)

    def on_trial_error(self, tc, trial):
        self._for(trial).on_trial_error(tc, trial)

    def on_trial_result(self, tc, trial, result):
        return self._for(trial).on_trial_result(tc, trial, result)

    def on_trial_complete(self, tc, trial, result):
        self._for(trial).on_trial_complete(tc, trial, result)

    def on_trial_remove(self, tc, trial):
        self._for(trial).on_trial_remove(tc, trial)

    def debug_string(self) -> str:
        return "per-method ASHA: " + ", ".join(self._per_method)


_LISTENERS: dict[str, dict[str, TrialListener]] = {}  # Tune experiment path -> this driver's listeners
_POOLS: dict[str, Pool] = {}  # Tune experiment path -> the plain trials that run beside its trials
_ACTIVE = ("PENDING", "RUNNING")  # a Tune trial in these states holds (or is about to take) a slot


class _Forward(tune.Callback):
    """Driver-side Tune callback -> the method's listener (which writes MLflow and prints progress).

    Tune pickles its run config with the experiment (tuner.pkl) and a restored Tuner unpickles it, so the
    callback holds only the experiment's path and finds the listeners of the driver now running it."""

    def __init__(self, key: str, max_budget: float):
        self.key, self.max_budget = key, max_budget

    def _to(self, trial) -> TrialListener:
        return _LISTENERS[self.key][trial.config["method"]]

    def on_step_end(self, iteration, trials, **info):
        """Every turn of Tune's loop (at most ~0.1 s apart): the plain trials queued beside it take the
        slots its own trials leave free (its last trials, its set-up) and hand over what finished."""
        pool = _POOLS.get(self.key)
        if pool is not None:
            pool.poll(busy=sum(t.status in _ACTIVE for t in trials))

    def on_trial_start(self, iteration, trials, trial, **info):
        self._to(trial).trial_started(trial.trial_id, dict(trial.config["hparams"]))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        keep = {k: v for k, v in result.items()
                if "/" in k or k in ("budget", "removal", "objective", "over_budget", "discovery")}
        self._to(trial).trial_result(trial.trial_id, keep)

    def on_trial_recover(self, iteration, trials, trial, **info):
        """A failed trial Tune will run again from its start (its node died, its worker crashed)."""
        self._to(trial).trial_restarted(trial.trial_id, _error_text(trial), dict(trial.config["hparams"]))

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = (trial.last_result or {}).get("budget", 0.0)
        stopped_early = last < self.max_budget - 1e-12
        self._to(trial).trial_finished(trial.trial_id, "KILLED" if stopped_early else "FINISHED", None,
                                       dict(trial.config["hparams"]))

    def on_trial_error(self, iteration, trials, trial, **info):
        self._to(trial).trial_finished(trial.trial_id, "FAILED", _error_text(trial), dict(trial.config["hparams"]))


def _error_text(trial) -> str:
    """The exception line of the trial's traceback (Tune writes it locally before calling us)."""
    local = trial.error_file
    text = Path(local).read_text() if local and Path(local).exists() else (trial.get_error() or "unknown error")
    lines = [ln for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "unknown error"


def study_seed(search_seed: int, attack: str, method: str) -> int:
    """Each (attack, method) study its own sampler seed, derived from the experiment's `search_seed`."""
    return (search_seed * 1_000_003 + zlib.crc32(f"{attack}/{method}".encode())) % (2**31)


def _study(exp: Experiment, attack: str, method: str) -> OptunaSearch:
    """Optuna proposes the signature defaults first, then the space's listed points, then TPE."""
    from .. import methods as _methods
    from ..registry import methods

    space = exp.search_space(method)
    defaults = _methods.hyperparameters(methods.get(method))
    return OptunaSearch(space=space.params, metric="objective", mode="max",
                        points_to_evaluate=[defaults, *space.points],
                        sampler=spaces.sampler(study_seed(exp.search_seed, attack, method)))


def _trainable_with(bases: dict[str, dict], exp: Experiment):
    return tune.with_resources(tune.with_parameters(_trainable, bases=bases), slots(exp.gpus_per_trial, exp.device).resources)


def _tune_storage(storage, attack: str | None = None) -> tuple[str, object]:
    """(path, pyarrow file system or None) of Tune's records under `storage`, a local folder or an
    object store's URI (Tune takes the file system separately: a URI's query, such as an S3
    endpoint, would not survive Tune appending the experiment's name to it)."""
    where = store.join(storage, attack) if attack else storage
    if store.is_remote(storage):
        fs, path = store.filesystem(where)
        return path, fs
    return str(where), None


def can_resume(storage, attack: str) -> bool:
    path, fs = _tune_storage(storage, attack)
    return tune.Tuner.can_restore(path, storage_filesystem=fs)


def resume_attack(exp: Experiment, attack: str, bases: dict[str, dict], storage: Path,
                  listeners: dict[str, TrialListener], pool: Pool | None = None) -> set[str]:
    """Continue an interrupted attack's Tuner from its records under `storage`: finished trials stay
    finished, trials that were running start again from their beginning (under the same trial id), the
    searcher (every method's Optuna study) and schedulers continue from their last saved state. Returns
    the ids of every trial the restored experiment holds: a trial logged after Tune last saved its state
    is not among them (Tune runs a new trial in its place). `pool`: plain trials that run beside it."""
    path, fs = _tune_storage(storage, attack)
    _LISTENERS[path] = listeners
    _POOLS.update({path: pool} if pool is not None else {})
    try:
        tuner = tune.Tuner.restore(path, trainable=_trainable_with(bases, exp), resume_unfinished=True,
                                   resume_errored=True, restart_errored=False, storage_filesystem=fs)
        grid = tuner.fit()
    finally:
        _LISTENERS.pop(path, None)
        _POOLS.pop(path, None)
    return {_trial_id(result) for result in grid}


def _trial_id(result) -> str:
    if "trial_id" in (result.metrics or {}):
        return str(result.metrics["trial_id"])
    found = re.search(r"_([0-9a-f]{5}_\d{5})_", Path(result.path).name)  # a trial that never reported
    return found.group(1) if found else ""


def tune_attack(exp: Experiment, attack: str, bases: dict[str, dict], storage: Path,
                listeners: dict[str, TrialListener], pool: Pool | None = None) -> None:
    """Every method of `exp` against one attack: `exp.trials` trials each, ASHA stopping weak trials
    at checkpoints (time_attr = nominal budget), every trial reporting its whole curve. `pool`: plain
    trials (references, fresh runs) that take the slots Tune's own trials leave free."""
    path, _ = _tune_storage(storage, attack)
    storage_path, fs = _tune_storage(storage)
    searcher = RoutingSearcher({m: _study(exp, attack, m) for m in exp.methods}, exp.trials)
    scheduler = RoutingScheduler(lambda: ASHAScheduler(
        time_attr="budget", metric="objective", mode="max", grace_period=exp.budgets[0],
        max_t=exp.budgets[-1], reduction_factor=REDUCTION_FACTOR))
    s = slots(exp.gpus_per_trial, exp.device)
    tuner = tune.Tuner(
        _trainable_with(bases, exp),
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler,
                                    num_samples=exp.trials * len(exp.methods),
                                    max_concurrent_trials=exp.max_concurrent or s.concurrent, reuse_actors=True),
        run_config=tune.RunConfig(name=attack, storage_path=storage_path, storage_filesystem=fs,
                                  callbacks=[_Forward(path, exp.budgets[-1])], verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=exp.max_failures)),
    )
    _LISTENERS[path] = listeners
    _POOLS.update({path: pool} if pool is not None else {})
    try:
        tuner.fit()
    finally:
        _LISTENERS.pop(path, None)
        _POOLS.pop(path, None)
