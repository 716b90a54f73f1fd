"""The public API as the README shows it."""
import sys

import sweeper


def test_importing_sweeper_does_not_start_ray_or_mlflow():
    assert "ray" not in sys.modules or "sweeper.tuning" in sys.modules  # imported only by the edges
    assert {"run_sweep", "run_trial", "load_experiment", "rebuild_report"} <= set(sweeper.__all__)


def test_readme_trial_example(tmp_path, tiny_scenario):
    rows = sweeper.run_trial({"scenario": tiny_scenario.as_dict(), "method": "gd", "hparams": {"lr": 0.05},
                              "seeds": [0], "base_dir": str(tmp_path)})
    assert [r["budget"] for r in rows] == [0.02, 0.04, 0.06, 0.08, 0.10]
    assert all(r["cost/fraction"] <= r["budget"] for r in rows)
