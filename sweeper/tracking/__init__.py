"""The MLflow edge: the only package that imports MLflow. Everything is written from the driver with
explicit run ids: experiment = sweep; a parent run per (attack, method); one child run per trial.

Layout a user finds in the MLflow UI: sweep -> parent run "gaussian/gd" -> child runs, one per Tune trial
(tags method, attack, trial_id, seed, phase), metrics stepped by checkpoint (step = budget in per-mille
of retraining cost), a `checkpoints.csv` table per child and `trials.csv` (all checkpoints of all its
children) per parent, which is what `sweeper report` reads back.

- `store`: the tracking store itself (URI checks, the SQLite file created atomically);
- `record`: a sweep's record, i.e. its experiment (reserved atomically, owner, status, command) and the
  store-wide view of every sweep (statuses, dead drivers);
- `writer`: the runs one sweep writes (parents, children, checkpoints, tables, artifacts);
- `reader`: plain functions that read a sweep back (rows, experiment, runs), through one pager."""
import logging
import os

# An unreachable server must fail fast, not after minutes of retries (docs/stack.md, MLflow).
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # progress is ours to print

from .reader import child_rows, logged_runs, read_experiment, read_rows, read_table, runs  # noqa: E402
from .record import (COMMAND_TAG, INTERRUPTED_TAG, OWNER_TAG, STATUS_TAG, SweepRecord,  # noqa: E402
                     close_dead_sweeps, sweep_overview, sweep_statuses, sweeps)
from .store import check_server, default_uri, exists, open_store, sqlite_path  # noqa: E402
from .writer import RunWriter  # noqa: E402

# After MLflow's import, which configures its own logger at INFO: no database-migration chatter.
logging.getLogger("mlflow").setLevel(logging.WARNING)

__all__ = ["COMMAND_TAG", "INTERRUPTED_TAG", "OWNER_TAG", "STATUS_TAG", "RunWriter", "SweepRecord", "check_server",
           "child_rows", "close_dead_sweeps", "default_uri", "exists", "logged_runs", "open_store", "read_experiment",
           "read_rows", "read_table", "runs", "sqlite_path", "sweep_overview", "sweep_statuses", "sweeps"]
