"""The experiment of the shared sweep (tests/conftest.py runs it; the tests that read it import
these names to know what it holds)."""
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "my_method.py"
PLUGIN = "plug_gd"  # examples/my_method.py under another name, from a folder no Ray worker imports from

# Two attacks (the dry run counts per attack), an anytime and a fixed-cost built-in method, and a plugin.
# 8 epochs: at 4, ga's lr = 1e4 trial below was scored -1.87, not the diverged penalty (measured once).
SHARED = {
    "name": "shared", "dataset": "digits", "model": {"name": "small_cnn", "width": 8},
    "attack": [{"name": "gaussian", "fraction": 0.2, "eps": 1.0}, {"name": "backdoor"}], "recipe": {"epochs": 8},
    # two trials: each method's signature default first, then the point listed in its space (below)
    "methods": ["gd", "ga", "ssd", PLUGIN], "budgets": [0.02, 0.04], "trials": 2, "seeds": [0], "fresh_seeds": [1, 2],
    "spaces": {
        # A range a user got wrong: lr = -1 makes torch's SGD raise, so that trial must be FAILED.
        "gd": {"params": {"lr": {"low": -1.0, "high": 0.1}}, "points": [{"lr": -1.0}]},
        # lr = 1e4 of gradient ascent overflows to NaN: the trial must get the penalised objective.
        "ga": {"params": {"lr": {"low": 1.0e-5, "high": 1.0e+4, "log": True}}, "points": [{"lr": 1.0e+4}]},
    },
}
SEARCHED = SHARED["methods"]
REFERENCES = ["none", "retrain"]
