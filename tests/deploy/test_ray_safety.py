"""Safe by default: the embedded Ray that `sweeper run` starts keeps Ray's token authentication on, so
another process that can reach its ports (they listen on every interface) cannot submit work without
the token; `--address` to a token cluster without the token is one clear line."""
import os
import subprocess
import sys
import tempfile

import pytest
from helpers import SWEEPER

pytestmark = pytest.mark.slow

START = ("import sys, ray; from sweeper import tuning; tuning.start(num_cpus=1); "
         "print(ray.get_runtime_context().gcs_address, flush=True); sys.stdin.read()")


def _env(home, **extra):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_ADDRESS")}
    return {**env, "HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_TMPDIR": tempfile.mkdtemp(prefix="rt-", dir="/tmp"), **extra}


def _join(gcs: str, env: dict) -> subprocess.CompletedProcess:
    code = f"import ray; ray.init(address='{gcs}'); print('JOINED', ray.get(ray.remote(lambda: 2).remote()))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180)


def test_the_default_embedded_ray_refuses_a_driver_without_its_token(tmp_path):
    home, other = tmp_path / "home", tmp_path / "other"
    home.mkdir()
    other.mkdir()
    owner_env = _env(home)
    proc = subprocess.Popen([sys.executable, "-c", START], env=owner_env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        gcs = proc.stdout.readline().strip()
        assert gcs, "the embedded Ray did not start"
        token = (home / ".ray" / "auth_token").read_text().strip()  # written by the new local Ray
        refused = _join(gcs, _env(other))
        assert refused.returncode != 0 and "JOINED" not in refused.stdout
        assert "InvalidAuthToken" in refused.stderr or "token" in refused.stderr.lower()
        accepted = _join(gcs, _env(other, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token))
        assert "JOINED 2" in accepted.stdout, accepted.stderr[-2000:]
        ours = subprocess.run([SWEEPER, "run", "--profile", "tiny", "--address", gcs,
                               "--workdir", str(tmp_path / "wd")], capture_output=True, text=True,
                              env=_env(other), timeout=120)
        assert ours.returncode == 2 and "refuses this driver without its token" in ours.stderr, ours.stderr
        assert ours.stderr.count("\n") == 1 and not (tmp_path / "wd").exists()
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
        subprocess.run(["pkill", "-9", "-f", owner_env["RAY_TMPDIR"]], check=False)
