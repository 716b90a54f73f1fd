"""What every run of a sweep records about where it came from: package versions, the git revision, the
user, the scenario's hash, and the experiment's settings flattened into params."""
from __future__ import annotations

import getpass
import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path

from .config import Experiment

PACKAGES = ("sweeper", "torch", "ray", "mlflow", "optuna")


def versions() -> dict[str, str]:
    out = {}
    for pkg in PACKAGES:
        try:
            out[f"version.{pkg}"] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_revision() -> str | None:
    """The checkout's commit when sweeper runs from one (an installed package has none)."""
    here = Path(__file__).resolve().parent.parent
    if not (here / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def common_tags(sweep: str, profile: str) -> dict[str, str]:
    """The tags every run of the sweep carries (MLflow's own source tags included, so its UI shows them)."""
    tags = {**versions(), "sweep": sweep, "profile": profile, "mlflow.source.name": "sweeper run",
            "mlflow.source.type": "LOCAL", "mlflow.user": user()}
    if rev := git_revision():
        tags["git_revision"] = tags["mlflow.source.git.commit"] = rev
    return tags


def scenario_hash(scenario, seeds) -> str:
    payload = json.dumps({"scenario": scenario.as_dict(), "seeds": list(seeds)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def experiment_params(exp: Experiment, attack: str) -> dict[str, str]:
    """The settings of `exp` for one attack, flattened: dataset.*, model.*, attack.*, recipe.*, and the
    sweep's own (budgets, trials, seeds, ...)."""
    sc = next(s for s in exp.scenarios if s.attack == attack)
    flat = {"dataset.name": sc.dataset, "model.name": sc.model, "attack.name": sc.attack}
    for prefix, params in (("dataset", sc.dataset_params), ("model", sc.model_params), ("attack", sc.attack_params),
                           ("recipe", sc.recipe.as_dict())):
        flat.update({f"{prefix}.{k}": v for k, v in params.items()})
    flat.update({k: v for k, v in exp.as_dict().items() if k not in ("scenarios", "spaces", "name", "plugins")})
    if "discovery" in flat:  # the sweep's levels; `discovery` itself is each level's runs' own parameter
        flat["discovery_levels"] = flat.pop("discovery")
    flat.update({f"plugin.{Path(p).stem}": p for p in exp.plugins})
    return {k: json.dumps(v) if isinstance(v, (list, dict)) else str(v) for k, v in flat.items()}
