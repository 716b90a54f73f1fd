"""A sweep's write path, end to end: validate everything first, then the base models, then per attack each
cell, an (attack, discovery level), with its references, one tuned study per method and the fresh-seed
re-measurement (sweeper/phases.py), MLflow logging from the driver, and the report. Ray and MLflow are reached only through `tuning` and `tracking`, imported when a
sweep really runs (`import sweeper` loads neither)."""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from . import config, phases, provenance, workplan
from . import storage as store
from .config import Experiment
from .errors import SweeperError
from .listener import Progress
from .phases import GOLD, Cell, Shared, Tuning
from .progress import Board, Estimate
from .readback import SweepResult, rebuild_report, resume_command
from .workdir import DEFAULT_WORKDIR, prepare_storage, prepare_workdir, report_folder, storage_choice

if TYPE_CHECKING:
    from .tracking import RunWriter
    from .tuning.studies import StudyMirror

__all__ = ["SweepResult", "run_sweep"]


def run_sweep(experiment: Experiment | str | os.PathLike | None = None, *, workdir: str | os.PathLike = DEFAULT_WORKDIR,
              trials: int | None = None, tracking_uri: str | None = None, address: str | None = None,
              profile: str | None = None, name: str | None = None, gpus_per_trial: float | None = None,
              storage: str | os.PathLike | None = None, max_failures: int | None = None,
              max_concurrent: int | None = None,
              resume: str | bool | None = None, progress: Progress = print,
              command: list[str] | None = None, optuna_storage: str | None = None) -> SweepResult:
    """Run a whole sweep and write its report. `experiment`: an Experiment, a YAML path, a bundled
    name, or None for the quickstart. `name`: the sweep's name, which must be new; without it the
    experiment's name, numbered if taken. `command`: the command line that started it, recorded on the
    sweep so that `sweeper sweeps` can say how to resume it. `optuna_storage`: the Optuna RDB storage URL
    the sweep's studies are mirrored to, for optuna-dashboard (default sqlite:///WORKDIR/optuna.db; "none":
    no mirror). `progress`: where messages go; a `progress.Board` also gets the estimate of time left (a
    plain callable gets it appended to the lines that report finished work). Every input is checked before
    anything is written to MLflow."""
    progress = progress if isinstance(progress, Board) else Board(progress, tty=False)
    exp = experiment if isinstance(experiment, Experiment) else config.load(experiment, profile)
    exp = config.apply_options(exp, trials=trials, gpus_per_trial=gpus_per_trial, max_failures=max_failures,
                               max_concurrent=max_concurrent)  # validated as the file's keys are
    existed = Path(workdir).expanduser().exists()
    root = prepare_storage(storage_choice(storage, exp.storage), Path(workdir).expanduser().resolve())
    wd = prepare_workdir(workdir)
    from . import tracking  # the MLflow edge: imported only when a sweep really runs
    from . import tuning    # the Ray edge
    from .tuning import studies  # Optuna's storage, for optuna-dashboard

    uri = tracking_uri or tracking.default_uri(wd)
    started = False
    try:
        address = tuning.check(address)  # seconds; before a new tracking store's ~10 s of schema creation
        optuna_url = studies.url(optuna_storage, wd)  # None: no mirror
        if optuna_url:
            studies.check(optuna_url)  # milliseconds, before a new MLflow store's ~10 s
        tracking.open_store(uri, wd)  # before Ray starts: a bad URI costs nothing and leaves nothing
        if resume:
            name = _resumable(uri, wd, exp, resume)
            if tracking.SweepRecord(uri, name, wd).status() == "finished":
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
        record = tracking.SweepRecord(uri, name or exp.name, wd)
        if resume:
            record.attach()
        else:
            record.reserve(numbered=name is None, command=command)
        where = ("embedded " if started and not address else "joined ") + tuning.describe()
        if resume:
            where = f"resuming sweep {name}; {where}"
        mirror = studies.StudyMirror(optuna_url, record.sweep, exp, progress,
                                     resumed=bool(resume)) if optuna_url else None
        return _run(exp, wd, root, uri, tracking.RunWriter(record, background=True), tuning, progress, where,
                    bool(resume), mirror)
    finally:
        progress.close()
        if started:
            tuning.stop()


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
    logged = tracking.read_experiment(tracking.SweepRecord(uri, name, wd))
    if logged:
        logged.setdefault("search_seed", 0)  # sweeps logged before the key existed searched with seed 0
    now = json.loads(json.dumps(exp.as_dict(), default=str))
    if logged and logged != now:
        keys = sorted(k for k in set(logged) | set(now) if logged.get(k) != now.get(k))
        raise SweeperError(f"--resume {name}: this experiment differs from the one the sweep ran (in "
                           f"{', '.join(keys)}); resume it with the same file, profile and options")
    return name


