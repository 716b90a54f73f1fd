"""The `sweeper` command. Bad input: one line on stderr, exit code 2, no traceback."""
from __future__ import annotations

import argparse
import inspect
import os
import sys
from pathlib import Path

from . import config
from . import methods as _methods
from .errors import SweeperError
from .progress import Board
from .registry import attacks, methods
from .workdir import DEFAULT_WORKDIR


def _signature_params(fn) -> str:
    ps = [p for p in inspect.signature(fn).parameters.values()
          if p.kind is p.KEYWORD_ONLY and p.default is not p.empty and p.name not in config.SWEEP_SUPPLIED]
    return ", ".join(f"{p.name}={p.default!r}" for p in ps) or "-"


def _range(spec: dict) -> str:
    if "choices" in spec:
        return "{" + ", ".join(map(str, spec["choices"])) + "}"
    return f"[{spec['low']:g}, {spec['high']:g}]{' log' if spec.get('log') else ''}"


def cmd_methods(args) -> int:
    from . import plugins

    plugins.load_entry_points()  # installed packages' methods are listed too
    for name in methods.names():
        module = methods.get(name)
        kind = _methods.kind(module)
        only = _methods.modalities(module)
        picked = "" if set(only) >= {"image", "text"} else f"; `all` picks it for {'/'.join(only)} data only"
        print(f"{name}  ({kind}{picked})  {module.PAPER}")
        if kind == "reference":
            print(f"    cost: {module.COST:g} x retraining" if module.COST is not None
                  else "    cost: its own retraining, measured per seed and level (slightly above 1 x retraining)")
            continue
        space = config.spaces.load(name, module, _methods.hyperparameters(module))
        for p, default in _methods.hyperparameters(module).items():
            print(f"    {p:<14} default {default!r:<10} range {_range(space.spec['params'][p])}")
    return 0


def cmd_attacks(args) -> int:
    from . import plugins

    plugins.load_entry_points()
    for name in attacks.names():
        module = attacks.get(name)
        print(f"{name}  {module.PAPER}")
        print(f"    parameters: {_signature_params(module.craft)}")
    return 0


def _load(args) -> config.Experiment:
    if args.experiment and "=" in args.experiment and not Path(args.experiment).exists():
        args.overrides, args.experiment = [args.experiment, *args.overrides], None  # `sweeper run trials=2`
    return config.load(args.experiment, args.profile, data_root=args.data_root, skip_checksums=args.skip_checksums,
                       overrides=args.overrides, plugins=args.plugin)


def cmd_validate(args) -> int:
    exp = _load(args)
    if args.show:
        import yaml

        print(yaml.safe_dump(exp.as_dict(), sort_keys=False), end="")
        return 0
    print(f"ok: {exp.name} (profile {exp.profile}): {exp.scenario.dataset} / {exp.scenario.model} / "
          f"{', '.join(sc.attack for sc in exp.scenarios)}; methods {', '.join(exp.methods)}; budgets {list(exp.budgets)}; "
          f"{exp.trials} trials per method; seeds {list(exp.seeds)}")
    return 0


def cmd_run(args) -> int:
    from .sweep import run_sweep

    if args.dry_run:
        return _dry_run(args)

    run_sweep(_load(args), workdir=args.workdir, trials=args.trials, tracking_uri=args.tracking_uri,
              address=args.address, name=args.name, gpus_per_trial=args.gpus_per_trial, storage=args.storage,
              max_failures=args.max_failures, max_concurrent=args.max_concurrent, resume=args.resume,
              progress=Board(_say), command=["sweeper", *args.argv], optuna_storage=args.optuna_storage)
    return 0


def _dry_run(args) -> int:
    """What the sweep would do, without Ray, MLflow or training. Slots: this machine's cores (and GPUs
    at gpus_per_trial), or with --address the cluster's, asked of Ray."""
    from .plan import plan

    exp = config.apply_options(_load(args), trials=args.trials, gpus_per_trial=args.gpus_per_trial,  # as `run`
                               max_failures=args.max_failures, max_concurrent=args.max_concurrent)
    from . import tuning

    per_trial = exp.gpus_per_trial
    if args.address:
        started = tuning.start(args.address)
        try:
            slots = tuning.slots(per_trial, exp.device).concurrent
        finally:
            if started:
                tuning.stop()
    else:  # what an embedded Ray would see, without starting one
        import torch

        slots = tuning.Slots(os.cpu_count() or 1, torch.cuda.device_count(), per_trial, exp.device).concurrent
    for line in plan(exp, args.workdir, args.storage, exp.max_concurrent or slots).lines():
        print(line)
    return 0


