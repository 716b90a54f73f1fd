"""The Ray edge (the only module that imports Ray): start or join Ray, build base models as Ray tasks,
and tune every method of one attack in one Tuner.

One Tuner per attack, with a routing searcher (one Optuna study per method) and a routing scheduler
(one ASHA per method). Why not one Tuner per method: each Tuner costs ~2-3 s of fixed set-up here (new
trial actors, each importing torch) and leaves slots idle while its last trials finish; with 13
methods that was ~30% of the quickstart's slot time outside trials. Why not one plain Tuner with one
ASHA: ASHA compares a trial with every other trial at the same rung, so it would stop a weak method's
trials because a *different* method is better, which is not the question. Routing keeps exactly one
study and one scheduler per method, with equal trial counts, inside a single Tuner whose actors are
reused across methods and whose slots stay busy until the very end."""
from __future__ import annotations

import contextlib
import os
import pickle
import re
import socket
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

# Ray's token authentication stays on (a new local Ray enables it and keeps its token in ~/.ray/auth_token):
# an embedded Ray's GCS and raylet listen on every interface, and Ray offers no loopback-only binding.
# Tests and CI set RAY_AUTH_MODE=disabled themselves.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy reporter is silent at verbose=0
# Ctrl-C must stop the sweep (exit 130, runs KILLED), not make Tune end quietly and the sweep carry on.
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "100")
# Save the experiment state (trials, searcher, schedulers) at most every 2 s rather than Tune's adaptive
# default, so a sweep killed mid-tuning resumes (--resume) from a state seconds old. Small JSON writes.
os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")

import ray  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler  # noqa: E402
from ray.tune.search import Searcher  # noqa: E402
from ray.tune.search.optuna import OptunaSearch  # noqa: E402

from . import plugins, spaces  # noqa: E402
from . import storage as store  # noqa: E402
from .config import GPUS_PER_TRIAL, Experiment  # noqa: E402
from .errors import SweeperError  # noqa: E402
from .metrics import DIVERGED  # noqa: E402
from .basecache import BuildSummary, base_models, entry_status, remove_stale_temps  # noqa: E402
from .scenario import Scenario  # noqa: E402
from .trial import pick_device, run_trial  # noqa: E402

REDUCTION_FACTOR = 2    # ASHA rungs at first checkpoint x 2^k: exact in floating point, unlike 3^k


class TrialListener(Protocol):
    def trial_started(self, trial_id: str, hparams: dict) -> None: ...
    def trial_result(self, trial_id: str, metrics: dict) -> None: ...
    def trial_restarted(self, trial_id: str, error: str, hparams: dict) -> None: ...
    def trial_finished(self, trial_id: str, status: str, error: str | None, hparams: dict) -> None: ...


# -- Ray itself ----------------------------------------------------------------------------------------
ADDRESS_TIMEOUT_S = 5
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS


def _hostport(address: str) -> tuple[str, int]:
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise SweeperError(f"Ray address {address!r} is not auto or HOST:PORT")
    return host, int(port)


def _speaks_http2(host: str, port: int) -> str | None:
    """None if the port answers an HTTP/2 preface with a SETTINGS frame (as a Ray GCS, a gRPC server,
    does), else why not. Ray's own client would retry a silent or foreign server for minutes."""
    try:
        with socket.create_connection((host, port), timeout=ADDRESS_TIMEOUT_S) as s:
            s.sendall(_HTTP2_PREFACE)
            head = s.recv(9)
    except OSError as e:
        return e.strerror or str(e) or type(e).__name__
    return None if len(head) == 9 and head[3] == 4 else "it answers, but not as a Ray GCS (no gRPC)"