def _run(exp: Experiment, wd: Path, root: Path | str, uri: str, tracker: RunWriter, tuning: Tuning,
         progress: Progress, where: str,
         resumed: bool = False, mirror: StudyMirror | None = None) -> SweepResult:
    """The sweep proper. Whatever stops it (Ctrl-C, an error) closes every run it opened, as KILLED or
    FAILED, and tags the sweep, so an interrupted sweep never looks finished."""
    cells: list[Cell] = []
    try:
        result = _stages(exp, wd, root, uri, tracker, tuning, progress, where, cells, resumed, mirror)
        tracker.wait()
    except BaseException as e:
        _abort(tracker, cells, e, progress)
        raise
    finally:
        tracker.close()
    tracker.record.set_status("finished")
    return result


def _abort(tracker: RunWriter, cells: list["Cell"], error: BaseException, progress: Progress) -> None:
    interrupted = isinstance(error, KeyboardInterrupt)
    status = "KILLED" if interrupted else "FAILED"
    reason = ("interrupted (SIGINT / Ctrl-C)" if interrupted
              else f"the sweep stopped on an error: {type(error).__name__}: {str(error)[:300]}")
    try:
        for run in cells:
            for method, parent in run.parents.items():
                if parent in tracker.open_runs:
                    tracker.end_parent(parent, run.rows(method), status, reason)
        tracker.abort(status, reason)
        tracker.record.set_status("interrupted" if interrupted else "failed")
    except Exception as e:  # noqa: BLE001 - never hide the original error behind a cleanup error
        progress(f"could not close every MLflow run ({type(e).__name__}); the next `sweeper run` in this store "
                 "marks them FAILED")
        return
    command = tracker.record.command
    resume = f"; `{resume_command(command, tracker.sweep, {})}` continues it" if command else ""
    progress(f"sweep {tracker.sweep} {'interrupted' if interrupted else 'failed'}: its open runs are {status}; "
             f"`sweeper report --sweep {tracker.sweep}` writes its partial report{resume}")