def cmd_report(args) -> int:
    from .report import table
    from .readback import rebuild_report

    result = rebuild_report(args.workdir, args.sweep, args.tracking_uri)
    print(table(result.summary, result.delta, result.report_dir))
    print(f"report of sweep {result.name}: {result.report_dir}")
    return 0


def cmd_compare(args) -> int:
    import pandas as pd

    from .readback import compare_sweeps

    table = compare_sweeps(args.sweeps, args.workdir, args.tracking_uri)
    if args.out:
        table.to_csv(args.out, index=False)
    with pd.option_context("display.width", 220, "display.max_rows", 1000, "display.max_columns", 50):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


def cmd_sweeps(args) -> int:
    import pandas as pd

    from .readback import list_sweeps

    table = list_sweeps(args.workdir, args.tracking_uri)
    if table.empty:
        print(f"no sweep yet in {args.workdir}")
        return 0
    with pd.option_context("display.width", 250, "display.max_colwidth", 120, "display.max_rows", 1000):
        print(table.to_string(index=False))
    return 0


def cmd_make_toy_imdb(args) -> int:
    from .datasets._toy_text import write_toy_imdb

    root = write_toy_imdb(args.dir, train_per_class=args.train_per_class, test_per_class=args.test_per_class,
                          seed=args.seed)
    print(f"wrote {root} ({2 * args.train_per_class} train + {2 * args.test_per_class} test reviews); "
          f"run: sweeper run gpt2_imdb_tiny --data-root {Path(args.dir).expanduser()}")
    return 0


def _say(line: str) -> None:
    print(line, flush=True)


