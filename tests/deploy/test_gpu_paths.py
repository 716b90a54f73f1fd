"""GPU code paths, selected by device availability: testable without a GPU through Ray's logical GPUs."""
import os
import subprocess
import sys
import tempfile
import textwrap

import pytest
import torch

from sweeper import tuning
from sweeper.trial import pick_device, run_trial


def test_trials_ask_for_a_fraction_of_a_gpu_when_the_cluster_has_gpus():
    assert tuning.Slots(cpus=2, gpus=0).resources == {"cpu": 1}
    assert tuning.Slots(cpus=2, gpus=0).trial_task == tuning.Slots(cpus=2, gpus=0).build_task == {}
    assert tuning.Slots(cpus=16, gpus=1).resources == {"cpu": 1, "gpu": 0.25}
    assert tuning.Slots(cpus=16, gpus=1).concurrent == 4
    assert tuning.Slots(cpus=2, gpus=1).concurrent == 2  # CPUs bound it too


def test_gpus_per_trial_sets_the_share_and_base_models_take_a_whole_gpu():
    s = tuning.Slots(cpus=16, gpus=2, gpus_per_trial=0.5)
    assert s.resources == {"cpu": 1, "gpu": 0.5} and s.trial_task == {"num_gpus": 0.5}
    assert s.concurrent == 4
    assert s.build_task == {"num_gpus": 1.0}
    assert tuning.Slots(cpus=16, gpus=0.5).build_task == {"num_gpus": 0.5}  # a fractional logical GPU


def test_device_decides_whether_trials_ask_for_gpus_not_only_what_is_up_at_start():
    # cuda on a cluster whose GPU workers are not up yet (autoscaling from zero): ask anyway, one GPU's worth
    waiting = tuning.Slots(cpus=0, gpus=0, gpus_per_trial=0.25, device="cuda")
    assert waiting.resources == {"cpu": 1, "gpu": 0.25} and waiting.trial_task == {"num_gpus": 0.25}
    assert waiting.build_task == {"num_gpus": 1.0} and waiting.concurrent == 4
    # cpu: a GPU in the cluster is left alone
    on_cpu = tuning.Slots(cpus=16, gpus=2, device="cpu")
    assert on_cpu.resources == {"cpu": 1} and on_cpu.trial_task == on_cpu.build_task == {}
    assert on_cpu.concurrent == 16


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_device_cuda_without_a_gpu_is_one_line_not_trials_pending_for_ever(tmp_path):
    from helpers import SWEEPER

    wd = tmp_path / "wd"
    out = subprocess.run([SWEEPER, "run", "quickstart", "device=cuda", "--workdir", str(wd)], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "RAY_TMPDIR": tempfile.mkdtemp(prefix="rt-", dir="/tmp")})
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "device: cuda, but this machine has no GPU that Ray can see" in out.stderr
    assert not wd.exists()


def test_gpus_per_trial_from_the_file_and_the_command_line(tmp_path):
    from sweeper import config

    path = tmp_path / "g.yaml"
    path.write_text("dataset: digits\nmodel: small_cnn\nattack: gaussian\nmethods: [gd]\nbudgets: [0.02]\n"
                    "trials: 1\nseeds: [0]\ngpus_per_trial: 0.5\n")
    assert config.load(str(path)).gpus_per_trial == 0.5
    for bad in ("0", "1.5", "true", "half"):
        path.write_text(path.read_text().rsplit("gpus_per_trial", 1)[0] + f"gpus_per_trial: {bad}\n")
        with pytest.raises(config.SweeperError, match="gpus_per_trial"):
            config.load(str(path))


def test_auto_device_follows_availability():
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.slow
def test_a_sweep_schedules_on_a_logical_gpu(tmp_path):
    """Ray with one logical GPU (no real one): trials request 0.25 GPU each and still run (on the CPU).
    Runs outside the checkout (cwd) so that it imports the installed package, as CI does."""
    code = textwrap.dedent(f"""
        import yaml
        from sweeper import tuning, sweep
        tuning.start(num_cpus=2, num_gpus=1)
        assert tuning.slots().resources == {{"cpu": 1, "gpu": 0.25}}
        path = "{tmp_path}/g.yaml"
        yaml.safe_dump({{"name": "g", "dataset": "digits", "model": {{"name": "small_cnn", "width": 8}},
                        "attack": "gaussian", "recipe": {{"epochs": 4}}, "methods": ["gd"], "budgets": [0.02],
                        "trials": 2, "seeds": [0], "fresh_seeds": []}}, open(path, "w"))
        r = sweep.run_sweep(path, workdir="{tmp_path}/wd", progress=lambda _: None)
        print("ROWS", len(r.summary))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env={"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ROWS 3" in out.stdout  # none, retrain, gd at 0.02


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_trial_runs_on_cuda_and_agrees_with_the_cpu(tiny_scenario, base_dir):
    cfg = {"scenario": tiny_scenario.as_dict(), "method": "gd", "base_dir": base_dir, "budgets": [0.02]}
    cpu, cuda = run_trial({**cfg, "device": "cpu"})[0], run_trial({**cfg, "device": "cuda"})[0]
    assert cuda["cost/units"] == cpu["cost/units"]
    assert cuda["acc/val"] == pytest.approx(cpu["acc/val"], abs=0.02)
