"""A sweep end to end: validate everything first, then base models, references, one tuned study per
(attack, method), MLflow logging from the driver, and the report. Ray and MLflow are reached only
through `tuning` and `tracking`."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Callable

import pandas as pd

from . import config, report
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
        probe = path / ".sweeper-write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise SweeperError(f"work directory {path} is not writable ({e.strerror or e})") from None
    return path


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
        self.finished = 0
        self.started_at: dict[str, float] = {}

    def trial_started(self, trial_id: str, hparams: dict) -> None:
        if trial_id in self.runs:  # a retried or restored trial reopens its run, never a second one
            return
        self.hparams[trial_id], self.rows[trial_id] = hparams, []
        self.started_at[trial_id] = time.perf_counter()
        self.runs[trial_id] = self.tracker.start_child(
            self.parent_id, f"{self.method}-{trial_id}", hparams,
            {**self.tags, "method": self.method, "attack": self.attack, "trial_id": trial_id})

    def trial_result(self, trial_id: str, metrics: dict) -> None:
        self.rows[trial_id].append(metrics)
        self.tracker.log_checkpoint(self.runs[trial_id], metrics)

    def trial_finished(self, trial_id: str, status: str, error: str | None) -> None:
        rows = self.rows.get(trial_id, [])
        diverged = any(r.get("objective") == DIVERGED and not r.get("over_budget") for r in rows)
        tags = {"error": error} if error else {}
        if diverged:
            tags["diverged"] = "true"
        self.tracker.end_child(self.runs[trial_id], status, rows, tags)
        self.status[trial_id] = status
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
        return [{"attack": self.attack, "method": self.method, "trial_id": trial_id, "phase": "tune",
                 "run_status": self.status.get(trial_id, "UNKNOWN"),
                 "hparams": report.hparams_json(self.hparams[trial_id]), **r}
                for trial_id, rows in self.rows.items() for r in rows]


def _next_free_name(uri: str, wanted: str) -> str:
    """Each run is a new sweep: quickstart, quickstart-2, ..."""
    from . import tracking

    taken = set(tracking.sweeps(uri))
    if wanted not in taken:
        return wanted
    i = 2
    while f"{wanted}-{i}" in taken:
        i += 1
    return f"{wanted}-{i}"


def run_sweep(experiment: Experiment | str | os.PathLike | None = None, *, workdir: str | os.PathLike = "sweeper-work",
              trials: int | None = None, tracking_uri: str | None = None, address: str | None = None,
              profile: str | None = None, name: str | None = None, progress: Progress = print) -> SweepResult:
    """Run a whole sweep and write its report. `experiment`: an Experiment, a YAML path, a bundled
    name, or None for the quickstart. Every input is checked before anything is written to MLflow."""
    exp = experiment if isinstance(experiment, Experiment) else config.load(experiment, profile)
    if trials is not None:
        if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
            raise SweeperError(f"--trials must be a positive integer, got {trials!r}")
        exp = replace(exp, trials=trials)
    existed = Path(workdir).expanduser().exists()
    wd = prepare_workdir(workdir)
    from . import tracking  # the MLflow edge: imported only when a sweep really runs
    from . import tuning    # the Ray edge

    uri = tracking_uri or tracking.default_uri(wd)
    try:
        tracking.check_server(uri)
        started = tuning.start(address)
    except SweeperError:
        if not existed and not any(wd.iterdir()):
            wd.rmdir()  # bad input leaves nothing behind, not even an empty work directory
        raise
    try:
        sweep = name or _next_free_name(uri, exp.name)
        tracker = tracking.Tracker(uri, sweep, wd)
        return _run(exp, wd, uri, sweep, tracker, tuning, progress)
    finally:
        if started:
            tuning.stop()


def _run(exp: Experiment, wd: Path, uri: str, sweep: str, tracker, tuning, progress: Progress) -> SweepResult:
    base_dir = str(wd / "base")
    t0 = time.perf_counter()
    progress(f"sweep {sweep}: attacks {', '.join(sc.attack for sc in exp.scenarios)}; {len(exp.methods)} methods "
             f"x {exp.trials} trials, budgets {list(exp.budgets)}, tuning seeds {list(exp.seeds)}, fresh seeds "
             f"{list(exp.fresh_seeds)}; tracking {uri}")
    all_seeds = list(exp.seeds) + list(exp.fresh_seeds)
    trained = tuning.build_bases(list(exp.scenarios), all_seeds, base_dir)
    progress(f"base models: {trained} trained, {len(exp.scenarios) * len(all_seeds) - trained} cached "
             f"({time.perf_counter() - t0:.1f}s)")
    common = {**_versions(), "sweep": sweep, "profile": exp.profile}
    if rev := _git_revision():
        common["git_revision"] = rev
    rows: list[dict] = []
    parents: list[str] = []
    for scenario in exp.scenarios:
        tags = {**common, "scenario": scenario_hash(scenario, all_seeds)}
        base = {"scenario": scenario.as_dict(), "base_dir": base_dir, "seeds": list(exp.seeds),
                "budgets": list(exp.budgets), "device": exp.device}
        open_parents = {m: tracker.start_parent(scenario.attack, m, tags, exp.as_dict())
                        for m in ("none", "retrain", *exp.methods)}
        parents += open_parents.values()
        run = _AttackRun(exp, scenario.attack, base, wd, tracker, tuning, tags, open_parents,
                         {m: [] for m in open_parents}, progress)
        _references(run)
        _tune(run)
        _fresh(run)
        for method, parent in open_parents.items():
            tracker.end_parent(parent, run.tables[method])
            rows += run.tables[method]
    folder = wd / "report"
    summary = report.write(pd.DataFrame(rows), folder, exp.delta, exp.search_space, f"sweeper report: {sweep}")
    tracker.log_files(parents, folder)
    progress(report.table(summary))
    progress(f"report: {folder / 'report.html'} ({time.perf_counter() - t0:.1f}s); "
             f"MLflow: mlflow ui --backend-store-uri {uri}")
    return SweepResult(sweep, wd, uri, summary, folder)


@dataclass
class _AttackRun:
    """What the three phases of one attack (references, tuning, fresh seeds) share."""
    exp: Experiment
    attack: str
    base: dict                     # the trial config common to every method
    wd: Path
    tracker: object
    tuning: object
    tags: dict
    parents: dict[str, str]        # method -> open parent run id
    tables: dict[str, list[dict]]  # method -> every checkpoint row, for the parent's trials.csv
    progress: Progress


def _tune(run: _AttackRun) -> None:
    exp = run.exp
    tags = {**run.tags, "phase": "tune", "seed": ",".join(map(str, exp.seeds))}
    listeners = {m: Listener(run.tracker, run.parents[m], run.attack, m, tags, exp.trials, run.progress)
                 for m in exp.methods}
    try:
        run.tuning.tune_attack(exp, run.attack, {m: {**run.base, "method": m} for m in exp.methods},
                               run.wd / "ray", listeners)
    except BaseException:
        for m, listener in listeners.items():
            run.tracker.end_parent(run.parents[m], listener.table(), "FAILED")
        raise
    for m, listener in listeners.items():
        run.tables[m] += [{**r, "n_seeds": len(exp.seeds)} for r in listener.table()]


def _log_plain(run: _AttackRun, method: str, name: str, hparams: dict, tags: dict, result, extra: dict) -> None:
    """One plain (non-Tune) trial as a child run of `method`'s parent; its rows go to the parent's table."""
    child = run.tracker.start_child(run.parents[method], name, hparams,
                                    {**run.tags, **tags, "method": method, "attack": run.attack, "trial_id": name})
    if isinstance(result, str):
        run.tracker.end_child(child, "FAILED", [], {"error": result})
        return
    for r in result:
        run.tracker.log_checkpoint(child, r)
    run.tracker.end_child(child, "FINISHED", result)
    run.tables[method] += [{"attack": run.attack, "method": method, "trial_id": name, **extra,
                            "run_status": "FINISHED", "hparams": report.hparams_json(hparams), **r} for r in result]


def _references(run: _AttackRun) -> None:
    """`none` and `retrain` on the tuning seeds (pooled): evaluated from the cached base models."""
    seeds = run.exp.seeds
    results = run.tuning.run_trials([{**run.base, "method": m} for m in ("none", "retrain")])
    for method, result in zip(("none", "retrain"), results):
        _log_plain(run, method, method, {}, {"phase": "tune", "seed": ",".join(map(str, seeds))}, result,
                   {"phase": "tune", "n_seeds": len(seeds)})
        if isinstance(result, list):
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
    t0 = time.perf_counter()
    results = run.tuning.run_trials([j[0] for j in jobs])
    for (cfg, method, source, hparams, seed), result in zip(jobs, results):
        tags = {"phase": "fresh", "seed": str(seed), "selected_from": source,
                "selected_for": ",".join(f"{b:g}" for b in cfg.get("budgets", []))}
        extra = {"phase": "fresh", "seed": seed, "source_trial": source, "n_seeds": 1}
        _log_plain(run, method, f"{source}-fresh{seed}", hparams, tags, result, extra)
        if isinstance(result, str):
            run.progress(f"[{run.attack}/{method}] fresh seed {seed} of {source}: FAILED ({result})")
    run.progress(f"[{run.attack}] fresh seeds {list(exp.fresh_seeds)}: {len(chosen)} chosen configurations + "
                 f"references re-measured in {len(jobs)} runs ({time.perf_counter() - t0:.1f}s)")


def rebuild_report(workdir: str | os.PathLike, sweep: str | None = None, tracking_uri: str | None = None) -> SweepResult:
    """Rebuild `report/` from MLflow alone (the latest sweep in the store unless named)."""
    wd = Path(workdir).expanduser().resolve()
    from . import tracking

    uri = tracking_uri or tracking.default_uri(wd)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
        raise SweeperError(f"no sweep found in {wd} (no {Path(uri[len('sqlite:///'):]).name})")
    tracking.check_server(uri)
    names = tracking.sweeps(uri)
    if not names:
        raise SweeperError(f"no sweep found in {uri}")
    sweep = sweep or names[0]
    tracker = tracking.Tracker(uri, sweep, prepare_workdir(wd))
    folder = wd / "report"
    logged = tracker.read_experiment()
    summary = report.write(tracker.read_rows(), folder, logged.get("delta", config.DEFAULT_DELTA),
                           lambda m: config.search_space(m, logged.get("spaces")), f"sweeper report: {sweep}")
    return SweepResult(sweep, wd, uri, summary, folder)


def compare_sweeps(names: list[str], workdir: str | os.PathLike = "sweeper-work",
                   tracking_uri: str | None = None) -> pd.DataFrame:
    """Sweeps side by side from MLflow alone: removal (fresh mean ± 95% half-width) and status per
    (attack, method, budget), one column group per sweep."""
    from . import tracking

    wd = Path(workdir).expanduser().resolve()
    uri = tracking_uri or tracking.default_uri(wd)
    tracking.check_server(uri)
    if len(set(names)) != len(names) or len(names) < 2:
        raise SweeperError("compare needs at least two different sweep names")
    known = tracking.sweeps(uri) if not uri.startswith("sqlite:///") or Path(uri[10:]).exists() else []
    missing = [n for n in names if n not in known]
    if missing:
        raise SweeperError(f"no sweep named {', '.join(missing)} in {uri} (known: {', '.join(known) or 'none'})")
    frames = []
    for name in names:
        tracker = tracking.Tracker(uri, name, wd)
        logged = tracker.read_experiment()
        s = report.summarize(tracker.read_rows(), logged.get("delta", config.DEFAULT_DELTA))
        s = s.set_index(["attack", "method", "budget"])[["removal", "removal_halfwidth", "acc_test", "status"]]
        frames.append(s.add_prefix(f"{name}:"))
    return pd.concat(frames, axis=1).reset_index()
