"""Gaussian poisoning and the Gaussian Unlearning Score (GUS).

Pawelczyk, Di, Lu, Kamath, Sekhari, Neel, "Machine Unlearning Fails to Remove Data Poisoning Attacks",
ICLR 2025, arXiv 2406.17216. A random subset of training points gets ξ ~ N(0, ε²I) added to its input
(in [0, 1] pixel units, never clipped or quantised), labels kept. If a model never saw ξ, the score
I = <ξ, ∇ₓℓ(θ; x, y)> / (ε‖∇ₓℓ‖) at the clean input x is exactly N(0, 1); training on x + ξ pushes it
negative. The paper's CIFAR-10 setting is 1.5% of points at ε = 0.3; our digits default (20%, ε = 1.0)
is the scale at which a small CNN on 1,197 images memorises the noise measurably (docs/stack.md, Measurements).

On text (token ids; the scenario passes `text=DataSet.text`) the noise goes on the token-embedding output
of a poisoned text's non-padding positions, as in the paper's GPT-2 experiments: each poison carries a
noise key and the text model re-generates ξ from it (sweeper/textnoise.py); GUS is then
⟨ξ, ∇ₑℓ⟩ / (ε‖∇ₑℓ‖) over those positions, exactly N(0, 1) for a model that never saw ξ."""
from __future__ import annotations

import functools
import math
import sys

import torch
from torch.nn import functional as F

from .. import textnoise
from ..data import Split, generator
from ..params import FRACTION, POSITIVE
from ._base import Poisoning

MODALITIES = ("image", "text")  # the data it applies to (checked when an experiment is read)
PAPER = "Pawelczyk et al., ICLR 2025, arXiv 2406.17216"
RETRAIN_EFFECT = 0.0  # E[GUS] = 0 on any model that never saw the noise: removal uses this exact value
FRESH_DRAWS = 100     # fresh-noise scores per poison for the TPR at 1% FPR (docs/architecture.md, GUS)
# The context's entries with one row per poison: GUS is a mean over poisons, so it can be taken over any
# subset of them (sweeper/discovery.py: identified and unidentified poisons apart).
PER_POISON = ("clean_x", "y", "noise", "keys")
_NOISE, _FRESH, _MIA = 11, 12, 13  # generator streams: training noise, GUS null draws, MIA non-members
# eps > 0, not ≥ 0: GUS divides by ε, and ε = 0 adds no noise (nothing to poison or to remove).
RANGES = {"fraction": FRACTION, "eps": POSITIVE}


def craft(train: Split, *, seed: int, fraction: float = 0.2, eps: float = 1.0, text: dict | None = None) -> Poisoning:
    n_poison = max(1, round(fraction * len(train)))
    gen = generator(seed, _NOISE)
    forget = torch.randperm(len(train), generator=gen)[:n_poison].sort().values
    if text is not None:  # token ids: the noise goes on the token embeddings (sweeper/textnoise.py)
        return _craft_text(train, forget, gen, seed, eps, text)
    noise = eps * torch.randn((n_poison, *train.x.shape[1:]), generator=gen)
    x = train.x.clone()
    x[forget] += noise
    context = {"clean_x": train.x[forget].clone(), "y": train.y[forget].clone(), "noise": noise,
               "eps": float(eps), "seed": int(seed)}
    return Poisoning(Split(x, train.y.clone()), forget, context)


def _craft_text(train: Split, forget: torch.Tensor, gen: torch.Generator, seed: int, eps: float,
                text: dict) -> Poisoning:
    """Each poison gets a noise key: the text model adds ε·N(0, I) from that key to its token embeddings at
    non-padding positions, wherever the example is used. Labels kept, as for images."""
    keys = torch.full((len(train),), -1, dtype=torch.long)
    keys[forget] = torch.randint(0, 2**62, (len(forget),), generator=gen)
    x = textnoise.attach(train.x, keys.to(train.x.device), eps)
    context = {"clean_x": train.x[forget].clone(), "y": train.y[forget].clone(), "keys": keys[forget].clone(),
               "eps": float(eps), "seed": int(seed), "pad_id": int(text["pad_id"])}
    return Poisoning(Split(x, train.y.clone()), forget, context)


