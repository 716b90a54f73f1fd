"""The read side: everything rebuilt from a tracking store alone — a sweep's report, the models it
chose, the sweeps a store holds and how to continue one, sweeps side by side. Reads MLflow through
`tracking`, never Ray."""
from __future__ import annotations

import os
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import config
from .errors import SweeperError
from .workdir import DEFAULT_WORKDIR, prepare_workdir, report_folder

PARTIAL = {"running": "still running, or its driver died on another host", "interrupted": "interrupted",
           "failed": "stopped on an error", "died": "its driver was killed"}


@dataclass
class SweepResult:
    name: str
    workdir: Path
    tracking_uri: str
    summary: pd.DataFrame
    report_dir: Path
    delta: float = config.DEFAULT_DELTA  # the margin its verdicts used (the table's distances are from 1 − δ)


def open_existing(wd: Path, tracking_uri: str | None) -> str:
    """The tracking URI of an existing store (never creates one), checked to work; sweeps whose driver
    died are marked so first, so that what is read says "died", not "running"."""
    from . import tracking

    uri = tracking_uri or tracking.default_uri(wd)
    path = tracking.sqlite_path(uri)
    if path is not None and not path.exists():
        raise SweeperError(f"no sweep found in {wd} (no {path.name})")
    tracking.open_store(uri, wd)
    tracking.close_dead_sweeps(uri)
    return uri


def _record(uri: str, sweep: str, wd: Path):
    from . import tracking

    return tracking.SweepRecord(uri, sweep, wd)


def rebuild_report(workdir: str | os.PathLike, sweep: str | None = None, tracking_uri: str | None = None) -> SweepResult:
    """Rebuild the report of a sweep (the newest in the store unless named) from MLflow alone, into
    `report/<sweep>/`. A sweep that did not finish gets a report marked partial."""
    from . import plugins, report, tracking

    wd = Path(workdir).expanduser().resolve()
    uri = open_existing(wd, tracking_uri)
    names = tracking.sweeps(uri)
    if not names:
        raise SweeperError(f"no sweep found in {uri}")
    sweep = sweep or names[0]
    if sweep not in names:
        raise SweeperError(f"no sweep named {sweep!r} in {uri} (known: {', '.join(names)})")
    record = _record(uri, sweep, prepare_workdir(wd))
    folder = report_folder(wd, sweep)
    logged = tracking.read_experiment(record)
    plugins.ensure([plugins.spec(p) for p in logged.get("plugins", []) if Path(p).is_file()])  # their spaces
    delta = logged.get("delta", config.DEFAULT_DELTA)
    summary = report.write(tracking.read_rows(record), folder, delta,
                           lambda m: config.search_space(m, logged.get("spaces")), f"sweeper report: {sweep}",
                           report.plan_of(logged) if logged else None, PARTIAL.get(record.status()))
    return SweepResult(sweep, wd, uri, summary, folder, delta)


