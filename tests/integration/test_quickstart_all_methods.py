"""The quickstart's content at the tiny profile, from the installed CLI, on a machine with a stale Ray cluster
record: every registered image method gets a row at every budget, and the run starts its own Ray."""
import os
import socket
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from helpers import SWEEPER

from sweeper import config
from sweeper import methods as _methods
from sweeper.registry import methods

pytestmark = pytest.mark.slow


def stale_ray_record() -> tuple[str, int]:
    """A private Ray temp dir recording a cluster whose head died without `ray stop` (nothing listens)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    ray_tmp = tempfile.mkdtemp(prefix="rt-", dir="/tmp")  # short: Ray's socket paths are limited
    (Path(ray_tmp) / "ray").mkdir()
    (Path(ray_tmp) / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{port}")
    return ray_tmp, port


def test_every_method_has_a_row_at_every_budget_and_a_stale_cluster_record_is_ignored(tmp_path):
    """Issue 15: the default run must not try to join the recorded cluster (it hung for minutes) but start
    its own Ray. One run of the tiny quickstart checks that and the rows of every method."""
    ray_tmp, port = stale_ray_record()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_TMPDIR": ray_tmp}
    env.pop("RAY_ADDRESS", None)
    wd = tmp_path / "wd"
    out = subprocess.run([SWEEPER, "run", "--profile", "tiny", "--trials", "1", "--workdir", str(wd)],
                         capture_output=True, text=True, timeout=900, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    first = out.stdout.splitlines()[0]
    assert "embedded Ray at" in first and f":{port}" not in first

    budgets = list(config.load("quickstart", "tiny").budgets)
    s = pd.read_csv(wd / "report" / "quickstart" / "summary.csv")
    searched = s[~s.method.isin(["none", "retrain"])]
    assert set(searched.method) == set(config.searchable_methods("image"))
    for method, rows in searched.groupby("method"):
        assert sorted(rows.budget) == budgets, method
        fixed = _methods.kind(methods.get(method)) == "fixed"
        assert set(rows.status) <= ({"ok", "accuracy_violated", "diverged", "over_budget"} if fixed
                                    else {"ok", "accuracy_violated", "diverged"}), method
    assert set(s[s.method.isin(["none", "retrain"])].budget) == {0.0, 1.0}