def _text_scores(model: torch.nn.Module, context: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """GUS on token embeddings: ⟨ξ, ∇ₑℓ⟩ / (ε‖∇ₑℓ‖) at the clean text, over non-padding positions (ξ is
    zero elsewhere, and so is ∇ₑℓ at right padding, which the last real token never attends to)."""
    ids, keys = context["clean_x"], context["keys"]
    grads = model.embedding_gradients(ids, context["y"])
    mask = ids != context["pad_id"]
    eps = torch.full((len(keys),), context["eps"], dtype=torch.float64)
    xi = textnoise.noise(keys.cpu(), eps, mask, grads.shape[-1])
    return gus_scores(grads * mask.unsqueeze(-1), xi, context["eps"])


def input_gradients(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """Per-example ∇ₓ ℓ(θ; x, y) in eval mode (examples are independent, so a summed loss gives each one)."""
    model.eval()
    out = []
    for i in range(0, len(y), batch):
        xb = x[i : i + batch].detach().clone().requires_grad_(True)
        loss = F.cross_entropy(model(xb), y[i : i + batch], reduction="sum")
        (g,) = torch.autograd.grad(loss, xb)
        out.append(g.detach())
    return torch.cat(out)


def gus_scores(grads: torch.Tensor, noise: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """I_z = <ξ, g> / (ε‖g‖) in float64, and which poisons are valid (g ≠ 0 and finite)."""
    g = grads.flatten(1).double().cpu()
    xi = noise.flatten(1).double().cpu()
    norm = g.norm(dim=1)
    valid = torch.isfinite(norm) & (norm > 0)
    scores = (xi * g).sum(1) / (eps * norm.clamp_min(sys.float_info.min))
    return scores, valid


def _tpr_at_1fpr(scores: torch.Tensor, seed: int) -> float:
    """Per poison: is its score below the 1% quantile of FRESH_DRAWS fresh-noise scores with its gradient?

    A fresh draw ξ' ~ N(0, ε²I) scores ⟨ξ', g⟩ / (ε‖g‖), which is exactly N(0, 1) whatever g is, so the
    scalar scores are drawn directly: the same distribution as projecting d-dimensional noise onto each
    poison's gradient, without drawing FRESH_DRAWS x n x d numbers per evaluation (1.8 GB at the paper's
    750 CIFAR-10 poisons; 30% of an evaluation's time on digits)."""
    return float((scores < _null_threshold(seed, len(scores))).double().mean())


@functools.lru_cache(maxsize=64)
def _null_threshold(seed: int, n: int) -> torch.Tensor:
    """The 1% quantile of each poison's FRESH_DRAWS null scores: the same draws at every checkpoint of a seed
    (its own generator stream), so drawn once per (seed, number of poisons) and process."""
    null = torch.randn((FRESH_DRAWS, n), generator=generator(seed, _FRESH), dtype=torch.float64)  # (draws, n)
    return torch.quantile(null, 0.01, dim=0)


def effect(model: torch.nn.Module, context: dict) -> dict[str, float]:
    if "keys" in context:
        scores, valid = _text_scores(model, context)
    else:
        grads = input_gradients(model, context["clean_x"], context["y"])
        scores, valid = gus_scores(grads, context["noise"], context["eps"])
    n = int(valid.sum())
    if n == 0:
        nan = float("nan")
        return {"gus/mean": nan, "gus/z": nan, "gus/n_valid": 0, "gus/tpr_at_1fpr": nan,
                "attack/effect": nan, "attack/effect_se": nan, "gus/sum": nan}
    s = scores[valid]
    mean = float(s.mean())
    return {
        "gus/mean": mean,
        "gus/z": mean * math.sqrt(n),
        "gus/n_valid": n,
        "gus/sum": float(s.sum()),  # lets callers pool z over seeds: z = Σ sums / √Σ n
        "gus/tpr_at_1fpr": _tpr_at_1fpr(s, context["seed"]),
        "attack/effect": -mean,
        "attack/effect_se": 1.0 / math.sqrt(n),  # I_z ~ N(0, 1) under the null
    }


def mia_nonmembers(heldout: Split, context: dict, *, seed: int, copies: int = 1) -> Split:
    """Held-out points transformed like the poisons: clean input + fresh noise at the same ε."""
    gen = generator(seed, _MIA)
    if "keys" in context:  # texts: fresh noise keys (embedding noise the model never trained on)
        ids = heldout.x.repeat(copies, 1)
        keys = torch.randint(0, 2**62, (len(ids),), generator=gen)
        return Split(textnoise.attach(ids, keys.to(ids.device), context["eps"]), heldout.y.repeat(copies))
    x = heldout.x.repeat(copies, 1, 1, 1)
    x = x + context["eps"] * torch.randn(x.shape, generator=gen)
    return Split(x, heldout.y.repeat(copies))