def _stages(exp: Experiment, wd: Path, root: Path | str, uri: str, tracker: RunWriter, tuning: Tuning,
            progress: Progress, where: str,
            cells: list["Cell"], resumed: bool = False, mirror: StudyMirror | None = None) -> SweepResult:
    sweep = tracker.sweep
    base_dir = str(store.join(root, "base"))
    if root != wd:
        where += f"; storage {store.display(root)}"
    t0 = time.perf_counter()
    progress(f"sweep {sweep}: attacks {', '.join(sc.attack for sc in exp.scenarios)}; {len(exp.methods)} methods "
             f"x {exp.trials} trials, budgets {list(exp.budgets)}, tuning seeds {list(exp.seeds)}, fresh seeds "
             f"{list(exp.fresh_seeds)}; {where}; tracking {uri}")
    all_seeds = list(exp.seeds) + list(exp.fresh_seeds)
    first_look = list(exp.seeds) + list(exp.fresh_seeds[:exp.looks[0] if exp.looks else 0])
    from . import plugins

    plugin_specs = [plugins.spec(p) for p in exp.plugins]  # shipped with every task: workers need no path
    # Later looks' fresh seeds get their base models when a look asks for them (fresh): most never do.
    estimate = _estimate(progress, exp, tuning)
    if estimate is not None:
        estimate.enter("bases")
    built = tuning.build_bases(list(exp.scenarios), first_look, base_dir, exp.device, exp.max_failures, plugin_specs,
                               on_built=_base_built(progress, estimate) if estimate is not None else None)
    manifests = phases.Manifests(base_dir)
    if estimate is not None and not built.trained and not built.rebuilt:
        _cached_rate(estimate, exp, manifests)
    progress(f"base models: {built} ({time.perf_counter() - t0:.1f}s)")
    common = provenance.common_tags(sweep, exp.profile)
    rows: list[dict] = []
    parents: list[str] = []
    # plain trials (references, fresh runs) in the slots Tune's trials leave free; every trial counts
    # against --max-concurrent, where given
    pool = tuning.Pool(exp.max_concurrent or tuning.slots(exp.gpus_per_trial, exp.device).concurrent,
                       exp.gpus_per_trial, exp.max_failures, exp.device)
    for scenario in exp.scenarios:
        tags = {**common, "scenario": provenance.scenario_hash(scenario, all_seeds)}
        base = {"scenario": scenario.as_dict(), "base_dir": base_dir, "seeds": list(exp.seeds),
                "budgets": list(exp.budgets), "device": exp.device, "plugins": plugin_specs,
                "cache_entries": len(all_seeds) * len(exp.discovery)}
        logged = phases.logged_runs(tracker.record, scenario.attack) if resumed else None
        # none and retrain do not depend on the discovery level: measured once per attack, shared by its levels
        refs = phases.parents(tracker, scenario.attack, GOLD, tags, exp, phases.at_level(logged, ""))
        parents += refs.values()
        shared = Shared(refs, {m: [] for m in GOLD})
        for level in exp.discovery:
            run = phases.level_run(exp, scenario, level, base, root, tracker, tuning, tags, progress, logged, shared,
                                   manifests, mirror=mirror, pool=pool)
            cells.append(run)
            parents += [p for m, p in run.parents.items() if m not in GOLD]
            phases.references(run)
            phases.tune(run)
            phases.fresh(run)
            for method, parent in run.parents.items():
                if method not in GOLD:
                    tracker.log_inputs(parent, run.parent_inputs(method))
                    tracker.end_parent(parent, run.tables[method])
                    rows += run.tables[method]
        for method, parent in refs.items():
            tracker.log_inputs(parent, run.parent_inputs(method))
            tracker.end_parent(parent, shared.tables[method])
            rows += shared.tables[method]
    folder = report_folder(wd, sweep)
    if estimate is not None:
        estimate.enter("report")
    from . import report  # summary and rendering: only once every phase is done

    summary = report.write(pd.DataFrame(rows), folder, exp.delta, exp.search_space, f"sweeper report: {sweep}",
                           report.plan_of(exp.as_dict()))
    tracker.log_files(parents, folder)
    for run in cells:  # none and retrain from the attack's first level only: they are shared
        first = run.level == exp.discovery[0]
        _log_parent_summary(run, summary[(summary.attack == run.attack) & (summary.discovery == run.level)],
                            [m for m in run.parents if first or m not in GOLD])
    progress(report.table(summary, exp.delta, folder))
    progress(f"report: {folder / 'report.html'} ({time.perf_counter() - t0:.1f}s); "
             f"MLflow: {mlflow_page(uri, tracker.record.experiment_id)}"
             + (f"; Optuna: optuna-dashboard {mirror.url}" if mirror else ""))
    return SweepResult(sweep, wd, uri, summary, folder, exp.delta)