@contextlib.contextmanager
def _quiet_stderr():
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _gcs_answers(address: str) -> str | None:
    """None if a Ray GCS at `address` serves its session name within the timeout. The probe runs in a
    daemon thread because Ray's client blocks for ~40 s before giving up on its own."""
    outcome: dict = {}

    def probe() -> None:
        try:
            from ray._raylet import GcsClient

            client = GcsClient(address=address)
            outcome["session"] = client.internal_kv_get(b"session_name", namespace=b"session",
                                                        timeout=ADDRESS_TIMEOUT_S)
        except Exception as e:  # noqa: BLE001 - any failure means "not a usable GCS"
            outcome["error"] = str(e).splitlines()[0] if str(e) else type(e).__name__

    thread = threading.Thread(target=probe, daemon=True)
    with _quiet_stderr():  # Ray's C++ client logs its refusals to fd 2; the user gets our one line instead
        thread.start()
        thread.join(ADDRESS_TIMEOUT_S + 1)
    if "session" in outcome:
        return None
    return outcome.get("error", "no answer from its GCS")


def check_address(address: str) -> None:
    """One clear error within seconds unless a Ray GCS answers at HOST:PORT. A plain TCP connect is not
    enough: an open port that is not Ray made `ray.init` hang for over 5 minutes."""
    host, port = _hostport(address)
    why = _speaks_http2(host, port)
    if why is None and "://" not in address:  # ray:// is Ray Client's own protocol: TCP + HTTP/2 suffice
        why = _gcs_answers(f"{host}:{port}")
        if why and ("InvalidAuthToken" in why or "uthentication" in why):
            raise SweeperError(f"the Ray cluster at {address} refuses this driver without its token: set "
                               "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or ~/.ray/auth_token) to the cluster's token")
    if why:
        raise SweeperError(f"no Ray cluster answers at {address} within {ADDRESS_TIMEOUT_S} s ({why})")


def resolve_auto() -> str:
    """What `--address auto` joins: RAY_ADDRESS, else the cluster recorded in Ray's temp directory
    (`ray_current_cluster`, the last `ray start`), else the one Ray GCS running on this machine. Ray's own
    "auto" prefers any running GCS over the record, so with a stale record it would join whatever
    embedded Ray another process happens to run; the record wins here."""
    from ray._private.services import canonicalize_bootstrap_address, find_bootstrap_address, find_gcs_addresses

    env = os.environ.get("RAY_ADDRESS", "")
    recorded = find_bootstrap_address(None)
    if not env and recorded:
        return recorded
    if not env:
        running = set(find_gcs_addresses())
        if len(running) == 1:
            return running.pop()
        if len(running) > 1:
            raise SweeperError(f"--address auto: {len(running)} Ray clusters run on this machine and none is "
                               "recorded; name one with --address HOST:PORT")
        raise SweeperError("--address auto: no running Ray cluster is recorded on this machine")
    try:
        found = canonicalize_bootstrap_address(env)
    except (ConnectionError, ValueError) as e:
        raise SweeperError(f"--address auto: {str(e).splitlines()[0]}") from None
    if not found:
        raise SweeperError("--address auto: RAY_ADDRESS names no cluster")
    return found


def check(address: str | None) -> str | None:
    """The address to join, resolved (`auto`) and probed: one clear error within seconds if no Ray
    answers there. None and "local" mean a new embedded Ray and need no check."""
    if address == "auto":
        found = resolve_auto()
        try:
            check_address(found)
        except SweeperError as e:
            raise SweeperError(f"--address auto found {found} in Ray's record of this machine's last cluster, "
                               f"but {e}") from None
        return found
    if address and address != "local":
        check_address(address)
    return address


