"""Two sweeps' summary.csv side by side, column by column: which columns differ and in how many rows.

A refactor must leave a sweep's numbers alone. Run the default sweep before and after with one trial at a
time (so that the order results arrive in cannot change ASHA's choices), then:

    sweeper run --workdir /tmp/before --max-concurrent 1     # on the old code
    sweeper run --workdir /tmp/after --max-concurrent 1      # on the new code
    python benchmarks/compare_summaries.py /tmp/before/report/quickstart /tmp/after/report/quickstart

`cost_seconds` (wall time) and `trial_id` (Ray Tune's random ids) differ between any two runs; every other
column, and equivalence.csv, resolution.csv and importance.csv, must be identical. A column the new code adds
is named and left out of the comparison; one it removes counts as a difference unless named with --dropped
(a removal the README announces); a float column the new code computes in another order on purpose may be
named with --close (equal within 1e-12 relative, said). Exit 1 on any difference."""
from __future__ import annotations

import argparse
import filecmp
import sys
from pathlib import Path

import pandas as pd

EXPECTED = ("cost_seconds", "trial_id")  # timing and Tune's per-run ids
SAME_FILES = ("equivalence.csv", "resolution.csv", "importance.csv")
CLOSE = 1e-12  # --close: a float computed in another order differs in its last bits, never more


def _read(before: Path, after: Path, name: str) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Both files' tables on the columns they share; columns only `after` has are named (a change may add
    a column: say so in the README), columns only `before` had are returned (a removal is a difference)."""
    a, b = (pd.read_csv(d / name, dtype=str, keep_default_na=False) for d in (before, after))
    added, removed = [c for c in b.columns if c not in a], [c for c in a.columns if c not in b]
    if added or removed:
        print(f"{name}: columns only after: {added or 'none'}; only before: {removed or 'none'}")
    shared = [c for c in a.columns if c in b]
    return a[shared], b[shared], removed


def _same(before: Path, after: Path, name: str) -> bool:
    """The same bytes, or the same table once the columns `after` adds are left out."""
    if filecmp.cmp(before / name, after / name, shallow=False):
        return True
    a, b, removed = _read(before, after, name)
    return not removed and a.equals(b)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before", type=Path, help="a report folder (report/<sweep>/)")
    p.add_argument("after", type=Path)
    p.add_argument("--dropped", nargs="*", default=[], help="columns the new code removes on purpose")
    p.add_argument("--close", nargs="*", default=[], metavar="COLUMN",
                   help="numeric columns the new code computes in another order on purpose: equal within "
                        f"{CLOSE:g} relative, said per column")
    args = p.parse_args()
    a, b, removed = _read(args.before, args.after, "summary.csv")
    if len(a) != len(b):
        print(f"row counts differ: {len(a)} vs {len(b)}")
        return 1
    differ = {c: int((a[c] != b[c]).sum()) for c in a.columns if not a[c].equals(b[c])}
    for c, n in differ.items():
        print(f"{c}: {n} of {len(a)} rows differ" + ("  (expected)" if c in EXPECTED else ""))
    for c in [c for c in args.close if c in differ]:
        x, y = (pd.to_numeric(t[c], errors="coerce") for t in (a, b))
        worst = float(((x - y).abs() / x.abs().where(x != 0, 1)).max())
        if worst <= CLOSE and (x.isna() == y.isna()).all():
            print(f"{c}: within {worst:.1e} relative (--close)")
            del differ[c]
    files = [f for f in SAME_FILES if (args.before / f).exists() and not _same(args.before, args.after, f)]
    for f in files:
        print(f"{f} differs")
    bad = [c for c in differ if c not in EXPECTED] + files + [f"{c} (gone)" for c in removed if c not in args.dropped]
    print(f"{len(a)} rows x {len(a.columns)} columns; " + ("identical apart from timing and trial ids" if not bad
                                                           else f"unexpected differences: {', '.join(bad)}"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
