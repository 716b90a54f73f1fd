"""The phases of one sweep cell, an (attack, discovery level): its parent runs, the references on the tuning
seeds, one tuned study per method (a Tuner per cell) and the fresh-seed re-measurement, look by look. The
levels of an attack share `none` and `retrain` (measured once, by the first level: they do not depend on
what the unlearner is told). Ray and MLflow are reached through `Tuning` and `RunWriter` only."""
from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pandas as pd

from . import provenance, workplan
from . import storage as store
from .config import Experiment
from .listener import Listener, Progress
from .report.selection import GOLD, IDENTIFIED, REFERENCES, SCRATCH, hparams_json, selections

if TYPE_CHECKING:
    from .basecache import BuildSummary
    from .scenario import Scenario
    from .tracking import RunWriter, SweepRecord
    from .tuning.studies import StudyMirror


class Tuning(Protocol):
    """What the sweep asks of the Ray edge (the module `sweeper.tuning`, imported only when a sweep runs)."""

    def build_bases(self, scenarios: list[Scenario], seeds: list[int], base_dir: str, device: str,
                    max_failures: int, plugin_specs: list[dict]) -> BuildSummary: ...

    def can_resume(self, storage, attack: str) -> bool: ...

    def slots(self, gpus_per_trial: float, device: str): ...

    def resume_attack(self, exp: Experiment, attack: str, bases: dict[str, dict], storage,
                      listeners: dict[str, Listener], pool=None) -> set[str]: ...

    def tune_attack(self, exp: Experiment, attack: str, bases: dict[str, dict], storage,
                    listeners: dict[str, Listener], pool=None) -> None: ...

    def Pool(self, limit: int, gpus_per_trial: float, max_failures: int, device: str): ...


class Manifests:
    """The base-model manifests of (scenario, seed), read once per sweep by the driver (small JSON files, in
    the work directory or an object store): the data digests every run names as its inputs."""

    def __init__(self, base_dir: str):
        self.base_dir, self._read = base_dir, {}

    def __call__(self, scenario: Scenario, seeds) -> list[tuple[str, dict]]:
        from .basecache import entry_manifest, entry_status

        out = []
        for seed in seeds:
            key = scenario.key(seed)
            if key not in self._read and entry_status(scenario, seed, self.base_dir) is None:
                self._read[key] = entry_manifest(scenario, seed, self.base_dir)
            if key in self._read:  # a seed whose base models failed to build has nothing to name
                out.append((key, self._read[key]))
        return out


@dataclass
class Shared:
    """What the discovery levels of one attack share: the parents and tables of none and retrain, and the
    fresh seeds they were measured on (by whichever level's look first needed each seed)."""
    parents: dict[str, str]
    tables: dict[str, list[dict]]
    fresh_done: set = field(default_factory=set)


@dataclass
class Look:
    """One look's fresh runs. Each is queued as soon as it is known (the references' when the cell starts, a
    method's when its study finishes) and runs in a slot tuning leaves free; each is logged as it finishes;
    the parents' tables get them in one fixed order when the look ends (`_end_look`)."""
    seeds: list[int]
    queued: dict[str, tuple] = field(default_factory=dict)       # run name -> job
    reused: set = field(default_factory=set)                     # --resume: runs that had finished before
    rows: dict[str, list[dict]] = field(default_factory=dict)    # run name -> its rows, once logged
    work: dict[str, tuple] = field(default_factory=dict)         # run name -> (estimate group, units, evals) until done
    started: float = field(default_factory=time.perf_counter)


def _level_tag(exp: Experiment, level: float) -> str:
    """The `discovery` tag of a level's runs: every level of a sweep with partial discovery carries one
    (1 included), a sweep without carries none (its runs are as before discovery existed)."""
    return f"{level:g}" if exp.partial_discovery else ""


def cell_name(attack: str, level: float) -> str:
    """An (attack, level) cell's name for its Tuner, its records and its progress lines."""
    return attack if level == 1.0 else f"{attack}@d{level:g}"


