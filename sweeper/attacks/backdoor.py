"""BadNets backdoor.

Gu, Dolan-Gavitt, Garg, "BadNets: Identifying Vulnerabilities in the Machine Learning Model Supply
Chain", 2017, arXiv 1708.06733. A white square patch in the bottom-right corner is stamped on a random
fraction of training images of other classes, which are relabelled to one target class; a model that
learns the shortcut sends any patched image to that class. Defaults: 10% poison ratio, all-to-one target
0 (BackdoorBench), a 3x3 patch (Corrective Machine Unlearning bench): docs/method_ranges.md, Attacks.

The attack success rate (ASR) is measured on patched held-out points whose true label is not the
target; `craft` sees only the training split, so it sets `eval_fraction` of it aside for that (never
trained on by θ_poisoned or θ_retrain)."""
from __future__ import annotations

import torch

from ..data import Split, generator
from ..params import FRACTION, NON_NEGATIVE, POSITIVE, Range
from ._base import Poisoning
from ._surrogate import hold_out, rate_metrics

PAPER = "Gu, Dolan-Gavitt, Garg, 2017, arXiv 1708.06733"
RETRAIN_EFFECT = None  # a clean model's ASR is not known exactly: measured on θ_retrain
_PICK, _MIA = 31, 33   # generator streams: which points are poisoned, MIA non-members
RANGES = {
    "fraction": FRACTION,
    "target": NON_NEGATIVE,     # a class index; its upper bound (num_classes) belongs to the data set
    "patch": POSITIVE,          # patch 0 would slice `-0:`, i.e. paint the whole image white
    "eval_fraction": Range(0, 1, low_open=True, high_open=True),  # 0: no ASR points; 1: nothing to train on
}


def trigger(x: torch.Tensor, patch: int) -> torch.Tensor:
    """The residual that turns `x` into its patched version: the corner square set to 1 (the pixel box's
    maximum, so the patched image stays inside [0, 1])."""
    delta = torch.zeros_like(x)
    corner = x[..., -patch:, -patch:]
    delta[..., -patch:, -patch:] = 1.0 - corner
    return delta


def craft(train: Split, *, seed: int, fraction: float = 0.1, target: int = 0, patch: int = 3,
          eval_fraction: float = 0.1) -> Poisoning:
    rest, held = hold_out(train, round(eval_fraction * len(train)), seed)
    others = torch.nonzero(rest.y != target).flatten()
    n_poison = min(len(others), max(1, round(fraction * len(rest))))
    pick = torch.randperm(len(others), generator=generator(seed, _PICK))[:n_poison]
    forget = others[pick].sort().values
    x, y = rest.x.clone(), rest.y.clone()
    x[forget] += trigger(x[forget], patch)
    y[forget] = target
    victims = held.y != target
    context = {"eval_x": held.x[victims].clone(), "eval_y": held.y[victims].clone(),
               "target": int(target), "patch": int(patch)}
    return Poisoning(Split(x, y), forget, context)


@torch.no_grad()
def effect(model: torch.nn.Module, context: dict) -> dict[str, float]:
    model.eval()
    x = context["eval_x"]
    pred = model(x + trigger(x, context["patch"])).argmax(1)
    m = rate_metrics(pred == context["target"], "backdoor")
    m["backdoor/asr"] = m.pop("backdoor/success")
    return m


def mia_nonmembers(heldout: Split, context: dict, *, seed: int, copies: int = 1) -> Split:
    """Held-out points transformed like the poisons: those of other classes, patched and relabelled to the
    target (the patch is deterministic, so `copies` repeats the same points)."""
    x = heldout.x[heldout.y != context["target"]]
    x = x + trigger(x, context["patch"])
    y = torch.full((len(x),), context["target"], dtype=heldout.y.dtype)
    return Split(x.repeat(copies, 1, 1, 1), y.repeat(copies))