def start(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None) -> bool:
    """Join `address` (a cluster; `auto` = the one Ray has recorded on this machine) or start a new
    embedded Ray; True if this call started it. Without an address Ray is always new and local
    (`address="local"`): plain `ray.init()` would join whatever cluster the machine last recorded, or
    hang for minutes on a stale record."""
    address = check(address)
    if ray.is_initialized():  # a caller (tests, a notebook) already runs Ray in this process: use it
        return False
    try:
        if address and address != "local":
            ray.init(address=address, logging_level="WARNING", log_to_driver=False)
        else:
            ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                     logging_level="WARNING", log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise SweeperError(f"cannot start or join Ray{f' at {address}' if address else ''}: "
                           f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return True


def describe() -> str:
    """Which Ray this process is using, for the first progress line."""
    s = slots()
    gcs = ray.get_runtime_context().gcs_address
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    return f"Ray at {gcs} ({nodes} node{'s' * (nodes != 1)}, {s.cpus} CPUs, {s.gpus:g} GPUs)"


def stop() -> None:
    ray.shutdown()


@dataclass
class Slots:
    cpus: int
    gpus: float
    gpus_per_trial: float = GPUS_PER_TRIAL  # several small trials share a GPU (admission only; Ray caps no memory)
    device: str = "auto"  # the experiment's: cuda asks for GPUs even before any is up; cpu/mps never do

    @property
    def gpu(self) -> bool:
        """Whether trials and builds ask Ray for GPUs. `auto` follows what the cluster shows now; `cuda`
        asks regardless, so an autoscaling cluster that starts without GPU workers gets them added."""
        return self.device.startswith("cuda") or (self.device == "auto" and self.gpus > 0)

    @property
    def concurrent(self) -> int:
        if not self.gpu:
            return max(1, self.cpus)
        if not self.gpus:  # none up yet: one GPU's worth until the autoscaler adds more (--max-concurrent for more)
            return max(1, int(1 / self.gpus_per_trial))
        return max(1, min(self.cpus, int(self.gpus / self.gpus_per_trial)))

    @property
    def resources(self) -> dict:
        return {"cpu": 1, "gpu": self.gpus_per_trial} if self.gpu else {"cpu": 1}

    @property
    def trial_task(self) -> dict:
        """Ray task options of a plain trial (references, fresh seeds)."""
        return {"num_gpus": self.gpus_per_trial} if self.gpu else {}

    @property
    def build_task(self) -> dict:
        """Base-model training and crafting take a whole GPU where one exists (they fill it)."""
        return {"num_gpus": min(1.0, self.gpus) if self.gpus else 1.0} if self.gpu else {}


def slots(gpus_per_trial: float = GPUS_PER_TRIAL, device: str = "auto") -> Slots:
    res = ray.cluster_resources()
    return Slots(int(res.get("CPU", 1)), float(res.get("GPU", 0)), gpus_per_trial, device)


def check_device(device: str, embedded: bool) -> None:
    """`device: cuda` on an embedded Ray without GPUs would leave every trial pending for ever: one line
    instead. A joined cluster may still add GPU workers (autoscaling), so there it is only waited for."""
    if embedded and device.startswith("cuda") and not ray.cluster_resources().get("GPU", 0):
        raise SweeperError(f"device: {device}, but this machine has no GPU that Ray can see; "
                           "use device: auto or cpu, or --address a cluster with GPU workers")


# -- base models and references, as Ray tasks (use every core) -------------------------------------------
@ray.remote(num_cpus=1)
def _build_base(scenario: dict, seed: int, base_dir: str, device: str, plugin_specs: list[dict]) -> dict:
    plugins.ensure(plugin_specs)
    return base_models(Scenario.from_dict(scenario), seed, base_dir, device=pick_device(device)).manifest


def build_bases(scenarios: list[Scenario], seeds: list[int], base_dir: str, device: str = "auto",
                max_failures: int = 2, plugin_specs: list[dict] | None = None) -> BuildSummary:
    """Train, in parallel, the base models of every (scenario, seed) that is absent or broken (a file
    failing its manifest checksum; the task moves it aside first), after removing the temporary folders
    of dead builds. Returns what it did, broken entries with the reason, for the progress line."""
    summary = BuildSummary(removed=remove_stale_temps(base_dir))
    todo = [(sc, s) for sc in scenarios for s in seeds if summary.record(sc, s, entry_status(sc, s, base_dir))]
    options = {**slots(device=device).build_task, "max_retries": max_failures}  # a build lost with its node is redone
    ray.get([_build_base.options(**options).remote(sc.as_dict(), s, base_dir, device, plugin_specs or []) for sc, s in todo])
    return summary


@ray.remote(num_cpus=1)
def _run_plain(config: dict) -> list[dict]:
    return run_trial(config)


def run_trials(configs: list[dict], gpus_per_trial: float = GPUS_PER_TRIAL,
               max_failures: int = 2, device: str = "auto") -> list[list[dict] | str]:
    """Plain trials (references, fresh-seed re-measurements) as parallel Ray tasks; no scheduler, no
    searcher. Each entry is the trial's rows, or its error line if it raised. A task whose worker or node
    dies is retried up to `max_failures` times; an exception it raises is not (it would raise again)."""
    options = {**slots(gpus_per_trial, device).trial_task, "max_retries": max_failures}
    refs = [_run_plain.options(**options).remote(c) for c in configs]
    out: list[list[dict] | str] = []
    for ref in refs:
        try:
            out.append(ray.get(ref))
        except ray.exceptions.RayTaskError as e:
            lines = [ln for ln in str(e.cause if e.cause else e).strip().splitlines() if ln.strip()]
            out.append(f"{type(e.cause).__name__}: {lines[-1] if lines else 'unknown error'}")
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                ray.exceptions.ObjectLostError) as e:  # retries exhausted: this task fails, the sweep goes on
            out.append(f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else 'lost'}")
    return out