def at_level(logged: pd.DataFrame | None, tag: str) -> pd.DataFrame | None:
    return None if logged is None else logged[logged.discovery == tag]


def level_run(exp: Experiment, scenario: Scenario, level: float, base: dict, root, tracker: RunWriter,
               tuning: Tuning, tags: dict, progress: Progress, logged: pd.DataFrame | None,
               shared: Shared, manifests: Manifests | None = None, mirror: StudyMirror | None = None,
               pool=None) -> "Cell":
    """The runs of one discovery level of an attack: its methods' parents (and retrain_identified's below
    level 1) beside the attack's shared references."""
    tag = _level_tag(exp, level)
    level_tags = {**tags, "discovery": tag} if tag else tags
    mine = ((IDENTIFIED,) if level < 1 else ()) + tuple(exp.methods)
    level_logged = None if logged is None else logged[logged.discovery.isin({tag, ""})]
    own = parents(tracker, scenario.attack, mine, level_tags, exp, at_level(logged, tag),
                  cell_name(scenario.attack, level))
    cfg = {**base, "discovery": level} if level < 1 else base
    return Cell(exp, scenario.attack, cfg, root, tracker, tuning, level_tags, {**shared.parents, **own},
                {**shared.tables, **{m: [] for m in own}}, progress, logged=level_logged, scenario=scenario,
                level=level, shared=shared, manifests=manifests, mirror=mirror, pool=pool)


def parents(tracker: RunWriter, attack: str, methods, tags: dict, exp: Experiment, logged: pd.DataFrame | None,
             cell: str | None = None) -> dict[str, str]:
    """A parent run per method: new, or (--resume) the interrupted sweep's, reopened. A new one carries
    the experiment's settings as flat dotted params (`attack.eps`, `recipe.epochs`), for filtering, and
    its discovery level (when the sweep has levels below 1) as a param too."""
    out = {}
    settings = provenance.experiment_params(exp, attack)
    if tags.get("discovery"):
        settings = {**settings, "discovery": tags["discovery"]}
    for m in methods:
        found = [] if logged is None else list(logged[(logged.level == "parent") & (logged.method == m)].run_id)
        if found:
            tracker.reopen(found[0])
            out[m] = found[0]
        else:
            out[m] = tracker.start_parent(attack, m, tags, exp.as_dict(), name=f"{cell or attack}/{m}")
            tracker.log_params(out[m], settings)
    return out


@dataclass
class Cell:
    """What the three phases of one cell, an (attack, discovery level), share (references, tuning, fresh seeds)."""
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
    logged: pd.DataFrame | None = None  # --resume: this cell's runs (and the shared references') as logged
    scenario: Scenario | None = None    # this attack's scenario (later looks build its fresh seeds' base models)
    level: float = 1.0                  # the discovery level (sweeper/discovery.py)
    shared: Shared | None = None       # what the attack's levels share (none, retrain)
    manifests: Manifests | None = None  # the base models' manifests: each run's data inputs
    mirror: StudyMirror | None = None   # the sweep's Optuna studies for optuna-dashboard, or None
    pool: object = None                 # plain trials run in free slots (tuning.Pool); set by the sweep
    look: Look | None = None            # the first look, queued from the cell's start

    def inputs(self, method: str, seeds) -> list:
        """The data sets a run of `method` on `seeds` saw (sweeper/inputs.py); none and retrain at level 1."""
        from . import inputs

        if self.manifests is None or self.scenario is None:
            return []
        level = 1.0 if method in GOLD else self.level
        return inputs.of_run(self.manifests(self.scenario, seeds), self.attack, method, level)

    def parent_inputs(self, method: str) -> list:
        """A parent's inputs: those of its tuning seeds and of every fresh seed its table holds."""
        fresh = sorted({int(r["seed"]) for r in self.tables[method] if r.get("phase") == "fresh" and "seed" in r})
        return self.inputs(method, list(self.exp.seeds) + fresh)

    @property
    def cell(self) -> str:
        return cell_name(self.attack, self.level)

    def rows(self, method: str) -> list[dict]:
        """Everything measured for `method` so far, tuning trials still in flight included."""
        live = self.listeners[method].table() if method in self.listeners else []
        return self.tables[method] + live


