"""--storage s3://...: base models published content-addressed with the manifest last, downloaded into a
node-local mirror and checked blob by blob, Tune's records and the chosen models in the bucket, and no
part of the sweep on the driver's disk but MLflow's store. Each store is a real HTTP server on 127.0.0.1
reached through pyarrow's own clients as the cloud would be: moto's S3 server, and gcp-storage-emulator
for GCS (anonymous: the emulator checks no credentials)."""
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from helpers import SWEEPER
from moto import server as moto_server

from sweeper import basecache, storage
from sweeper.errors import SweeperError
from sweeper.basecache import NOT_BUILT, base_models, entry_status
from sweeper.scenario import FILES


@contextlib.contextmanager
def s3_server():
    """A bucket on moto's S3 server; yields a function giving a fresh prefix URI in it."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test")
    query = f"endpoint_override=http://{host}:{port}&region=us-east-1"
    from pyarrow import fs as pafs

    pafs.FileSystem.from_uri(f"s3://sweeper-test?{query}&allow_bucket_creation=true")[0].create_dir("sweeper-test")
    count = iter(range(10**6))
    try:
        yield lambda: f"s3://sweeper-test/run{next(count)}?{query}"
    finally:
        server.stop()
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


@contextlib.contextmanager
def gcs_server():
    """A bucket on gcp-storage-emulator (the GCS JSON API over HTTP, in memory), reached anonymously."""
    from gcp_storage_emulator.server import create_server

    with socket.socket() as s:  # a free port: the emulator takes a fixed one
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="sweeper-test")
    server.start()
    query = f"anonymous=true&scheme=http&endpoint_override=127.0.0.1:{port}&retry_limit_seconds=5"
    count = iter(range(10**6))
    try:
        yield lambda: f"gs://sweeper-test/run{next(count)}?{query}"
    finally:
        server.stop()


SERVERS = {"s3": s3_server, "gs": gcs_server}


@pytest.fixture(scope="module", params=list(SERVERS))
def bucket(request):
    with SERVERS[request.param]() as fresh:
        yield fresh


@pytest.fixture(scope="module")
def s3():
    with s3_server() as fresh:
        yield fresh


@pytest.fixture(scope="module")
def gcs():
    with gcs_server() as fresh:
        yield fresh


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEPER_MIRROR", str(tmp_path / "mirror"))
    return tmp_path / "mirror"


def count_builds(monkeypatch):
    calls = []
    real = basecache.train_base
    monkeypatch.setattr(basecache, "train_base", lambda *a: (calls.append(a[1]), real(*a))[1])
    return calls


def test_join_keeps_the_query_at_the_end():
    assert storage.join("s3://b/p?endpoint_override=h:1", "base", "k") == "s3://b/p/base/k?endpoint_override=h:1"
    assert storage.join("gs://b", "ray") == "gs://b/ray"
    assert storage.display("s3://b/p?endpoint_override=h:1") == "s3://b/p"


def test_an_anonymous_gcs_uri_takes_pyarrows_options_and_refuses_others():
    fs, path = storage.filesystem("gs://b/p/q?anonymous=true&scheme=http&endpoint_override=127.0.0.1:1")
    assert type(fs).__name__ == "GcsFileSystem" and path == "b/p/q"
    with pytest.raises(SweeperError, match="gs://b: unknown option 'colour' in the storage URI's query"):
        storage.filesystem("gs://b/p?anonymous=true&colour=red")


def test_an_entry_is_published_once_and_read_back_equal_on_a_fresh_node(bucket, mirror, tiny_scenario, monkeypatch):
    root = bucket()
    base = storage.join(root, "base")
    builds = count_builds(monkeypatch)
    assert entry_status(tiny_scenario, 0, base) == NOT_BUILT
    first = base_models(tiny_scenario, 0, base)
    assert builds == [0] and entry_status(tiny_scenario, 0, base) is None
    shutil.rmtree(mirror)  # another node: nothing mirrored yet
    basecache._BASES.clear()
    again = base_models(tiny_scenario, 0, base)
    assert builds == [0]  # downloaded, not trained again
    assert all(torch.equal(first.poisoned[k], again.poisoned[k]) for k in first.poisoned)
    assert torch.equal(first.poisoning.train.x, again.poisoning.train.x)
    assert again.path.is_relative_to(mirror) and again.manifest == first.manifest
    os.truncate(again.path / "retrain.pt", 10)  # this node's copy goes bad: fetched again, not rebuilt
    basecache._BASES.clear()
    third = base_models(tiny_scenario, 0, base)
    assert builds == [0] and all(torch.equal(first.retrain[k], third.retrain[k]) for k in first.retrain)


def test_a_killed_publisher_leaves_an_entry_that_reads_as_not_built(bucket, mirror, tiny_base, tiny_scenario):
    """Blobs first, manifest last: without the manifest nothing of the entry is visible."""
    entry = storage.join(bucket(), "base", tiny_scenario.key(0))
    manifest = yaml.safe_load((tiny_base.path / "manifest.json").read_text())
    for name in FILES:  # what a publisher killed before its last PUT has written
        storage.upload(tiny_base.path / name, storage.join(entry, "blobs", manifest["files"][name]["sha256"]))
    assert basecache.read_manifest(entry) == (None, NOT_BUILT)
    basecache.publish(tiny_base.path, entry)
    assert basecache.remote_status(entry) is None


@pytest.mark.parametrize("damage, why", [("truncate", "poisoned.pt: "), ("flip", "poisoned.pt: checksum mismatch"),
                                         ("delete", "poisoned.pt: missing")])
def test_a_damaged_blob_is_named_and_the_entry_rebuilt(bucket, mirror, tiny_base, tiny_scenario, monkeypatch, damage, why):
    base = storage.join(bucket(), "base")
    entry = storage.join(base, tiny_scenario.key(0))
    basecache.publish(tiny_base.path, entry)
    blob = storage.join(entry, "blobs", basecache.read_manifest(entry)[0]["files"]["poisoned.pt"]["sha256"])
    data = storage.read_bytes(blob)
    if damage == "delete":
        storage.filesystem(blob)[0].delete_file(storage.filesystem(blob)[1])
    else:
        storage.write_bytes(blob, data[: len(data) // 2] if damage == "truncate"
                            else data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    if damage != "flip":  # sizes are checked without downloading
        assert entry_status(tiny_scenario, 0, base).startswith(why)
    builds = count_builds(monkeypatch)
    basecache._BASES.clear()
    with pytest.warns(UserWarning, match=why):
        rebuilt = base_models(tiny_scenario, 0, base)
    assert builds == [0] and entry_status(tiny_scenario, 0, base) is None
    assert all(torch.equal(rebuilt.poisoned[k], tiny_base.poisoned[k]) for k in tiny_base.poisoned)


def test_an_unusable_store_is_one_line(bucket):
    root = bucket().replace("sweeper-test", "no-such-bucket")
    with pytest.raises(SweeperError, match=r"^--storage (s3|gs)://no-such-bucket/run\d+: cannot write there"):
        storage.probe(root)


@pytest.mark.slow
def test_a_sweep_keeps_nothing_but_mlflow_on_the_driver_disk(gcs, tmp_path):
    """`sweeper run --storage gs://...` in a subprocess: base models, Tune's records and the chosen models
    land in the bucket; the work directory holds MLflow's store, the Optuna mirror and the report only; the
    chosen model logged to MLflow loads. (The same for s3:// is checked by the resume test below, on its own
    sweep: one full sweep per store, CI time.)"""
    exp = tmp_path / "obj.yaml"
    exp.write_text(yaml.safe_dump({
        "name": "obj", "dataset": "digits", "model": {"name": "small_cnn", "width": 8},
        "attack": {"name": "gaussian"}, "recipe": {"epochs": 3}, "methods": ["gd"], "budgets": [0.02, 0.04],
        "trials": 2, "seeds": [0], "fresh_seeds": [100, 101]}))
    root = gcs()
    ray_tmp = tempfile.mkdtemp(prefix="rt-", dir="/tmp")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_TMPDIR": ray_tmp,
           "SWEEPER_MIRROR": str(tmp_path / "mirror")}
    try:
        out = subprocess.run([SWEEPER, "run", str(exp), "--workdir", str(tmp_path / "wd"), "--storage", root],
                             capture_output=True, text=True, timeout=600, env=env)
    finally:
        subprocess.run(["pkill", "-9", "-f", ray_tmp], check=False)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"storage {storage.display(root)}" in out.stdout
    from pyarrow import fs as pafs

    fs, path = storage.filesystem(root)
    names = [i.path[len(path) + 1:] for i in fs.get_file_info(pafs.FileSelector(path, recursive=True))
             if i.type == pafs.FileType.File]
    assert sum(n.startswith("base/") and n.endswith("/manifest.json") for n in names) == 3  # seeds 0, 100 and 101
    assert any(n.startswith("ray/obj/gaussian/") for n in names)
    assert any(n.startswith("models/obj/gaussian/gd/") and n.endswith(".safetensors") for n in names)
    assert sorted(p.name for p in (tmp_path / "wd").iterdir()) == ["artifacts", "mlflow.db", "optuna.db", "report"]
    load = subprocess.run([sys.executable, "-c", "import sys, sweeper; m = sweeper.load_model('obj', 'gaussian', "
                           "'gd', 0.04, workdir=sys.argv[1]); print(type(m).__name__)", str(tmp_path / "wd")],
                          capture_output=True, text=True, timeout=120)
    assert load.returncode == 0 and load.stdout.strip() == "BlockModel", load.stderr[-2000:]


# What the bucket resume needs and no more: two methods tuned together, no fresh phase (test_resume.py
# resumes through it on local storage).
RESUMED = {"name": "res", "dataset": "digits", "model": {"name": "small_cnn", "width": 8},
           "attack": {"name": "gaussian", "fraction": 0.2, "eps": 1.0}, "recipe": {"epochs": 4},
           "methods": ["gd", "ga"], "budgets": [0.02, 0.04], "trials": 3, "seeds": [0], "fresh_seeds": []}


@pytest.mark.slow
def test_a_killed_sweep_resumes_from_tunes_records_in_the_bucket(s3, tmp_path, monkeypatch):
    """SIGKILL mid-tuning with --storage s3://..., then --resume: Tune's records are restored from the
    bucket (through the same pyarrow file system), and the sweep finishes with each trial logged once."""
    # The sweep drivers of tests/integration; on sys.path only when pytest collected a test there.
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "integration"))
    from test_interruptions import Sweep, sweep_status
    from test_resume import trials

    root, wd = s3(), tmp_path / "wd"
    env = {"SWEEPER_MIRROR": str(tmp_path / "mirror")}
    killed = Sweep(wd, "--storage", root, experiment=RESUMED, env=env)
    killed.wait_for("[gaussian/gd] 1/3")  # Tune has checkpointed its records to the bucket; trials are in flight
    killed.proc.send_signal(signal.SIGKILL)
    killed.finish()
    resumed = Sweep(wd, "--storage", root, "--resume", experiment=RESUMED, env=env)
    assert resumed.finish() == 0, "\n".join(resumed.lines[-30:])
    assert any("resuming Ray Tune's records" in ln for ln in resumed.lines), "\n".join(resumed.lines)
    assert sweep_status(wd, "res") == "finished"
    tuned = trials(wd, "res").query("level == 'trial' and phase == 'tune' and method not in ['none', 'retrain']")
    assert tuned.trial_id.is_unique and len(tuned) == 6 and not (tuned.status == "RUNNING").any()
    # and, as on gs:// above, the bucket holds what a sweep stores and the driver's disk only MLflow's store
    # (and the Optuna studies mirrored for optuna-dashboard)
    from pyarrow import fs as pafs

    fs, path = storage.filesystem(root)
    names = [i.path[len(path) + 1:] for i in fs.get_file_info(pafs.FileSelector(path, recursive=True))
             if i.type == pafs.FileType.File]
    assert sum(n.startswith("base/") and n.endswith("/manifest.json") for n in names) == 1  # seed 0
    assert any(n.startswith("ray/res/gaussian/") for n in names)
    assert sorted(p.name for p in wd.iterdir()) == ["artifacts", "mlflow.db", "optuna.db", "report"]
