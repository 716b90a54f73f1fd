"""Shared fixtures: a tiny digits scenario (seconds to train) and the quickstart scenario, each cached
once per test session in a temporary base directory; one embedded Ray; the shared sweep (slow tests)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from sweeper import config  # noqa: E402
from sweeper.basecache import base_models  # noqa: E402
from sweeper.scenario import Scenario  # noqa: E402
from sweeper.training import Recipe  # noqa: E402
from shared_sweep import EXAMPLE, PLUGIN, SHARED  # noqa: E402

TINY = Scenario(model_params={"width": 8}, attack_params={"fraction": 0.2, "eps": 1.0},
                recipe=Recipe(epochs=8))


# The slow suite runs a file per xdist worker (--dist loadfile), each worker taking the next file when it
# finishes one. Longest first, so that the run does not end with one worker still on a long sweep while the
# other idles (durations of .ci/run on two workers: interruptions 276 s, object storage 187, the GPT-2
# sweeps 184 and 177, the shared sweep's readers 154, resume 138, cluster 135, adaptive 112, CIFAR 101).
# Only the order changes; a file missing from the list runs after these, in collection order.
LONGEST_FIRST = ["integration/test_interruptions.py", "deploy/test_object_storage.py", "scenarios/test_llm_gaussian.py",
                 "scenarios/test_llm.py", "integration/test_sweep_e2e.py", "integration/test_resume.py",
                 "deploy/test_cluster.py", "integration/test_discovery_e2e.py", "integration/test_adaptive_fresh.py",
                 "scenarios/test_cifar.py",
                 "deploy/test_mlflow_server.py", "integration/test_quickstart_all_methods.py"]


def pytest_collection_modifyitems(config, items):
    def rank(item):
        path = item.nodeid.split("::", 1)[0]
        return next((i for i, name in enumerate(LONGEST_FIRST) if path.endswith(name)), len(LONGEST_FIRST))

    items.sort(key=rank)  # stable: tests keep their order within a file


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # as inside a Ray trial; keeps CPU results bit-reproducible


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("base"))


@pytest.fixture(scope="session")
def tiny_scenario():
    return TINY


@pytest.fixture(scope="session")
def tiny_base(base_dir):
    return base_models(TINY, 0, base_dir)


@pytest.fixture(scope="session")
def quickstart_scenario():
    return config.load("quickstart").scenario


@pytest.fixture(scope="session")
def quickstart_base(base_dir, quickstart_scenario):
    return base_models(quickstart_scenario, 0, base_dir)


@pytest.fixture(scope="session")
def ray_session():
    """One embedded Ray for the whole test session (starting one costs seconds)."""
    from sweeper import tuning

    started = tuning.start(num_cpus=2)
    yield
    if started:
        tuning.stop()


@pytest.fixture(scope="module")
def ray_here():
    """Embedded Ray for one module only, shut down after it (unless it was already running). Not the
    session's `ray_session`: a module that runs early would leave Ray up for the tests of bad Ray addresses
    that come later and need a process where Ray is not started."""
    from sweeper import tuning

    started = tuning.start(num_cpus=2)
    yield
    if started:
        tuning.stop()


# -- the shared sweep -------------------------------------------------------------------------------------
# One real sweep (Ray Tune, Optuna, MLflow SQLite) for every test that only reads a sweep's outputs
# (test_sweep_e2e, test_mlflow_layout, test_plugins, test_dry_run_vs_sweep; its experiment: shared_sweep.py).
# It runs once per test run, whichever xdist worker asks first (the others read its pickle), and only when a
# slow test asks for it.
class Swept:
    """The shared sweep's result, its MLflow runs (a DataFrame), its progress lines, its files and the
    dry run's plan made just before it ran."""

    def __init__(self, result, runs, lines, experiment_file: Path, plugin_file: Path, planned):
        self.result, self.runs, self.lines = result, runs, lines
        self.experiment_file, self.plugin_file, self.planned = experiment_file, plugin_file, planned


def _once_per_run(tmp_path_factory, name: str):
    """A folder shared by every pytest-xdist worker of this run (the parent of each worker's base temp
    dir), and a lock on it: what is built there is built once per run, not once per worker."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    return root / name, FileLock(str(root / f"{name}.lock"))


@pytest.fixture(scope="session")
def plugin_file(tmp_path_factory):
    """examples/my_method.py as PLUGIN, with its search space, in a folder on no process's sys.path (one file
    per run, shared by the xdist workers: a process loads a plugin name from one file only, and the shared
    sweep names this one)."""
    folder, lock = _once_per_run(tmp_path_factory, "elsewhere")
    with lock:
        if not folder.is_dir():
            tmp = folder.with_name(folder.name + ".tmp")
            tmp.mkdir()
            shutil.copy(EXAMPLE, tmp / f"{PLUGIN}.py")
            shutil.copy(EXAMPLE.with_suffix(".yaml"), tmp / f"{PLUGIN}.yaml")
            tmp.rename(folder)
    return folder / f"{PLUGIN}.py"


@pytest.fixture(scope="session")
def _shared_sweep(tmp_path_factory, plugin_file, request):
    """Run once per test run: the first xdist worker to ask runs it (under a file lock) and pickles what it
    saw; the others wait on the lock and read that (the slow suite runs on two workers)."""
    import pickle

    folder, lock = _once_per_run(tmp_path_factory, "shared")
    with lock:
        done = folder / "swept.pickle"
        if not done.exists():
            request.getfixturevalue("ray_session")
            swept = _run_shared_sweep(folder, plugin_file)
            done.with_suffix(".tmp").write_bytes(pickle.dumps(swept))
            done.with_suffix(".tmp").rename(done)
        return pickle.loads(done.read_bytes())


def _run_shared_sweep(folder: Path, plugin_file: Path) -> Swept:
    import mlflow

    from sweeper import plan, sweep

    folder.mkdir()
    path = folder / "shared.yaml"
    path.write_text(yaml.safe_dump({**SHARED, "plugins": [str(plugin_file)]}))
    planned = plan.plan(config.load(str(path)), folder / "work")  # what --dry-run says, before anything ran
    lines = []
    result = sweep.run_sweep(path, workdir=folder / "work", progress=lines.append)
    mlflow.set_tracking_uri(result.tracking_uri)
    runs = mlflow.search_runs(experiment_names=[result.name], max_results=10000)  # as logged, not as reported
    return Swept(result, runs, lines, path, plugin_file, planned)


@pytest.fixture
def shared_sweep(request, _shared_sweep):
    """The shared sweep, for slow tests only (the fast suite must run no sweep)."""
    import mlflow

    if request.node.get_closest_marker("slow") is None:
        pytest.fail(f"{request.node.nodeid} reads the shared sweep but is not marked slow")
    mlflow.set_tracking_uri(_shared_sweep.result.tracking_uri)
    return _shared_sweep