def tune(run: Cell) -> None:
    exp = run.exp
    tags = {**run.tags, "phase": "tune", "seed": ",".join(map(str, exp.seeds))}
    run.listeners = {m: Listener(run.tracker, run.parents[m], run.attack, m, tags, exp.trials, run.progress,
                                 label=run.cell, inputs=run.inputs(m, exp.seeds),
                                 done=workplan.tune_note(run.progress, f"{run.cell}/{m}/tune", len(exp.seeds)),
                                 mirror=run.mirror.study(run.attack, run.cell, m) if run.mirror else None,
                                 on_complete=_study_done(run) if run.logged is None and run.look else None)
                     for m in exp.methods}
    # what only the report reads (membership inference, test accuracy) is measured by the fresh runs
    bases = {m: {**run.base, "method": m, "membership": False, "test_accuracy": False} for m in exp.methods}
    storage = store.join(run.root, "ray", run.tracker.sweep)
    restored = _restore_tuned(run)
    workplan.enter(run.progress, "tune")
    for m, listener in run.listeners.items():  # --resume: trials finished before are not this run's work
        workplan.skip(run.progress, f"{run.cell}/{m}/tune", listener.finished)
    total = exp.trials * len(exp.methods)
    if restored == total:
        run.progress(f"[{run.cell}] tuning: all {total} trials were logged before; not redone")
        known = None
    elif run.logged is not None and run.tuning.can_resume(storage, run.cell):
        run.progress(f"[{run.cell}] tuning: resuming Ray Tune's records ({restored} of {total} trials logged)")
        known = run.tuning.resume_attack(exp, run.cell, bases, storage, run.listeners, pool=run.pool)
    else:
        known = set()  # a new Tuner: nothing logged before belongs to it
        run.tuning.tune_attack(exp, run.cell, bases, storage, run.listeners, pool=run.pool)
    run.tracker.wait()  # the trials' runs and the Optuna mirror written before either is reconciled
    for listener in run.listeners.values():
        for run_id in listener.drop_unknown(known):
            run.tracker.discard(run_id)
        if listener.mirror is not None:  # --resume: the study keeps exactly the trials MLflow keeps
            listener.mirror.reconcile(listener.outcomes())
    finished = sum(listener.finished for listener in run.listeners.values())
    if finished < total:  # Tune returned without running every trial: it was stopped
        raise KeyboardInterrupt(f"Ray Tune stopped after {finished} of {total} trials")
    for m, listener in run.listeners.items():
        run.tables[m] += [{**r, "n_seeds": len(exp.seeds)} for r in listener.table()]
    run.listeners = {}


def _study_done(run: Cell):
    """The listener's hook when a method's study has finished all its trials (a sweep not resumed): its
    configurations are chosen (as `fresh` would choose them: per method) and its first look queued, to run
    in the slots the other methods' last trials leave free."""
    def done(method: str) -> None:
        rows = [{**r, "n_seeds": len(run.exp.seeds)} for r in run.listeners[method].table()]
        chosen = selections(pd.DataFrame(rows))
        _queue(run, run.look, _look_jobs(run, chosen, run.look.seeds, gold=False))
        run.progress(f"[{run.cell}/{method}] study done: {len(chosen)} chosen configuration"
                     f"{'' if len(chosen) == 1 else 's'} queued for fresh seeds {run.look.seeds}")
    return done


def _restore_tuned(run: Cell) -> int:
    """--resume: hand each method's listener the Tune trials the interrupted sweep logged; returns how
    many of them had finished (a run whose trial Tune starts again is replaced by a new one: Listener)."""
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


