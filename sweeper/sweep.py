"""A sweep's write path, end to end: validate everything first, then per attack its base models,
references, one tuned study per method and the fresh-seed re-measurement, MLflow logging from the
driver, and the report. Ray and MLflow are reached only through `tuning` and `tracking`, imported when a
sweep really runs (`import sweeper` loads neither)."""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pandas as pd

from . import config, provenance
from . import storage as store
from .config import Experiment
from .errors import SweeperError
from .listener import Listener, Progress
from .readback import SweepResult, rebuild_report, resume_command
from .report.selection import REFERENCES, hparams_json, selections
from .workdir import DEFAULT_WORKDIR, prepare_storage, prepare_workdir, report_folder, storage_choice

if TYPE_CHECKING:
    from .basecache import BuildSummary
    from .scenario import Scenario
    from .tracking import RunWriter, SweepRecord

__all__ = ["SweepResult", "run_sweep"]


class Tuning(Protocol):
    """What the sweep asks of the Ray edge (the module `sweeper.tuning`, imported only when a sweep runs)."""

    def build_bases(self, scenarios: list[Scenario], seeds: list[int], base_dir: str, device: str,
                    max_failures: int, plugin_specs: list[dict]) -> BuildSummary: ...

    def run_trials(self, configs: list[dict], gpus_per_trial: float, max_failures: int,
                   device: str) -> list[list[dict] | str]: ...

    def can_resume(self, storage, attack: str) -> bool: ...

    def resume_attack(self, exp: Experiment, attack: str, bases: dict[str, dict], storage,
                      listeners: dict[str, Listener]) -> set[str]: ...

    def tune_attack(self, exp: Experiment, attack: str, bases: dict[str, dict], storage,
                    listeners: dict[str, Listener]) -> None: ...


def run_sweep(experiment: Experiment | str | os.PathLike | None = None, *, workdir: str | os.PathLike = DEFAULT_WORKDIR,
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
    exp = config.apply_options(exp, trials=trials, gpus_per_trial=gpus_per_trial, max_failures=max_failures,
                               max_concurrent=max_concurrent)  # validated as the file's keys are
    existed = Path(workdir).expanduser().exists()
    root = prepare_storage(storage_choice(storage, exp.storage), Path(workdir).expanduser().resolve())
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
        return _run(exp, wd, root, uri, tracking.RunWriter(record), tuning, progress, where, bool(resume))
    finally:
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
         resumed: bool = False) -> SweepResult:
    """The sweep proper. Whatever stops it (Ctrl-C, an error) closes every run it opened, as KILLED or
    FAILED, and tags the sweep, so an interrupted sweep never looks finished."""
    attack_runs: list[_AttackRun] = []
    try:
        result = _stages(exp, wd, root, uri, tracker, tuning, progress, where, attack_runs, resumed)
    except BaseException as e:
        _abort(tracker, attack_runs, e, progress)
        raise
    tracker.record.set_status("finished")
    return result


def _abort(tracker: RunWriter, attack_runs: list["_AttackRun"], error: BaseException, progress: Progress) -> None:
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
    first_look = list(exp.seeds) + list(exp.fresh_seeds[:exp.looks[0] if exp.looks else 0])
    from . import plugins

    plugin_specs = [plugins.spec(p) for p in exp.plugins]  # shipped with every task: workers need no path
    # Later looks' fresh seeds get their base models when a look asks for them (_fresh): most never do.
    built = tuning.build_bases(list(exp.scenarios), first_look, base_dir, exp.device, exp.max_failures, plugin_specs)
    progress(f"base models: {built} ({time.perf_counter() - t0:.1f}s)")
    common = provenance.common_tags(sweep, exp.profile)
    rows: list[dict] = []
    parents: list[str] = []
    for scenario in exp.scenarios:
        tags = {**common, "scenario": provenance.scenario_hash(scenario, all_seeds)}
        base = {"scenario": scenario.as_dict(), "base_dir": base_dir, "seeds": list(exp.seeds),
                "budgets": list(exp.budgets), "device": exp.device, "plugins": plugin_specs}
        logged = _logged_runs(tracker.record, scenario.attack) if resumed else None
        open_parents = _parents(tracker, scenario.attack, ("none", "retrain", *exp.methods), tags, exp, logged)
        parents += open_parents.values()
        run = _AttackRun(exp, scenario.attack, base, root, tracker, tuning, tags, open_parents,
                         {m: [] for m in open_parents}, progress, logged=logged, scenario=scenario)
        attack_runs.append(run)
        _references(run)
        _tune(run)
        _fresh(run)
        for method, parent in open_parents.items():
            tracker.end_parent(parent, run.tables[method])
            rows += run.tables[method]
    folder = report_folder(wd, sweep)
    from . import report  # summary and rendering: only once every phase is done

    summary = report.write(pd.DataFrame(rows), folder, exp.delta, exp.search_space, f"sweeper report: {sweep}",
                           report.plan_of(exp.as_dict()))
    tracker.log_files(parents, folder)
    for run in attack_runs:
        _log_parent_summary(run, summary[summary.attack == run.attack])
    progress(report.table(summary, exp.delta))
    progress(f"report: {folder / 'report.html'} ({time.perf_counter() - t0:.1f}s); "
             f"MLflow: mlflow ui --backend-store-uri {uri}")
    return SweepResult(sweep, wd, uri, summary, folder, exp.delta)