def mlflow_page(uri: str, experiment_id: str) -> str:
    """How to open the sweep's runs table: MLflow 3.17's UI starts in its GenAI mode (a per-browser toggle
    the experiment's kind tag does not change), so the address asks for the model-training view."""
    page = f"#/experiments/{experiment_id}?workflowType=machine_learning"
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/{page}"
    return f"mlflow ui --backend-store-uri {uri}, then open http://127.0.0.1:5000/{page}"


def _estimate(progress: Progress, exp: Experiment, tuning: Tuning) -> Estimate | None:
    """The sweep's estimate of time left (sweeper/progress.py), planned for every cell, on its board."""
    if not isinstance(progress, Board):
        return None
    slots = exp.max_concurrent or tuning.slots(exp.gpus_per_trial, exp.device).concurrent
    progress.estimate = Estimate(slots)
    workplan.plan(progress.estimate, exp, phases.cell_name)
    return progress.estimate


def _base_built(progress: Board, estimate: Estimate):
    """build_bases' hook: each base model built is two trainings (θ_poisoned and θ_retrain), 2 units, whose
    seconds (and the crafting's) its manifest records; the first build also plans the rest."""
    def built(builds: int, manifest: dict) -> None:
        if "bases" not in estimate.groups:
            estimate.plan("bases", builds, 2.0, 0.0)
        seconds = sum(manifest["train_seconds"].values()) + float(manifest.get("craft_seconds") or 0.0)
        estimate.finished("bases", 2.0, 0.0, seconds)
        estimate.base_models(2.0, seconds)
        progress.update()
    return built


def _cached_rate(estimate: Estimate, exp: Experiment, manifests: phases.Manifests) -> None:
    """Every base model cached: the training rate their manifests recorded (θ_retrain's, one unit each)."""
    recorded = [m["train_seconds"]["retrain"] for sc in exp.scenarios for _, m in manifests(sc, exp.seeds)]
    if recorded:
        estimate.base_models(len(recorded), sum(recorded))


PARENT_METRICS = ("removal", "removal_ci_low", "removal_ci_high", "removal_pooled", "acc_test", "acc_val",
                  "attack_effect", "cost_fraction")
# Also flat, one metric per budget (`removal.b0.04`): MLflow's runs table and Compare show only a stepped
# metric's last step, so without these the table could not say which method removes the most at each budget.
FLAT_METRICS = ("removal", "removal_ci_low", "removal_ci_high", "acc_test")


def flat_name(name: str, budget: float) -> str:
    return f"{name}.b{budget:g}"


def _log_parent_summary(run: "Cell", summary: pd.DataFrame, methods: list[str]) -> None:
    """Each parent run gets its report rows as metrics stepped by budget (step = per-mille, as the
    trials') and flat per budget, the configuration chosen at its largest budget as params and, per
    budget, as a tag: the runs table and the UI's Compare view then answer per budget."""
    for method in methods:
        parent = run.parents[method]
        mine = summary[summary.method == method].sort_values("budget")
        metrics = [(name, float(r[name]), float(r["budget"])) for _, r in mine.iterrows()
                   for name in PARENT_METRICS if name in r and pd.notna(r[name])]
        metrics += [(flat_name(name, r["budget"]), float(r[name]), 0.0) for _, r in mine.iterrows()
                    for name in FLAT_METRICS if name in r and pd.notna(r[name])]
        chosen = {f"{r['budget']:g}": json.loads(r["hparams"]) for _, r in mine.iterrows()
                  if isinstance(r["hparams"], str) and r["hparams"] not in ("", "{}")}
        last = chosen[max(chosen, key=float)] if chosen else {}
        run.tracker.log_summary(parent, metrics, {f"chosen.{k}": v for k, v in last.items()},
                                {"chosen_per_budget": json.dumps(chosen, sort_keys=True),
                                 **{f"verdict.{r['budget']:g}": r["verdict"] for _, r in mine.iterrows()
                                    if isinstance(r["verdict"], str)}})
