"""The fixed fresh-seed design against the adaptive one, side by side in one run, on the quickstart's
`resolve` profile (24 fresh seeds): fresh runs, base models trained, wall time, and agreement of verdicts.

    python benchmarks/fresh_design.py [--workdir /tmp/fresh-design] [--experiment quickstart]

fixed:    every chosen configuration on all 24 fresh seeds at once (`fresh_rounds=[24]`)
adaptive: looks after 3, 6, 12 and 24 seeds, later looks only for rows still undecided (the profile as shipped)

Each design runs as its own `sweeper run` in its own work directory (its own base models), one after the
other on an otherwise idle machine. Both tune the same experiment with the same Optuna seed; Ray Tune's
ASHA may still choose a different configuration for a row when results arrive in another order, so verdicts
are compared on the rows whose chosen configuration is the same in both (the count is printed)."""
from __future__ import annotations

import argparse
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd

DESIGNS = {"fixed": ["fresh_rounds=[24]"], "adaptive": []}


def run(design: str, overrides: list[str], root: Path, experiment: str) -> dict:
    wd = root / design
    shutil.rmtree(wd, ignore_errors=True)
    t0 = time.perf_counter()
    out = subprocess.run(["sweeper", "run", experiment, "--profile", "resolve", "--workdir", str(wd), *overrides],
                         capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"{design}: sweeper run failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    folder = next((wd / "report").iterdir())
    trials = pd.read_csv(folder / "trials.csv")
    fresh = trials[trials.phase == "fresh"].drop_duplicates(["method", "trial_id", "seed"])
    looks = [ln for ln in out.stdout.splitlines() if "after look" in ln or "every row decided" in ln]
    return {"design": design, "wall_s": wall, "fresh_runs": len(fresh),
            "base_models": sum(1 for p in (wd / "base").iterdir() if p.is_dir()),
            "summary": pd.read_csv(folder / "summary.csv"), "looks": looks}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/fresh-design"))
    p.add_argument("--experiment", default="quickstart")
    args = p.parse_args()
    res = {d: run(d, o, args.workdir, args.experiment) for d, o in DESIGNS.items()}
    f, a = res["fixed"], res["adaptive"]
    print(f"{'':12}{'fixed':>10}{'adaptive':>10}{'ratio':>8}")
    for key in ("wall_s", "fresh_runs", "base_models"):
        print(f"{key:12}{f[key]:>10.0f}{a[key]:>10.0f}{a[key] / f[key]:>8.2f}")
    for line in a["looks"]:
        print("adaptive:", line)
    keys = ["attack", "method", "budget"]
    both = f["summary"].merge(a["summary"], on=keys, suffixes=("_fixed", "_adaptive"))
    same = both[both.hparams_fixed == both.hparams_adaptive]
    judged = same[same.verdict_fixed.notna() | same.verdict_adaptive.notna()]
    agree = (judged.verdict_fixed.fillna("-") == judged.verdict_adaptive.fillna("-"))
    print(f"rows: {len(both)}; same chosen configuration in both: {len(same)}; judged there: {len(judged)}; "
          f"same verdict: {int(agree.sum())}")
    cols = keys + ["verdict_fixed", "n_fresh_fixed", "verdict_adaptive", "n_fresh_adaptive", "verdict_look_adaptive",
                   "removal_fixed", "removal_adaptive"]
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(judged[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for d, r in res.items():
        counts = r["summary"][~r["summary"].method.isin(["none", "retrain"])].verdict.value_counts(dropna=False)
        print(f"{d}: verdicts {counts.to_dict()}")


if __name__ == "__main__":
    main()
