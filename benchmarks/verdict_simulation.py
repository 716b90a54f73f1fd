"""The verdict against retraining on simulated fresh seeds: how often it is wrong at the margin and how often
it decides, per attack kind, seed-to-seed spread and design, next to today's test on the same seeds.

    python benchmarks/verdict_simulation.py [--sims 4000]

The simulators and the cells are tests/verdict_sim.py's, the ones tests/unit/test_verdict_calibration.py
asserts on; the verdict is sweeper.report.contrast's (the report's own code). Spread: τ (SD of the true
removal across seeds) for Gaussian poisoning, σ (logit SD of each model's success rate across seeds) for
the rate attacks. Designs: a fixed 3, 6 or 12 fresh seeds at α = 0.025 per side, or looks after 3, 6, 12
and 24 seeds at α/4 per side (Bonferroni). Old: stats.pooled_removal + stats.verdict for Gaussian, the t
interval of per-seed removals for rates (fixed designs only). Accuracy is kept throughout."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the shared simulators
import verdict_sim as vs  # noqa: E402
from sweeper.report import contrast  # noqa: E402

SPREADS = {"gaussian": (0.0, 0.2, 0.3, 0.4), "backdoor": (0.0, 0.5, 1.0), "witches_brew": (0.0, 0.5, 1.0)}
REMOVALS = (0.13, 0.85, 0.9, 1.0)
DESIGNS = ("3", "6", "12", "adaptive")
# (column, true removal, verdict counted): false rates at and beyond the margin, then power.
COLUMNS = (("worse@.90", 0.9, 1), ("equiv@.90", 0.9, -1), ("worse@1.0", 1.0, 1), ("equiv@.85", 0.85, -1),
           ("worse@.13", 0.13, 1), ("worse@.85", 0.85, 1), ("equiv@1.0", 1.0, -1))
OLD = {"worse": 1, "equivalent": -1, "inconclusive": 0}


def table(kind: str, sims: int) -> None:
    print(f"\n{kind}  ({'τ' if kind == 'gaussian' else 'σ'} = spread; new test, then old test on the same seeds;"
          " seeds = mean fresh seeds the adaptive design used at removal .13 / .90 / 1.0)")
    print(f"{'spread':>6} {'design':>8} " + " ".join(f"{c:>9}" for c, _, _ in COLUMNS) + "   | old:"
          + " ".join(f"{c:>9}" for c, _, _ in COLUMNS) + "  seeds")
    for spread in SPREADS[kind]:
        cells = {r: vs.cell(kind, spread, r, sims) for r in REMOVALS}
        for design in DESIGNS:
            new = [np.mean(cells[r][1][design] == d) for _, r, d in COLUMNS]
            old = ["—"] * len(COLUMNS) if design == "adaptive" else [
                f"{np.mean(np.vectorize(OLD.get)(vs.old_verdicts(kind, cells[r][0], int(design))) == d):9.3f}"
                for _, r, d in COLUMNS]
            seeds = ("  " + " / ".join(f"{cells[r][1]['adaptive_seeds'].mean():.1f}" for r in (0.13, 0.9, 1.0))
                     if design == "adaptive" else "")
            print(f"{spread:>6} {design:>8} " + " ".join(f"{v:9.3f}" for v in new) + "   |     "
                  + " ".join(f"{v:>9}" for v in old) + seeds)


def retrain_table(sims: int) -> None:
    print("\nretrain itself: P(\"worse\") / P(\"equivalent\") (Gaussian: GUS N(0, 1/√240); rates: m_u = m_r, σ 0.5)")
    for kind in SPREADS:
        _, d = vs.cell(kind, 0.0 if kind == "gaussian" else 0.5, 1.0, sims, retrain=True)
        print(f"{kind:>14} " + "  ".join(f"{k}: {np.mean(d[k] == 1):.3f} / {np.mean(d[k] == -1):.3f}" for k in DESIGNS))


def floor_table(sims: int) -> None:
    """The within-seed floor's cost where it is the truth (Gaussian): the same seeds with se = 0."""
    print("\nGaussian, the floor's cost: worse@.90, equiv@.90, worse@.13, equiv@1.0 with the floor / without (se = 0)")
    for tau in (0.0, 0.3):
        cells = {r: vs.cell("gaussian", tau, r, sims)[0] for r in (0.13, 0.9, 1.0)}
        for n in vs.FIXED:
            out = []
            for r, d in ((0.9, 1), (0.9, -1), (0.13, 1), (1.0, -1)):
                x = {k: v[:, :n] for k, v in cells[r].items()}
                bare = {**x, "se_u": 0 * x["se_u"], "se_p": 0 * x["se_p"]}
                out.append(f"{np.mean(contrast.contrasts(**x).decision == d):.3f}/"
                           f"{np.mean(contrast.contrasts(**bare).decision == d):.3f}")
            print(f"  τ {tau}  n {n:>2}  " + "  ".join(out))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sims", type=int, default=4000, help="simulated sweeps per cell (default 4000)")
    args = p.parse_args()
    start = time.perf_counter()
    print(__doc__.split("\n\n")[-1])
    for kind in SPREADS:
        table(kind, args.sims)
    retrain_table(args.sims)
    floor_table(args.sims)
    print(f"\n{args.sims} simulated sweeps per cell; {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
