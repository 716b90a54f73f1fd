"""The public API as the README shows it."""
import subprocess
import sys

import sweeper


def test_importing_sweeper_imports_neither_ray_nor_mlflow():
    """In a fresh interpreter: in this one, earlier tests have imported both (only the edges may)."""
    code = "import sys, sweeper; print(sorted(m for m in ('ray', 'mlflow') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_the_readme_names_are_public():
    assert {"run_sweep", "run_trial", "load_experiment", "rebuild_report"} <= set(sweeper.__all__)


def test_readme_trial_example(tmp_path, tiny_scenario):
    rows = sweeper.run_trial({"scenario": tiny_scenario.as_dict(), "method": "gd", "hparams": {"lr": 0.05},
                              "seeds": [0], "budgets": [0.02, 0.04, 0.06, 0.08, 0.10], "base_dir": str(tmp_path)})
    assert [r["budget"] for r in rows] == [0.02, 0.04, 0.06, 0.08, 0.10]
    assert all(r["cost/fraction"] <= r["budget"] for r in rows)