def _data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", metavar="DIR", help="folder of a file-based data set (cifar10: DIR/cifar-10-batches-py/, "
                   "cifar100: DIR/cifar-100-python/); overrides the file's data_root:")
    p.add_argument("--skip-checksums", action="store_true", default=None, help="skip torchvision's md5 checks of the "
                   "CIFAR files (for CIFAR-format files you wrote yourself; the official files pass them)")
    p.add_argument("--plugin", action="append", default=[], metavar="FILE.py", help="load a method (or attack) "
                   "from a local file, registered under the file's stem; repeatable")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sweeper", description=(
        "Sweep machine-unlearning methods against data poisoning: the best poison removal each method "
        "reaches at each fraction of retraining's compute."))
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("methods", help="list unlearning methods, their papers, hyperparameters and ranges"
                   ).set_defaults(fn=cmd_methods)
    sub.add_parser("attacks", help="list poisoning attacks, their papers and parameters").set_defaults(fn=cmd_attacks)
    v = sub.add_parser("validate", help="check an experiment file without running it")
    v.add_argument("experiment", help="path to an experiment YAML, or the name of a bundled one")
    v.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="settings over the file, e.g. trials=20 "
                   "recipe.epochs=10 methods=[gd,scrub] budgets=[0.05,0.1] (values are YAML)")
    v.add_argument("--show", action="store_true", help="print the resolved experiment")
    v.add_argument("--profile", help="apply one of the file's profiles (quick, tiny, full, ...)")
    _data_flags(v)
    v.set_defaults(fn=cmd_validate)
    r = sub.add_parser("run", help="run a sweep: tune every method, log to MLflow, write the report",
                       description="Run a sweep. With no experiment, the bundled quickstart: every registered "
                       "image method against Gaussian poisoning on scikit-learn's digits, on an embedded Ray.")
    r.add_argument("experiment", nargs="?", help="experiment YAML or bundled name (default: quickstart)")
    r.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="settings over the file, e.g. trials=20 "
                   "recipe.epochs=10 methods=[gd,scrub] (values are YAML; see `sweeper validate EXP ... --show`)")
    r.add_argument("--workdir", default=DEFAULT_WORKDIR, help="base models, Ray results, MLflow database and "
                   f"report/ go here (default: ./{DEFAULT_WORKDIR})")
    r.add_argument("--trials", type=int, help="Optuna trials per (attack, method), overriding the file")
    r.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///WORKDIR/mlflow.db)")
    r.add_argument("--optuna-storage", metavar="URL", help="Optuna RDB storage each method's study is mirrored to, "
                   "for optuna-dashboard (default: sqlite:///WORKDIR/optuna.db; `none`: no mirror)")
    r.add_argument("--address", help="join a Ray cluster (auto or HOST:PORT) instead of starting one")
    r.add_argument("--profile", help="quick (default), full, tiny, or any profile the file defines")
    r.add_argument("--name", help="sweep name = MLflow experiment (default: the experiment's name, "
                   "numbered if taken)")
    r.add_argument("--storage", metavar="PATH|URI", help="base models, Ray Tune records and chosen models go here "
                   "instead of the work directory: on a multi-node cluster, a folder every node sees at the same path "
                   "(NFS/EFS mount, file:///...) or an object store (s3://bucket/prefix, gs://bucket/prefix); default "
                   "$SWEEPER_STORAGE, else the file's storage:, else the work directory")
    r.add_argument("--dry-run", action="store_true", help="print what the sweep would run (trials, fresh runs, base "
                   "models to train vs cached, worst-case cost, a wall-time estimate) and exit; writes nothing")
    r.add_argument("--resume", nargs="?", const=True, metavar="NAME", help="continue an interrupted sweep (default: "
                   "the newest unfinished sweep of this experiment) with the same experiment, options and --storage; "
                   "a finished one only gets its report rebuilt")
    r.add_argument("--max-failures", type=int, metavar="N", help="retry a trial or task whose worker or node died up "
                   "to N times (default: the file's max_failures, else 2)")
    r.add_argument("--max-concurrent", type=int, metavar="N", help="run up to N trials at once, Tune's and the references and fresh runs beside them (default: the "
                   "file's max_concurrent, else the slots the cluster has when the sweep starts); on an autoscaling "
                   "cluster, the slots of its largest size, so Tune asks for them and the autoscaler adds nodes")
    r.add_argument("--gpus-per-trial", type=float, metavar="G", help="share of a GPU each trial asks Ray for, "
                   "in (0, 1] (default: the file's gpus_per_trial, else 0.25); base models take a whole GPU")
    _data_flags(r)
    r.set_defaults(fn=cmd_run)
    rp = sub.add_parser("report", help="rebuild a sweep's report from MLflow alone")
    rp.add_argument("--workdir", default=DEFAULT_WORKDIR, help="the sweep's work directory")
    rp.add_argument("--sweep", help="sweep name (default: the newest in the tracking store)")
    rp.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///WORKDIR/mlflow.db)")
    rp.set_defaults(fn=cmd_report)
    c = sub.add_parser("compare", help="put sweeps side by side (removal ± 95%% half-width, status) from MLflow")
    c.add_argument("sweeps", nargs="+", help="two or more sweep names (MLflow experiments)")
    c.add_argument("--workdir", default=DEFAULT_WORKDIR, help="work directory of the tracking store")
    c.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///WORKDIR/mlflow.db)")
    c.add_argument("--out", help="also write the table to this CSV file")
    c.set_defaults(fn=cmd_compare)
    w = sub.add_parser("sweeps", help="list the sweeps of a work directory: status, start, trials, report, "
                       "and how to resume one that did not finish")
    w.add_argument("--workdir", default=DEFAULT_WORKDIR, help="work directory of the tracking store")
    w.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///WORKDIR/mlflow.db)")
    w.set_defaults(fn=cmd_sweeps)
    t = sub.add_parser("make-toy-imdb", help="write a small synthetic movie-review corpus in the aclImdb layout "
                       "(DIR/aclImdb/{train,test}/{pos,neg}/*.txt), for the imdb data set without a download")
    t.add_argument("dir", help="folder to write aclImdb/ into (must not hold one already)")
    t.add_argument("--train-per-class", type=int, default=300, help="training reviews per class (default 300)")
    t.add_argument("--test-per-class", type=int, default=100, help="test reviews per class (default 100)")
    t.add_argument("--seed", type=int, default=0, help="the corpus is a function of this seed (default 0)")
    t.set_defaults(fn=cmd_make_toy_imdb)
    return p


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """argparse takes a command's positionals in one run, so KEY=VALUE settings after an option
    (`sweeper run backdoor --dry-run trials=3`) come back unrecognised: they are overrides too."""
    p = parser()
    args, extra = p.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # recorded on a sweep: how to resume it
    try:
        return args.fn(args)
    except SweeperError as e:
        print(f"sweeper: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sweeper: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
