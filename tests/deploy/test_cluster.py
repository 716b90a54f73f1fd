"""A multi-node Ray cluster on one machine (ray.cluster_utils.Cluster): a head with 0 CPUs (driver only) and two
worker nodes, base models and Tune records under a separate storage root, MLflow on a real `mlflow server`.
Trials run on both workers; with one worker removed mid-sweep the sweep still completes, every Tune trial is
one MLflow run, and the report has the same rows as an undisturbed run."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import mlflow
import pytest
import yaml
from test_mlflow_server import server  # noqa: F401  (fixture: a real mlflow server on 127.0.0.1)

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent("""
    import json, sys, threading
    from ray.cluster_utils import Cluster
    from sweeper import sweep

    exp, wd, storage, uri, name, remove = sys.argv[1:7]
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    removed = threading.Event()

    def progress(line):
        print(line, flush=True)
        # once tuning is under way, take the second worker away (its running trials die with it)
        if remove == "yes" and not removed.is_set() and " 1/" in line:
            removed.set()
            threading.Thread(target=cluster.remove_node, args=(workers[1],), daemon=True).start()

    try:
        r = sweep.run_sweep(exp, workdir=wd, storage="file://" + storage, tracking_uri=uri, name=name,
                            address=cluster.address, progress=progress)
        rows = r.summary[["attack", "method", "budget", "status"]].astype(str).values.tolist()
        print("RESULT " + json.dumps({"rows": rows, "workers": [w.node_id for w in workers],
                                      "removed": removed.is_set()}), flush=True)
    finally:
        cluster.shutdown()
""")


def _run(tmp_path, exp, uri, name, remove):
    ray_tmp = tempfile.mkdtemp(prefix="rt-", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_TMPDIR": ray_tmp}
    try:
        out = subprocess.run([sys.executable, "-c", SCRIPT, str(exp), str(tmp_path / "wd"), str(tmp_path / "storage"),
                              uri, name, remove], capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env)
    finally:
        subprocess.run(["pkill", "-9", "-f", ray_tmp], check=False)  # whatever a failed run left behind
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):]), out.stdout


def test_a_sweep_survives_losing_a_worker_node(tmp_path, server):  # noqa: F811
    server = server[0]  # (uri, process, folder)
    exp = tmp_path / "cluster.yaml"
    exp.write_text(yaml.safe_dump({
        "name": "cluster", "dataset": "digits", "model": {"name": "small_cnn", "width": 8},
        "attack": {"name": "gaussian"}, "recipe": {"epochs": 4}, "methods": ["gd", "ga"],
        "budgets": [0.02, 0.04], "trials": 3, "seeds": [0], "fresh_seeds": [100, 101]}))
    calm, _ = _run(tmp_path, exp, server, "calm", "no")
    hit, log = _run(tmp_path, exp, server, "hit", "yes")
    assert hit["removed"], log[-2000:]

    # trials ran on the worker nodes, never the 0-CPU head, and base models / Tune records left the work dir
    mlflow.set_tracking_uri(server)
    for name, result in (("calm", calm), ("hit", hit)):
        runs = mlflow.search_runs(experiment_names=[name])
        tuned = runs[(runs["tags.level"] == "trial") & (runs["tags.phase"] == "tune")
                     & runs["tags.method"].isin(["gd", "ga"])]
        assert len(tuned) == 6 and tuned["tags.trial_id"].is_unique  # every Tune trial exactly once
        assert set(tuned["status"]) <= {"FINISHED", "KILLED", "FAILED"}
        # every trial that reported a checkpoint names the worker it ran on; only a trial whose node died
        # before it ever ran (Tune reports its failure without a start) has none, and it is FAILED
        ran = tuned["metrics.budget"].notna()
        assert tuned[ran]["tags.ray.node_id"].notna().all() and set(tuned[ran]["tags.ray.node_id"]) <= set(result["workers"])
        assert (tuned[tuned["tags.ray.node_id"].isna()]["status"] == "FAILED").all(), tuned[["status", "tags.ray.node_id"]]
        assert not (runs["status"] == "RUNNING").any()
    calm_nodes = set(mlflow.search_runs(experiment_names=["calm"])["tags.ray.node_id"].dropna())
    assert calm_nodes == set(calm["workers"])  # both workers took trials
    assert not (tmp_path / "wd" / "base").exists() and not (tmp_path / "wd" / "ray").exists()
    assert (tmp_path / "storage" / "base").is_dir() and (tmp_path / "storage" / "ray" / "hit").is_dir()
    assert sorted(map(tuple, hit["rows"])) == sorted(map(tuple, calm["rows"]))
