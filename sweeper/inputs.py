"""What data each run saw, named for MLflow's Dataset column (issue 22): one entry per (seed, context), its
digest sweeper's own content hash.

The base-model manifest records the sha256 of the poisoned training set, the validation and the test set
(scenario.train_base, `data`). Subsets are named by what they are cut from: a digest of the parent's digest
and the indices taken or left out, so the clean set, a level's retain set and its forget set each have a
digest of their own that changes whenever the data or the indices do, and no run reads the data again.

Contexts, by what the run trained on (`train`) and what it was asked to forget (`forget`):
- none: train = the poisoned training set (θ_poisoned's);
- retrain: train = the clean set (the training set less every poison);
- retrain_identified and every unlearning method at discovery level d: train = the training set less the
  poisons identified at d (the clean set at d = 1); an unlearning method also has forget = those poisons;
- every run: validation and test."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from . import discovery
from .report.selection import IDENTIFIED


@dataclass(frozen=True)
class Input:
    name: str     # e.g. digits/gaussian/seed0/forget@d0.25
    digest: str   # 16 hex digits of sha256
    context: str  # train | validation | test | forget
    rows: int
    entry: str    # the base-model cache entry (scenario key) it comes from


def _derived(parent: str, how: str, indices: list[int]) -> str:
    return hashlib.sha256(f"{parent}|{how}|{','.join(map(str, indices))}".encode()).hexdigest()[:16]


def _level_name(level: float, full: str, partial: str) -> str:
    return full if level == discovery.FULL else f"{partial}@d{level:g}"


def of_seed(manifest: dict, attack: str, entry: str, method: str, level: float = discovery.FULL) -> list[Input]:
    """The inputs of one seed's part of a run of `method` at discovery `level`, from that seed's base-model
    manifest (`entry`: its cache key). Empty for a manifest written before digests existed."""
    data = manifest.get("data")
    if not data:
        return []
    seed, poisons = manifest["seed"], [int(i) for i in manifest["poison_indices"]]
    head = f"{data['dataset']}/{attack}/seed{seed}"
    n = data["n_train"]
    out = [Input(f"{data['dataset']}/val", data["val"], "validation", data["n_val"], entry),
           Input(f"{data['dataset']}/test", data["test"], "test", data["n_test"], entry)]
    if method == "none":
        return [Input(f"{head}/poisoned", data["train"], "train", n, entry), *out]
    if method == "retrain":
        level = discovery.FULL
    known = sorted(poisons[i] for i in discovery.identified_positions(len(poisons), seed, level).tolist())
    retain = Input(f"{head}/{_level_name(level, 'clean', 'retain')}", _derived(data["train"], "without", known),
                   "train", n - len(known), entry)
    if method in ("retrain", IDENTIFIED):
        return [retain, *out]
    forget = Input(f"{head}/{_level_name(level, 'forget', 'forget')}", _derived(data["train"], "only", known),
                   "forget", len(known), entry)
    return [retain, forget, *out]


def of_run(manifests: list[tuple[str, dict]], attack: str, method: str, level: float = discovery.FULL) -> list[Input]:
    """A run's inputs over its seeds' (entry, manifest) pairs, each (name, digest) once (the validation and
    test sets are the same for every seed)."""
    seen, out = set(), []
    for entry, manifest in manifests:
        for i in of_seed(manifest, attack, entry, method, level):
            if (i.name, i.digest) not in seen:
                seen.add((i.name, i.digest))
                out.append(i)
    return out