def _models_dir(run: Cell, method: str, source: str) -> Path | str:
    return store.join(run.root, "models", run.tracker.sweep, run.cell, method, source)


def _reuse(run: Cell, method: str, name: str) -> bool:
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


def _log_plain(run: Cell, method: str, name: str, hparams: dict, tags: dict, result, extra: dict,
               seeds) -> list[dict]:
    """One plain (non-Tune) trial on `seeds` as a child run of `method`'s parent, with its whole table (which
    --resume reads back); returns its rows, for the parent's table."""
    child = run.tracker.start_child(run.parents[method], name, hparams,
                                    {**run.tags, **tags, "method": method, "attack": run.attack, "trial_id": name},
                                    run.inputs(method, seeds))
    head = {"attack": run.attack, "method": method, "trial_id": name, **extra, "hparams": hparams_json(hparams)}
    if isinstance(result, str):
        rows = [{**head, "run_status": "FAILED", "error": result}]
        run.tracker.end_child(child, "FAILED", rows, {"error": result})
        return rows
    for r in result:
        run.tracker.log_checkpoint(child, r)
    rows = [{**head, "run_status": "FINISHED", **r} for r in result]
    run.tracker.end_child(child, "FINISHED", rows)
    return rows


def _config(run: Cell, method: str) -> dict:
    """A plain trial's config; none and retrain are measured without a discovery level (level 1: their
    rows are shared by every level of the attack)."""
    cfg = {**run.base, "method": method}
    if method in GOLD:
        cfg.pop("discovery", None)
    return cfg


def references(run: Cell) -> None:
    """Queue `none` and `retrain` on the tuning seeds (pooled): evaluated from the cached base models, once per
    attack (by its first discovery level); below level 1 also `retrain_identified` (built on first use). They
    run while tuning starts, as do the first look's reference runs on the fresh seeds (they need no choice)."""
    mine = (GOLD if run.level == run.exp.discovery[0] else ()) + ((IDENTIFIED,) if run.level < 1 else ())
    todo = [m for m in mine if not _reuse(run, m, m)]
    workplan.enter(run.progress, "refs")
    workplan.skip(run.progress, f"{run.cell}/refs", len(mine) - len(todo))
    for m in todo:
        run.pool.submit(_config(run, m), lambda result, m=m: _reference_done(run, m, result))
    if run.exp.fresh_seeds:
        run.look = Look(list(run.exp.fresh_seeds[:run.exp.looks[0]]))
        _queue(run, run.look, _look_jobs(run, [], run.look.seeds))


def _reference_done(run: Cell, method: str, result) -> None:
    seeds = run.exp.seeds
    units = len(seeds) * (method == IDENTIFIED)  # retrain_identified trains its model (once cached)
    workplan.note(run.progress, f"{run.cell}/refs", result, len(seeds), units)
    run.tables[method] += _log_plain(run, method, method, {}, {"phase": "tune", "seed": ",".join(map(str, seeds))},
                                     result, {"phase": "tune", "n_seeds": len(seeds)}, seeds)
    if isinstance(result, str):
        run.progress(f"[{run.cell}/{method}] FAILED ({result}): removal cannot be computed without it")
    else:
        z = f", gus/z {result[0]['gus/z']:.2f}" if "gus/z" in result[0] else ""
        run.progress(f"[{run.cell}/{method}] effect {result[0]['attack/effect']:.3f}{z} pooled over tuning "
                     f"seeds, acc/val {result[0]['acc/val']:.3f}")


