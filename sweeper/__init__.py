"""sweeper: does machine unlearning remove data poisoning, and at what fraction of retraining's cost?

    import sweeper
    result = sweeper.run_sweep("quickstart")  # into ./sweeper-work
    result.summary  # best removal per (attack, method, budget)
"""
from .config import Experiment
from .config import load as load_experiment
from .errors import SweeperError
from . import registry  # registry.methods / .attacks / .datasets / .models (names clash with subpackages)
from .readback import SweepResult, compare_sweeps, load_model, rebuild_report
from .sweep import run_sweep
from .trial import run_trial

__version__ = "0.1.0"
__all__ = ["run_sweep", "rebuild_report", "compare_sweeps", "load_model", "run_trial", "load_experiment", "Experiment", "SweepResult",
           "SweeperError", "registry", "__version__"]