def _parents(tracker: RunWriter, attack: str, methods, tags: dict, exp: Experiment, logged: pd.DataFrame | None) -> dict[str, str]:
    """A parent run per method: new, or (--resume) the interrupted sweep's, reopened. A new one carries
    the experiment's settings as flat dotted params (`attack.eps`, `recipe.epochs`), for filtering."""
    out = {}
    settings = provenance.experiment_params(exp, attack)
    for m in methods:
        found = [] if logged is None else list(logged[(logged.level == "parent") & (logged.method == m)].run_id)
        if found:
            tracker.reopen(found[0])
            out[m] = found[0]
        else:
            out[m] = tracker.start_parent(attack, m, tags, exp.as_dict())
            tracker.log_params(out[m], settings)
    return out


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


@dataclass
class _AttackRun:
    """What the three phases of one attack (references, tuning, fresh seeds) share."""
    exp: Experiment
    attack: str
    base: dict                     # the trial config common to every method
    root: Path | str               # the storage root: base/, ray/, models/ (the work directory unless --storage)
    tracker: RunWriter
    tuning: Tuning
    tags: dict
    parents: dict[str, str]        # method -> open parent run id
    tables: dict[str, list[dict]]  # method -> every checkpoint row, for the parent's trials.csv
    progress: Progress
    listeners: dict[str, Listener] = field(default_factory=dict)  # while tuning runs
    logged: pd.DataFrame | None = None  # --resume: this attack's runs as the interrupted sweep logged them
    scenario: Scenario | None = None    # this attack's scenario (later looks build its fresh seeds' base models)

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
        rows = _child_rows(run.tracker.record, r.run_id) if finished else None
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
        rows = [] if r.interrupted else _child_rows(run.tracker.record, r.run_id)
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
    head = {"attack": run.attack, "method": method, "trial_id": name, **extra, "hparams": hparams_json(hparams)}
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
    """Re-measure each chosen configuration (and the references) on seeds the selection never saw, look by
    look (`Experiment.looks`): after each look only the configurations with a row still undecided get the
    next look's seeds (docs/architecture.md, Statistics and verdicts). One look: every fresh seed at once."""
    exp = run.exp
    if not exp.fresh_seeds:
        return
    tune_rows = pd.DataFrame([r for m in exp.methods for r in run.tables[m]])
    chosen = selections(tune_rows) if not tune_rows.empty else []
    done = 0
    for k, n in enumerate(exp.looks):
        seeds = list(exp.fresh_seeds[done:n])
        if k > 0:
            chosen = _still_open(run, chosen, k)
            if not chosen:
                run.progress(f"[{run.attack}] every row decided after {done} fresh seeds; no more seeds needed")
                return
            built = run.tuning.build_bases([run.scenario], seeds, run.base["base_dir"], exp.device, exp.max_failures,
                                           run.base["plugins"])
            run.progress(f"[{run.attack}] look {k + 1}/{len(exp.looks)}: base models of seeds {seeds}: {built}")
        _fresh_look(run, chosen, seeds)
        done = n


def _still_open(run: _AttackRun, chosen: list[dict], looks_done: int) -> list[dict]:
    """The chosen configurations restricted to their budgets whose verdict is still open after the first
    `looks_done` looks, judged exactly as the report judges them (the report module, loaded only here)."""
    from .report import summary as summaries

    rows = pd.DataFrame([r for table in run.tables.values() for r in table])
    plan = {**summaries.plan_of(run.exp.as_dict()), "attacks": [run.attack]}
    judged = summaries.summarize(rows, run.exp.delta, {**plan, "looks_done": looks_done})
    still = {(r.method, float(r.budget)) for r in judged.itertuples() if r.verdict_open}
    out = [{**c, "budgets": [b for b in c["budgets"] if (c["method"], float(b)) in still]} for c in chosen]
    out = [c for c in out if c["budgets"]]
    decided = judged[~judged.method.isin(REFERENCES) & judged.verdict_look.notna()]
    counts = ", ".join(f"{n} {v}" for v, n in decided.verdict.value_counts().sort_index().items()) or "none"
    run.progress(f"[{run.attack}] after look {looks_done}: decided {len(decided)} rows ({counts}), open {len(still)}"
                 f" in {len(out)} configurations")
    return out


def _fresh_look(run: _AttackRun, chosen: list[dict], seeds: list[int]) -> None:
    """One look: the references and the chosen configurations on `seeds`."""
    exp, base = run.exp, run.base
    jobs = [({**base, "method": m, "seeds": [s]}, m, m, {}, s) for m in ("none", "retrain") for s in seeds]
    jobs += [({**base, "method": c["method"], "hparams": c["hparams"], "seeds": [s], "budgets": c["budgets"]},
              c["method"], c["trial_id"], c["hparams"], s) for c in chosen for s in seeds]
    jobs = [j for j in jobs if not _reuse(run, j[1], f"{j[2]}-fresh{j[4]}")]
    for cfg, method, source, _, seed in jobs:  # the chosen unlearned models on the first fresh seed
        if method not in REFERENCES and seed == exp.fresh_seeds[0]:
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
    run.progress(f"[{run.attack}] fresh seeds {seeds}: {len(chosen)} chosen configurations + "
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




def _logged_runs(record: SweepRecord, attack: str) -> pd.DataFrame:
    from . import tracking

    return tracking.logged_runs(record, attack)


def _child_rows(record: SweepRecord, run_id: str) -> list[dict]:
    from . import tracking

    return tracking.child_rows(record, run_id)