def fresh(run: Cell) -> None:
    """Re-measure each chosen configuration (and the references) on seeds the selection never saw, look by
    look (`Experiment.looks`): after each look only the configurations with a row still undecided get the
    next look's seeds (docs/architecture.md, Statistics and verdicts). One look: every fresh seed at once."""
    exp = run.exp
    if not exp.fresh_seeds:
        run.pool.drain()  # the references queued when the cell started (Tune's loop may not have collected them)
        return
    tune_rows = pd.DataFrame([r for m in exp.methods for r in run.tables[m]])
    chosen = selections(tune_rows) if not tune_rows.empty else []
    done = 0
    for k, n in enumerate(exp.looks):
        seeds = list(exp.fresh_seeds[done:n])
        if k > 0:
            chosen = _still_open(run, chosen, k)
            if not chosen:
                run.progress(f"[{run.cell}] every row decided after {done} fresh seeds; no more seeds needed")
                return
            built = run.tuning.build_bases([run.scenario], seeds, run.base["base_dir"], exp.device, exp.max_failures,
                                           run.base["plugins"])
            run.progress(f"[{run.cell}] look {k + 1}/{len(exp.looks)}: base models of seeds {seeds}: {built}")
        look = run.look if k == 0 and run.look is not None else Look(seeds)
        _end_look(run, look, _look_jobs(run, chosen, seeds))
        done = n


def _still_open(run: Cell, chosen: list[dict], looks_done: int) -> list[dict]:
    """The chosen configurations restricted to their budgets whose verdict is still open after the first
    `looks_done` looks, judged exactly as the report judges them (the report module, loaded only here): the
    verdict against retraining, or the one against `scratch` at that budget, which also keeps scratch's
    configuration there (a comparison uses the seeds both rows have)."""
    from .report import summary as summaries

    rows = pd.DataFrame([r for table in run.tables.values() for r in table])
    plan = {**summaries.plan_of(run.exp.as_dict()), "attacks": [run.attack], "discovery": [run.level]}
    judged = summaries.summarize(rows, run.exp.delta, {**plan, "looks_done": looks_done})
    still = {(r.method, float(r.budget)) for r in judged.itertuples() if r.verdict_open or r.vs_scratch_open}
    still |= {(SCRATCH, float(r.budget)) for r in judged.itertuples() if r.vs_scratch_open}
    out = [{**c, "budgets": [b for b in c["budgets"] if (c["method"], float(b)) in still]} for c in chosen]
    out = [c for c in out if c["budgets"]]
    decided = judged[~judged.method.isin(REFERENCES) & judged.verdict_look.notna()]
    counts = ", ".join(f"{n} {v}" for v, n in decided.verdict.value_counts().sort_index().items()) or "none"
    run.progress(f"[{run.cell}] after look {looks_done}: decided {len(decided)} rows ({counts}), open {len(still)}"
                 f" in {len(out)} configurations")
    return out


def _look_jobs(run: Cell, chosen: list[dict], seeds: list[int], gold: bool = True) -> list[tuple]:
    """A look's runs (config, method, source, hparams, seed) in the order the parents' tables list them: the
    references (`gold`: those no other level measured on these seeds), retrain_identified below level 1, then
    the chosen configurations."""
    exp, base = run.exp, run.base
    jobs = []
    if gold:
        todo = [s for s in seeds if s not in run.shared.fresh_done]  # another level may have measured them
        jobs += [({**_config(run, m), "seeds": [s]}, m, m, {}, s) for m in GOLD for s in todo]
        jobs += [({**base, "method": IDENTIFIED, "seeds": [s]}, IDENTIFIED, IDENTIFIED, {}, s) for s in seeds
                 if run.level < 1]
    jobs += [({**base, "method": c["method"], "hparams": c["hparams"], "seeds": [s], "budgets": c["budgets"]},
              c["method"], c["trial_id"], c["hparams"], s) for c in chosen for s in seeds]
    for cfg, method, source, _, seed in jobs:  # the chosen unlearned models on the first fresh seed
        if method not in REFERENCES and seed == exp.fresh_seeds[0]:
            cfg["save_models"] = str(_models_dir(run, method, source))
        if exp.relapse is not None and method != IDENTIFIED:  # relapse: the chosen models and both gold controls
            cfg["relapse"] = exp.relapse.as_dict()
    return jobs


