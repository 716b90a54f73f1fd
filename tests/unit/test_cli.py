"""The CLI as a user meets it: real subprocesses of the installed console script."""
import shutil
import subprocess
import sys

import pytest

SWEEPER = shutil.which("sweeper") or f"{sys.executable} -m sweeper.cli"


def run(*args, cwd=None):
    return subprocess.run([*SWEEPER.split(), *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_methods_lists_every_method_with_paper_and_ranges(tmp_path):
    out = run("methods", cwd=tmp_path)  # from outside the checkout: resources ship in the package
    assert out.returncode == 0, out.stderr
    for name in ["none", "retrain", "gd", "ngd", "ga", "neggrad_plus"]:
        assert f"\n{name}  (" in "\n" + out.stdout
    assert "arXiv 2406.17216" in out.stdout and "range [0.0001, 0.1] log" in out.stdout


def test_attacks_lists_parameters():
    out = run("attacks")
    assert out.returncode == 0 and "gaussian" in out.stdout and "eps=1.0" in out.stdout


@pytest.mark.parametrize("content, message", [
    ("trials: [1\n", "not valid YAML"),
    ("dataset: digits\n", "missing key(s)"),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, content, message):
    p = tmp_path / "bad.yaml"
    p.write_text(content)
    out = run("validate", str(p))
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and message in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]], ids=["run", "dry-run"])
def test_run_and_dry_run_refuse_the_same_options(tmp_path, dry_run):
    """`sweeper run --dry-run --trials 0` used to print a plan that `sweeper run --trials 0` refuses."""
    out = run("run", "quickstart", *dry_run, "--trials", "0", cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == "", out
    assert out.stderr == "sweeper: error: --trials must be a positive integer, got 0\n"
    assert list(tmp_path.iterdir()) == []  # no work directory either


def test_validate_accepts_the_bundled_quickstart():
    out = run("validate", "quickstart")
    assert out.returncode == 0 and out.stdout.startswith("ok: quickstart")
