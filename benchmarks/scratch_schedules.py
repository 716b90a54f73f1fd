"""The two schedules of the `scratch` baseline side by side (issue 24): the recipe's cosine cut at the budget
(anytime) and the recipe compressed into the budget (one run per budget), on the same seeds, over a grid of
learning rates around the recipe's, and θ_retrain's learning curve (how much of C_retrain is slack).

    python benchmarks/scratch_schedules.py [EXPERIMENT] [--seeds 100 101 102] [--lrs 0.02 0.05 0.1 0.2]

Per (schedule, budget): the best learning rate by the mean objective over the seeds (as a search would pick
it), and that configuration's mean removal, validation and test accuracy and the trial's cost. Base models are
trained into a temporary folder unless --base-dir names a cache. Single-threaded, as a Ray trial."""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from sweeper import config
from sweeper.basecache import base_models
from sweeper.metrics import EQUIVALENT_ACC
from sweeper.scenario import epochs_to_quality
from sweeper.trial import TrialConfig, run_trial


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiment", nargs="?", default="quickstart")
    ap.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102])
    ap.add_argument("--lrs", type=float, nargs="+", default=[0.02, 0.05, 0.1, 0.2])
    ap.add_argument("--base-dir", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    exp = config.load(args.experiment)
    scenario, budgets = exp.scenario, list(exp.budgets)
    base_dir = args.base_dir or tempfile.mkdtemp(prefix="scratch-bench-")
    print(f"{exp.name}: budgets {budgets}, seeds {args.seeds}, lrs {args.lrs}, recipe {scenario.recipe.epochs} epochs "
          f"at lr {scenario.recipe.lr}")
    for seed in args.seeds:
        base = base_models(scenario, seed, base_dir)
        curve, final = base.manifest["retrain_curve"], base.manifest["metrics"]["retrain"]["acc/val"]
        k = epochs_to_quality(curve, final, EQUIVALENT_ACC)
        print(f"seed {seed}: θ_retrain val acc {final:.3f}; within {EQUIVALENT_ACC} of it after epoch {k} of "
              f"{len(curve)} ({k / len(curve):.3f} of C_retrain); curve every 5 epochs: "
              + " ".join(f"{a:.2f}" for a in curve[4::5]))
    results = {}
    for schedule in ("anytime", "compressed"):
        for lr in args.lrs:
            start = time.perf_counter()
            rows = run_trial(TrialConfig(scenario=scenario, method="scratch", base_dir=base_dir, budgets=budgets,
                                         seeds=args.seeds, hparams={"schedule": schedule, "lr": lr},
                                         membership=False))
            results[schedule, lr] = (rows, time.perf_counter() - start)
    print(f"\n{'schedule':<11}{'budget':>7}{'best lr':>8}{'objective':>10}{'removal':>9}{'acc/val':>8}"
          f"{'acc/test':>9}{'trial cost':>11}")
    best = {}
    for schedule in ("anytime", "compressed"):
        for i, budget in enumerate(budgets):
            lr = max(args.lrs, key=lambda x: results[schedule, x][0][i]["objective"])
            r = results[schedule, lr][0][i]
            best[schedule, budget] = r
            print(f"{schedule:<11}{budget:>7g}{lr:>8g}{r['objective']:>10.3f}{r['removal']:>9.3f}{r['acc/val']:>8.3f}"
                  f"{r['acc/test']:>9.3f}{r['cost/trial_fraction']:>11.3f}")
    print("\nper budget, compressed − anytime (best lr each): removal, acc/test")
    for budget in budgets:
        a, c = best["anytime", budget], best["compressed", budget]
        print(f"  {budget:g}: removal {c['removal'] - a['removal']:+.3f}, acc/test {c['acc/test'] - a['acc/test']:+.3f}")
    seconds = {s: statistics.mean(results[s, lr][1] for lr in args.lrs) for s in ("anytime", "compressed")}
    print(f"wall per trial ({len(args.seeds)} seeds, every budget): anytime {seconds['anytime']:.1f} s, "
          f"compressed {seconds['compressed']:.1f} s (ratio {seconds['compressed'] / seconds['anytime']:.2f})")


if __name__ == "__main__":
    main()