def _name(job: tuple) -> str:
    return f"{job[2]}-fresh{job[4]}"


def _queue(run: Cell, look: Look, jobs: list[tuple]) -> None:
    """Queue the jobs of `look` not queued yet, nor finished before an interruption (--resume)."""
    for job in jobs:
        name = _name(job)
        if name in look.queued or name in look.reused:
            continue
        if _reuse(run, job[1], name):
            look.reused.add(name)
            continue
        look.queued[name] = job
        group = f"{run.cell}/gold/fresh" if job[1] in REFERENCES else f"{run.cell}/fresh"
        look.work[name] = (group, *workplan.planned(run.exp, job[0]))
        run.pool.submit(job[0], lambda result, name=name: _fresh_done(run, look, name, result))


def _fresh_done(run: Cell, look: Look, name: str, result) -> None:
    """A fresh run finished (while tuning runs, or at the look's end): logged now, its rows kept for the end."""
    group, units, evals = look.work.pop(name)
    workplan.note(run.progress, group, result, 1, units, evals)
    look.rows[name] = _log_fresh(run, look.queued[name], result)


def _end_look(run: Cell, look: Look, jobs: list[tuple]) -> None:
    """The look's every job (`jobs`, in table order) queued, run to the last, and joined to the parents' tables
    in that order, whatever order they ran in."""
    _queue(run, look, jobs)
    workplan.enter(run.progress, "fresh")
    for group in (f"{run.cell}/fresh", f"{run.cell}/gold/fresh"):  # what is left is known exactly now
        workplan.replan(run.progress, group, [(u, v) for g, u, v in look.work.values() if g == group])
    run.pool.drain()
    for job in jobs:
        run.tables[job[1]] += look.rows.get(_name(job), [])
    run.shared.fresh_done.update(look.seeds)
    chosen = len({job[2] for job in jobs if job[1] not in REFERENCES})
    run.progress(f"[{run.cell}] fresh seeds {look.seeds}: {chosen} chosen configurations + references re-measured "
                 f"in {len(look.queued)} runs ({time.perf_counter() - look.started:.1f}s since the first was queued)")


def _log_fresh(run: Cell, job: tuple, result) -> list[dict]:
    """One fresh run's MLflow run (and its saved models); returns its rows."""
    cfg, method, source, hparams, seed = job
    tags = {"phase": "fresh", "seed": str(seed), "selected_from": source,
            "selected_for": ",".join(f"{b:g}" for b in cfg.get("budgets", []))}
    extra = {"phase": "fresh", "seed": seed, "source_trial": source, "n_seeds": 1}
    rows = _log_plain(run, method, f"{source}-fresh{seed}", hparams, tags, result, extra, [seed])
    if "save_models" in cfg and not isinstance(result, str):
        _log_models(run, method, cfg["save_models"])
    if isinstance(result, str):
        run.progress(f"[{run.cell}/{method}] fresh seed {seed} of {source}: FAILED ({result})")
    return rows


def _log_models(run: Cell, method: str, folder: str) -> None:
    """The chosen models a fresh run saved (on whichever node ran it) as artifacts of the method's parent."""
    if not store.is_remote(folder):
        for path in sorted(Path(folder).glob("budget-*.safetensors")):
            run.tracker.log_file(run.parents[method], path, "models")
        return
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted(store.download_dir(folder, Path(tmp))):
            if path.name.startswith("budget-") and path.suffix == ".safetensors":
                run.tracker.log_file(run.parents[method], path, "models")




def logged_runs(record: SweepRecord, attack: str) -> pd.DataFrame:
    from . import tracking

    return tracking.logged_runs(record, attack)


def _child_rows(record: SweepRecord, run_id: str) -> list[dict]:
    from . import tracking

    return tracking.child_rows(record, run_id)