def load_model(sweep: str, attack: str, method: str, budget: float, workdir: str | os.PathLike = DEFAULT_WORKDIR,
               tracking_uri: str | None = None, discovery: float = 1.0):
    """The unlearned model the sweep chose for (attack, method, budget) at discovery level `discovery`, as
    re-run on its first fresh seed and logged to the method's parent run (`models/budget-B.safetensors`), in
    eval mode on the CPU:

        model = sweeper.load_model("quickstart", "gaussian", "gd", 0.1)

    The architecture and its normalisation come from the experiment the sweep logged (its data set is
    loaded for the input statistics); the weights load with safetensors, which runs no code."""
    from safetensors.torch import load_file

    from . import tracking
    from .scenario import Scenario
    from .trial import model_file

    wd = Path(workdir).expanduser().resolve()
    record = _record(open_existing(wd, tracking_uri), sweep, wd)
    logged = tracking.read_experiment(record)
    parents = tracking.runs(record, "parent")
    mine = parents[(parents.get("tags.attack") == attack) & (parents.get("tags.method") == method)]
    levels = mine["tags.discovery"].fillna("") if "tags.discovery" in mine else pd.Series("", index=mine.index)
    if (levels != "").any():  # a sweep with discovery levels: a parent per level
        mine = mine[levels == f"{discovery:g}"]
    elif discovery != 1.0:
        mine = mine.iloc[:0]
    scenarios = [sc for sc in logged.get("scenarios", []) if sc.get("attack") == attack]
    if mine.empty or not scenarios:
        at = f" at discovery level {discovery:g}" if discovery != 1.0 else ""
        raise SweeperError(f"sweep {sweep!r} has no method {method!r} against attack {attack!r}{at}")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = record.client.download_artifacts(mine.run_id.iloc[0], f"models/{model_file(budget)}", tmp)
        except Exception:  # noqa: BLE001 - MLflow raises several types for a missing artifact
            raise SweeperError(f"sweep {sweep!r}: no model logged for {attack}/{method} at budget {budget:g} "
                               "(not chosen at that budget, or not re-measured on fresh seeds)") from None
        state = load_file(path)
    scenario = Scenario.from_dict(scenarios[0])
    model = scenario.build_model(scenario.load_data(), int(logged["fresh_seeds"][0]))
    model.load_state_dict(state)
    return model.eval()


def list_sweeps(workdir: str | os.PathLike = DEFAULT_WORKDIR, tracking_uri: str | None = None) -> pd.DataFrame:
    """The sweeps of a store, newest first: status (running, finished, interrupted, failed, died), start,
    driver, tuning trials logged, the report's path if one was written, and for one that did not finish
    the command that continues it."""
    from . import tracking

    wd = Path(workdir).expanduser().resolve()
    uri = open_existing(wd, tracking_uri)  # as report/compare: a dead driver's sweep reads "died"
    rows = tracking.sweep_overview(uri)
    for row in rows:
        page = report_folder(wd, row["sweep"]) / "report.html"
        row["report"] = str(page) if page.exists() else ""
        command = row.pop("command")
        row["resume"] = ""
        if row["status"] in ("interrupted", "failed", "died"):
            logged = tracking.read_experiment(_record(uri, row["sweep"], wd))
            row["resume"] = resume_command(command, row["sweep"], logged)
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


def _second(summary: pd.DataFrame) -> list[str]:
    """The removals `compare` adds where a sweep measured them: against retrain_identified (discovery levels
    below 1) and after each relapse length."""
    return [c for c in summary.columns if (c == "removal_identified" or c.startswith("removal_relapse"))
            and not c.endswith(("_low", "_high")) and summary[c].notna().any()]


def compare_sweeps(names: list[str], workdir: str | os.PathLike = DEFAULT_WORKDIR,
                   tracking_uri: str | None = None) -> pd.DataFrame:
    """Sweeps side by side from MLflow alone: removal (fresh mean ± 95% half-width) and status per
    (attack, discovery level, method, budget), one column group per sweep; also removal against
    retrain_identified and after relapse where a sweep measured them."""
    from . import report, tracking

    if len(set(names)) != len(names) or len(names) < 2:
        raise SweeperError("compare needs at least two different sweep names")
    wd = Path(workdir).expanduser().resolve()
    uri = open_existing(wd, tracking_uri)
    known = tracking.sweeps(uri)
    missing = [n for n in names if n not in known]
    if missing:
        raise SweeperError(f"no sweep named {', '.join(missing)} in {uri} (known: {', '.join(known) or 'none'})")
    frames = []
    for name in names:
        record = _record(uri, name, wd)
        logged = tracking.read_experiment(record)
        s = report.summarize(tracking.read_rows(record), logged.get("delta", config.DEFAULT_DELTA),
                             report.plan_of(logged) if logged else None)
        shown = ["removal", "removal_halfwidth", "acc_test", "status", *_second(s)]
        s = s.set_index(["attack", "discovery", "method", "budget"])[shown]
        frames.append(s.add_prefix(f"{name}:"))
    return pd.concat(frames, axis=1).reset_index()