# -- one attack, one Tuner; one Optuna study and one ASHA per method ------------------------------------
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


class _Forward(tune.Callback):
    """Driver-side Tune callback -> the method's listener (which writes MLflow and prints progress).

    Tune pickles its run config with the experiment (tuner.pkl) and a restored Tuner unpickles it, so the
    callback holds only the experiment's path and finds the listeners of the driver now running it."""

    def __init__(self, key: str, max_budget: float):
        self.key, self.max_budget = key, max_budget

    def _to(self, trial) -> TrialListener:
        return _LISTENERS[self.key][trial.config["method"]]

    def on_trial_start(self, iteration, trials, trial, **info):
        self._to(trial).trial_started(trial.trial_id, dict(trial.config["hparams"]))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        keep = {k: v for k, v in result.items() if "/" in k or k in ("budget", "removal", "objective", "over_budget")}
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


def study_seed(sweep_seed: int, attack: str, method: str) -> int:
    return (sweep_seed * 1_000_003 + zlib.crc32(f"{attack}/{method}".encode())) % (2**31)


def _study(exp: Experiment, attack: str, method: str, sweep_seed: int) -> OptunaSearch:
    """Optuna proposes the signature defaults first, then the space's listed points, then TPE."""
    from . import methods as _methods
    from .registry import methods

    space = exp.search_space(method)
    defaults = _methods.hyperparameters(methods.get(method))
    return OptunaSearch(space=space.params, metric="objective", mode="max",
                        points_to_evaluate=[defaults, *space.points],
                        sampler=spaces.sampler(study_seed(sweep_seed, attack, method)))


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
                  listeners: dict[str, TrialListener]) -> set[str]:
    """Continue an interrupted attack's Tuner from its records under `storage`: finished trials stay
    finished, trials that were running start again from their beginning (under the same trial id), the
    searcher (every method's Optuna study) and schedulers continue from their last saved state. Returns
    the ids of every trial the restored experiment holds: a trial logged after Tune last saved its state
    is not among them (Tune runs a new trial in its place)."""
    path, fs = _tune_storage(storage, attack)
    _LISTENERS[path] = listeners
    try:
        tuner = tune.Tuner.restore(path, trainable=_trainable_with(bases, exp), resume_unfinished=True,
                                   resume_errored=True, restart_errored=False, storage_filesystem=fs)
        grid = tuner.fit()
    finally:
        _LISTENERS.pop(path, None)
    return {_trial_id(result) for result in grid}


def _trial_id(result) -> str:
    if "trial_id" in (result.metrics or {}):
        return str(result.metrics["trial_id"])
    found = re.search(r"_([0-9a-f]{5}_\d{5})_", Path(result.path).name)  # a trial that never reported
    return found.group(1) if found else ""


def tune_attack(exp: Experiment, attack: str, bases: dict[str, dict], storage: Path,
                listeners: dict[str, TrialListener], sweep_seed: int = 0) -> None:
    """Every method of `exp` against one attack: `exp.trials` trials each, ASHA stopping weak trials
    at checkpoints (time_attr = nominal budget), every trial reporting its whole curve."""
    path, _ = _tune_storage(storage, attack)
    storage_path, fs = _tune_storage(storage)
    searcher = RoutingSearcher({m: _study(exp, attack, m, sweep_seed) for m in exp.methods}, exp.trials)
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
    try:
        tuner.fit()
    finally:
        _LISTENERS.pop(path, None)
