"""The Ray edge: the only package that imports Ray. `cluster` starts or joins Ray and says what slots it
has; `tasks` runs base-model builds and plain trials as Ray tasks; `tuner` tunes every method of one
attack in one Tuner (one Optuna study and one ASHA per method)."""
import os

# Set before Ray is imported. Ray's token authentication stays on (a new local Ray enables it and keeps
# its token in ~/.ray/auth_token): an embedded Ray's GCS and raylet listen on every interface, and Ray
# offers no loopback-only binding. Tests and CI set RAY_AUTH_MODE=disabled themselves.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy reporter is silent at verbose=0
# Ctrl-C must stop the sweep (exit 130, runs KILLED), not make Tune end quietly and the sweep carry on.
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "100")
# Save the experiment state (trials, searcher, schedulers) at most every 2 s rather than Tune's adaptive
# default, so a sweep killed mid-tuning resumes (--resume) from a state seconds old. Small JSON writes.
os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")

from .cluster import (Slots, check, check_address, check_device, describe, resolve_auto, slots, start,  # noqa: E402
                      stop)
from .tasks import Pool, build_bases  # noqa: E402
from .tuner import (RoutingScheduler, RoutingSearcher, TrialListener, can_resume, resume_attack,  # noqa: E402
                    study_seed, tune_attack)

__all__ = ["Pool", "RoutingScheduler", "RoutingSearcher", "Slots", "TrialListener", "build_bases", "can_resume", "check",
           "check_address", "check_device", "describe", "resolve_auto", "resume_attack", "slots",
           "start", "stop", "study_seed", "tune_attack"]
