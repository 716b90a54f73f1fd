"""Issue 22, in a real browser (headless Chromium, Debian's `chromium` package, which .ci/run installs with
apt): `mlflow ui` on the shared sweep, opened at the address the sweep printed, shows the runs table with a
parent run per method and the data sets each saw; optuna-dashboard on the sweep's Optuna storage lists its
studies. Without Chromium these tests skip, unless SWEEPER_REQUIRE_BROWSER=1 (CI) makes that a failure."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from shared_sweep import REFERENCES, SEARCHED
from test_mlflow_server import free_port

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium")
if CHROMIUM is None and os.environ.get("SWEEPER_REQUIRE_BROWSER") == "1":
    raise RuntimeError("SWEEPER_REQUIRE_BROWSER=1 but no chromium on PATH (apt-get install -y chromium)")
needs_browser = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install -y chromium)")

# As the environment's notes start it: without the background-networking flags Chromium's connections are
# refused by a closed network, many at a time; the virtual time lets a React app fetch and render.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=20000", "--window-size=1600,1000"]


def render(url: str, profile: Path) -> str:
    """The page's DOM after its scripts ran, as Chromium built it."""
    done = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@contextlib.contextmanager
def serving(command: list[str], ready: str, cwd: Path):
    """A server started by `command`, once `ready` answers 200 (within 120 s)."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd)
    deadline = time.time() + 120
    try:
        while True:
            try:
                with urllib.request.urlopen(ready, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, f"{command[0]} exited with {proc.returncode}"
            assert time.time() < deadline, f"{command[0]} did not answer {ready} within 120 s"
            time.sleep(0.5)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def tool(name: str) -> str:
    return shutil.which(name) or str(Path(sys.executable).parent / name)


@needs_browser
def test_mlflow_ui_opens_the_printed_address_on_the_runs_table(shared_sweep, tmp_path):
    result = shared_sweep.result
    last = shared_sweep.lines[-1]
    printed = re.search(r"then open (http://127\.0\.0\.1:5000/(#/experiments/\d+\?workflowType=machine_learning))", last)
    assert printed, last
    port = free_port()
    with serving([tool("mlflow"), "ui", "--backend-store-uri", result.tracking_uri, "--host", "127.0.0.1",
                  "--port", str(port)], f"http://127.0.0.1:{port}/health", tmp_path):
        dom = render(f"http://127.0.0.1:{port}/{printed.group(2)}", tmp_path / "chromium")
    for attack in ("gaussian", "backdoor"):
        for method in SEARCHED + REFERENCES:
            assert f"{attack}/{method}" in dom, f"no parent run {attack}/{method} in the runs table"
    assert re.search(r"digits/gaussian/seed0/(clean|poisoned)", dom), "the Dataset column names no data set"


@needs_browser
def test_optuna_dashboard_lists_every_study_of_the_sweep(shared_sweep, tmp_path):
    result = shared_sweep.result
    storage = f"sqlite:///{result.workdir / 'optuna.db'}"
    port = free_port()
    with serving([tool("optuna-dashboard"), storage, "--host", "127.0.0.1", "--port", str(port)],
                 f"http://127.0.0.1:{port}/api/studies", tmp_path):
        dom = render(f"http://127.0.0.1:{port}/dashboard", tmp_path / "chromium")
    for attack in ("gaussian", "backdoor"):
        for method in SEARCHED:
            assert f"{result.name}/{attack}/{method}" in dom, f"no study {attack}/{method} in optuna-dashboard"
