"""A sweep logging to a real `mlflow server` on 127.0.0.1 (what a cluster uses instead of SQLite)."""
import contextlib
import hashlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow import MlflowClient

from sweeper import config, readback, sweep, tracking
from sweeper.basecache import base_models
from sweeper.errors import SweeperError

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(folder: Path):
    """A real `mlflow server` on 127.0.0.1 with its store and artifacts in `folder`; yields (uri, process)."""
    port = free_port()
    exe = shutil.which("mlflow") or str(Path(sys.executable).parent / "mlflow")
    proc = subprocess.Popen([exe, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                             "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
                             "--artifacts-destination", str(folder / "server-artifacts")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("mlflow server did not start within 90 s")
    try:
        yield uri, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the module's sweeps (starting one costs ~10 s); each sweep logs its own experiment.
    Yields (uri, process, folder)."""
    folder = tmp_path_factory.mktemp("server")
    with mlflow_server(folder) as (uri, proc):
        yield uri, proc, folder


@pytest.fixture
def own_server(tmp_path):
    """A server of this test's own, for a test that stops it."""
    with mlflow_server(tmp_path) as (uri, proc):
        yield uri, proc


def test_sweep_logs_to_a_real_mlflow_server(server, tmp_path, ray_session):
    server, _, folder = server
    path = tmp_path / "server.yaml"
    path.write_text(yaml.safe_dump({
        "name": "served", "dataset": "digits", "model": {"name": "small_cnn", "width": 8},
        "attack": {"name": "gaussian"}, "recipe": {"epochs": 4}, "methods": ["gd"],
        "budgets": [0.02, 0.04], "trials": 2, "seeds": [0], "fresh_seeds": [1, 2]}))
    result = sweep.run_sweep(path, workdir=tmp_path / "wd", tracking_uri=server, progress=lambda _: None)
    mlflow.set_tracking_uri(server)
    runs = mlflow.search_runs(experiment_names=["served"])
    trials = runs[(runs["tags.level"] == "trial") & (runs["tags.phase"] == "tune")]
    assert sorted(trials["tags.method"]) == ["gd", "gd", "none", "retrain"]
    fresh = runs[runs["tags.phase"] == "fresh"]
    assert set(fresh["tags.seed"]) == {"1", "2"} and {"none", "retrain", "gd"} <= set(fresh["tags.method"])
    assert not (tmp_path / "wd" / "mlflow.db").exists()  # nothing went to a local store
    assert (folder / "server-artifacts").exists()      # artifacts went through the server
    rebuilt = readback.rebuild_report(tmp_path / "wd", tracking_uri=server)
    assert set(rebuilt.summary.method) == {"none", "retrain", "gd"} and len(result.summary) == 4
    _where_users_look(MlflowClient(server), runs, result, config.load(path).scenarios[0], tmp_path / "wd" / "base")


def _expected_inputs(scenario, seed: int, base_dir) -> dict:
    """name -> (context, digest) of what a run on `seed` may name, computed from the cached data itself."""
    base = base_models(scenario, seed, base_dir)
    train, poisons = base.poisoning.train.digest(), base.poisoning.forget.tolist()

    def cut(how: str) -> str:  # a subset's digest: its parent's and the indices (sweeper/inputs.py)
        return hashlib.sha256(f"{train}|{how}|{','.join(map(str, poisons))}".encode()).hexdigest()[:16]

    head = f"digits/gaussian/seed{seed}"
    return {f"{head}/poisoned": ("train", train), f"{head}/clean": ("train", cut("without")),
            f"{head}/forget": ("forget", cut("only")), "digits/val": ("validation", base.data.val.digest()),
            "digits/test": ("test", base.data.test.digest())}


def _where_users_look(client, runs, result, scenario, base_dir):
    """Issue 22: the experiment opens on its runs; every run names the data it saw, with digests of the data's
    content; parents carry one flat metric per budget (the runs table shows only a stepped metric's last step)."""
    assert client.get_experiment_by_name(result.name).tags["mlflow.experimentKind"] == "custom_model_development"
    expected = {seed: _expected_inputs(scenario, seed, base_dir) for seed in (0, 1, 2)}
    contexts = {"none": ["test", "train", "validation"], "retrain": ["test", "train", "validation"],
                "gd": ["forget", "test", "train", "validation"]}
    for _, run in runs.iterrows():
        seen = {d.dataset.name: (next(t.value for t in d.tags if t.key == "mlflow.data.context"), d.dataset.digest)
                for d in client.get_run(run.run_id).inputs.dataset_inputs}
        seeds = [0] if run["tags.phase"] == "tune" else [int(run["tags.seed"])] if run["tags.level"] == "trial" \
            else [0, 1, 2]  # a parent: its tuning seed and both fresh seeds
        want = {n: v for s in seeds for n, v in expected[s].items()
                if ("/poisoned" not in n or run["tags.method"] == "none") and ("/clean" not in n or run["tags.method"] != "none")
                and ("/forget" not in n or run["tags.method"] == "gd")}
        assert seen == want, (run["tags.method"], run["tags.level"], run["tags.phase"])
        assert sorted({c for c, _ in seen.values()}) == contexts[run["tags.method"]]
    parents = runs[runs["tags.level"] == "parent"]
    assert len(parents) == 3
    for _, parent in parents.iterrows():
        mine = result.summary[result.summary.method == parent["tags.method"]]
        for row in mine.itertuples():
            for name in ("removal", "acc_test"):
                assert parent[f"metrics.{name}.b{row.budget:g}"] == pytest.approx(getattr(row, name), nan_ok=True)


def test_a_server_that_stops_answering_is_an_error_not_an_absent_artifact(own_server, tmp_path):
    """A transient failure reading a run's experiment used to read as "nothing logged", so --resume
    skipped its check that the experiment is the same."""
    uri, proc = own_server
    record = tracking.SweepRecord(uri, "s", tmp_path)
    record.reserve(numbered=False)
    parent = tracking.RunWriter(record).start_parent("gaussian", "gd", {}, {"trials": 2})
    assert tracking.reader.read_text(record, parent, "experiment.json") == '{\n "trials": 2\n}'
    proc.terminate()
    proc.wait(timeout=30)
    with pytest.raises(SweeperError, match=f"cannot read experiment.json of run {parent} from {uri}"):
        tracking.reader.read_text(record, parent, "experiment.json")
