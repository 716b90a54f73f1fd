"""Witches' Brew: targeted clean-label poisoning by gradient matching.

Geiping, Fowl, Huang, Czaja, Taylor, Moeller, Goldstein, "Witches' Brew: Industrial Scale Data
Poisoning via Gradient Matching", ICLR 2021, arXiv 2009.02276; code github.com/JonasGeiping/
poisoning-gradient-matching (read at commit 90bd7d2; the lines cited below are in that commit). For each
target (a test image and an adversarial class), images of that class get perturbations Δ, ‖Δ‖∞ ≤ ε with
x + Δ in the pixel box, whose training gradient on a clean surrogate aligns (cosine) with the gradient
that would send the target to the adversarial class; their labels stay correct. T = 4 targets are crafted
into one θ_poisoned (docs/architecture.md, Attacks), each with a disjoint poison subset of its adversarial
class.

Surrogate and targets. Given the scenario's `victim` (scenario._craft passes it), the surrogate is the
victim's own model (`victim.build`, from a seed of this attack's stream) trained with the victim's recipe
on the clean training split, and the targets are `targets` random points of `victim.test` (their indices
in the context as `target_index`). θ_poisoned and θ_retrain are trained later from the scenario's own
initialisation, so the poisons must transfer across initialisations, as in the paper. Overrides, both 0
(= the scenario's) by default: `surrogate_epochs` replaces the recipe's epochs, `surrogate_width` swaps in
a `small_cnn` of that width. Called without a victim (tests, direct use), `craft` falls back to a
`small_cnn` (width `surrogate_width` or 16; `surrogate_epochs` or 60 epochs at lr 0.05, no augmentation)
trained on the training split minus the `targets` points it holds out as targets (`_surrogate.hold_out`).

What the reference runs (defaults in forest/options.py), and what we do:
- Objective, `--loss similarity` (options.py:67; witchcoven/witch_matching.py:56-58, 66-67, 80-83):
  1 − ⟨∇θℓ(target, adv), ∇θℓ(poisons)⟩ / (‖·‖‖·‖) over all parameters at once (one cosine), the poison
  loss a batch mean, the surrogate in eval mode throughout (witch_base.py:81), fp32. Same here.
- Optimiser `signAdam` (options.py:42; witch_base.py:131-134, 161-167): Adam fed the sign of the gradient
  accumulated over the poison batches. Its lr is "rule 2", τ0 = τ·pbatch/512 (witch_base.py:117-119) with
  τ = 0.1 (options.py:45) and pbatch = 512 (options.py:50); the rule that scales by ε/255/σ (:110-116)
  is only for PGD/momPGD. Their Δ lives in normalised input units (x − m)/σ, so a step is τ per
  normalised unit, τ·σ_c in [0, 1] pixel units: on CIFAR-10 (σ ≈ 0.25) ≈ 0.025 ≈ 0.39·ε at ε = 16/255.
  We optimise Δ/σ (σ = the surrogate's own normalisation, its `std` buffer) with Adam at lr τ: the same
  trajectory. (Before this, lr was τ·ε in pixel units, 4x smaller on CIFAR-10.) Poisons go through in
  batches of at most POISON_BATCH = 512 (kettle.py:90-93), so τ0 = τ.
- Schedule (options.py:46; witch_base.py:137-139): lr ×0.1 at steps // 2.667, // 1.6, // 1.142 of
  250 steps (options.py:43).
- Projection after every step (witch_base.py:168-173): Δ to ±ε and x + Δ into the pixel box. Same.
- Init `randn` (options.py:44; data/kettle.py:437-445): ε·N(0, 1) clamped to ±ε, per restart.
- Restarts, 8 (options.py:48; witch_base.py:62-76): keep the Δ with the lowest loss at the last step
  (witch_base.py:147-151, 175). Same; no extra evaluation pass.
- Differentiable augmentation, on by default (`--paugment`, options.py:52; witch_base.py:221-223;
  kettle.py:153-164; data/diff_data_augmentation.py:13-63): each poison, every step, is resampled
  bilinearly (grid_sample, align_corners) from an identity grid shifted uniformly within ±shift/2 pixels
  per axis (shift 8 on CIFAR's 32 pixels: ±4) and mirrored left-right with probability ½, fresh draws
  each time (victim_base.py:61-64 passes no generator). `diff_augment` does the same with ±CROP_PAD
  (4) pixels, the victim's own crop range, drawn from a seeded CPU generator.
- ε = 16/255 (options.py:28), budget 1% of the training set (options.py:29): our defaults.

Deviations (ours):
- T targets, each with its own target gradient and a disjoint poison subset of its own adversarial class,
  drawn uniformly among the other classes (docs/architecture.md, Attacks). The reference's default threat model
  (`single-class`, options.py:19; kettle.py:316-329) has 1 target (options.py:30); with several, one joint
  gradient over targets of one class, all poisons from one class.
- Poisons per target: round(budget·n), not ceil (kettle.py:374).
- Augmentation during crafting only when the surrogate's recipe augments (the victim's, unless overridden);
  the reference augments poison batches whatever its victim does (its victims augment by default,
  options.py:53, 89). Pixels from outside the image are black (0 in pixel units, as training.augment
  pads); the reference's grid_sample pads 0 in normalised units, i.e. the mean colour.
- The initial Δ is projected into the pixel box too (the reference projects from the first step on).

Effect: `attack/effect` = success rate over targets (classified as their adversarial class) with a Wilson
interval, and `targeted/adv_prob`, the mean softmax probability of the adversarial class over targets
(fp32): a continuous effect that moves before a target flips. Units: the surrogate's training (3 x epochs
x n), 3 per target gradient, and 6 per poison and step (its gradient, 3, and that gradient's gradient
with respect to Δ, 3); augmentation is not charged."""
from __future__ import annotations

import dataclasses
import math
import time

import torch
from torch.nn import functional as F

from ..data import Split, generator
from ..params import FRACTION, NON_NEGATIVE, POSITIVE, Range
from ..training import CROP_PAD, Recipe, full_precision
from ._base import Poisoning, Victim
from ._surrogate import hold_out, param_grads, rate_metrics, small_cnn_builder, surrogate

PAPER = "Geiping et al., ICLR 2021, arXiv 2009.02276"
RETRAIN_EFFECT = None  # a clean model may still classify a target as its adversarial class: measured
# generator streams: adversarial classes, poison subsets, Δ restarts, test targets, augmentation draws
_CLASS, _PICK, _INIT, _TARGET, _AUGMENT = 41, 42, 43, 44, 45
POISON_BATCH = 512  # the reference's pbatch (options.py:50): poisons per forward pass
# The surrogate without a victim (this module's earlier defaults): a small_cnn of this width and recipe.
FALLBACK_WIDTH, FALLBACK_EPOCHS, FALLBACK_LR = 16, 60, 0.05
RANGES = {
    "targets": POSITIVE,
    "budget": FRACTION,         # share of the training set poisoned per target
    "eps": FRACTION,            # ‖Δ‖∞ in [0, 1] pixel units: 0 perturbs nothing, beyond 1 the box binds
    "restarts": POSITIVE,       # 0 restarts would return no perturbation at all
    "steps": POSITIVE,
    "tau": POSITIVE,            # Adam's lr in the model's normalised input units (τ·σ in pixel units)
    "surrogate_width": NON_NEGATIVE,   # 0: the victim's model; > 0: a small_cnn of this width
    "surrogate_epochs": NON_NEGATIVE,  # 0: the victim's recipe's epochs; > 0: this many
    "num_classes": Range(2),    # only without a victim (else the victim's); the adversarial class ≠ the true one
}


def _choose(pool_y: torch.Tensor, target_y: torch.Tensor, n_per_target: int, num_classes: int, seed: int):
    """An adversarial class ≠ the true one per target, and disjoint poison subsets of those classes (CPU
    labels in, CPU indices into the pool out)."""
    gen = generator(seed, _CLASS)
    adv = (target_y + torch.randint(1, num_classes, target_y.shape, generator=gen)) % num_classes
    gen = generator(seed, _PICK)
    used = torch.zeros(len(pool_y), dtype=torch.bool)
    subsets = []
    for c in adv.tolist():
        pool = torch.nonzero((pool_y == c) & ~used).flatten()
        chosen = pool[torch.randperm(len(pool), generator=gen)[:n_per_target]].sort().values
        used[chosen] = True
        subsets.append(chosen)
    return adv, subsets


def diff_augment(x: torch.Tensor, draws: torch.Tensor, shift: int = CROP_PAD) -> torch.Tensor:
    """The reference's differentiable augmentation (diff_data_augmentation.py:38-63): image i is sampled
    bilinearly from an identity grid shifted by (2·draws[i, 0] − 1)·`shift` pixels across and
    (2·draws[i, 1] − 1)·`shift` down, mirrored left-right where draws[i, 2] > ½; outside the image is 0.
    Differentiable in `x`; `draws` is (n, 3), uniform in [0, 1), on x's device."""
    _, _, h, w = x.shape
    rows = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype)
    cols = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype)
    gy, gx = torch.meshgrid(rows, cols, indexing="ij")
    pixel_x, pixel_y = 2 / max(w - 1, 1), 2 / max(h - 1, 1)  # one pixel in grid units (align_corners)
    gx = gx + ((2 * draws[:, 0] - 1) * shift * pixel_x)[:, None, None]
    gy = gy + ((2 * draws[:, 1] - 1) * shift * pixel_y)[:, None, None]
    gx = torch.where((draws[:, 2] > 0.5)[:, None, None], -gx, gx)
    grid = torch.stack([gx, gy.expand_as(gx)], dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def _input_scale(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """σ of the model's own normalisation ((x − m)/σ inside a BlockModel), broadcastable to x; 1 without."""
    std = getattr(model, "std", None)
    return std.detach().to(x) if isinstance(std, torch.Tensor) else torch.ones((), device=x.device)


def _match(model, x, y, target_grad, *, eps, steps, tau, restarts, gen, crops):
    """Best-of-`restarts` Δ (‖Δ‖∞ ≤ ε, x + Δ in [0, 1]) minimising 1 − cos(∇θ ℓ(x + Δ, y), target_grad),
    by signed Adam on u = Δ/σ (the reference's normalised units); augmented by `crops` draws if given."""
    flat_target = torch.cat([g.flatten() for g in target_grad])
    scale = _input_scale(model, x)
    bound = eps / scale
    low, high = torch.maximum(-bound, -x / scale), torch.minimum(bound, (1 - x) / scale)
    milestones = [int(steps // 2.667), int(steps // 1.6), int(steps // 1.142)]  # witch_base.py:138-139
    best, best_loss = None, math.inf
    for _ in range(restarts):
        u = torch.max(torch.min(torch.randn(x.shape, generator=gen).to(x.device) * bound, high), low)
        u.requires_grad_(True)
        opt = torch.optim.Adam([u], lr=tau)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, 0.1)
        for _ in range(steps):
            draws = None if crops is None else torch.rand((len(x), 3), generator=crops).to(x.device)
            grad, loss = _alignment_grad(model, x, y, u, scale, flat_target, draws)
            u.grad = grad.sign()  # signed Adam
            opt.step()
            sched.step()
            with torch.no_grad():
                u.copy_(torch.max(torch.min(u, high), low))
        if loss < best_loss:  # the last step's loss, as the reference ranks restarts
            best, best_loss = (u.detach() * scale).clamp(-eps, eps), loss  # σ·(ε/σ) may round above ε
    return best, best_loss


def _alignment_grad(model, x, y, u, scale, flat_target, draws):
    """∂(alignment loss)/∂u batch by batch (at most POISON_BATCH poisons each), and the batches' mean loss."""
    grad, total, starts = torch.empty_like(u), 0.0, range(0, len(x), POISON_BATCH)
    for i in starts:
        part = slice(i, i + POISON_BATCH)
        ub = u[part].detach().requires_grad_(True)
        xb = x[part] + ub * scale
        if draws is not None:
            xb = diff_augment(xb, draws[part])
        loss = _alignment_loss(model, xb, y[part], flat_target)
        grad[part] = torch.autograd.grad(loss, ub)[0]
        total += float(loss.detach())
    return grad, total / len(starts)


def _alignment_loss(model, x, y, flat_target):
    grads = param_grads(model, x, y, create_graph=True)
    flat = torch.cat([g.flatten() for g in grads])
    return 1 - torch.nn.functional.cosine_similarity(flat, flat_target, dim=0)


def _setup(train: Split, victim: Victim | None, *, seed: int, targets: int, surrogate_width: int,
           surrogate_epochs: int, num_classes: int):
    """(poison pool, targets, target indices in the test split or None, surrogate builder, recipe, classes)."""
    if victim is None:
        pool, target = hold_out(train, targets, seed)
        build = small_cnn_builder(pool, width=surrogate_width or FALLBACK_WIDTH, num_classes=num_classes)
        recipe = Recipe(epochs=surrogate_epochs or FALLBACK_EPOCHS, lr=FALLBACK_LR)
        return pool, target, None, build, recipe, num_classes
    index = torch.randperm(len(victim.test), generator=generator(seed, _TARGET))[:targets].sort().values
    target = victim.test.subset(index.to(victim.test.x.device))
    build = victim.build
    if surrogate_width:
        build = small_cnn_builder(train, width=surrogate_width, num_classes=victim.num_classes)
    recipe = dataclasses.replace(victim.recipe, epochs=surrogate_epochs or victim.recipe.epochs)
    return train, target, index, build, recipe, victim.num_classes


def craft(train: Split, *, seed: int, victim: Victim | None = None, targets: int = 4, budget: float = 0.01,
          eps: float = 16 / 255, restarts: int = 8, steps: int = 250, tau: float = 0.1, surrogate_width: int = 0,
          surrogate_epochs: int = 0, num_classes: int = 10) -> Poisoning:
    start = time.perf_counter()
    device = train.x.device
    pool, target, index, build, recipe, num_classes = _setup(
        train, victim, seed=seed, targets=targets, surrogate_width=surrogate_width,
        surrogate_epochs=surrogate_epochs, num_classes=num_classes)
    n_per_target = max(1, round(budget * len(pool)))
    adv, subsets = _choose(pool.y.cpu(), target.y.cpu(), n_per_target, num_classes, seed)
    model, units = surrogate(pool, seed=seed, build=build, recipe=recipe)
    gen, crops = generator(seed, _INIT), generator(seed, _AUGMENT) if recipe.augment else None
    adv = adv.to(device)
    x = pool.x.clone()
    losses = []
    for t, idx in enumerate(subsets):
        idx = idx.to(device)
        target_grad = [g.detach() for g in param_grads(model, target.x[t : t + 1], adv[t : t + 1])]
        delta, loss = _match(model, pool.x[idx], pool.y[idx], target_grad, eps=eps, steps=steps, tau=tau,
                             restarts=restarts, gen=gen, crops=crops)
        x[idx] = (pool.x[idx] + delta).clamp(0, 1)  # nor may x + σ·u round out of the box
        losses.append(loss)
        units += restarts * steps * 6 * len(idx) + 3  # a per-poison gradient (3) and its gradient (3) per step
    forget = torch.cat(subsets).sort().values
    context = {"target_x": target.x.clone(), "target_y": target.y.clone(), "adv_y": adv,
               "poison_delta": x[forget.to(device)] - pool.x[forget.to(device)], "eps": float(eps),
               "alignment_loss": torch.tensor(losses)}
    if index is not None:
        context["target_index"] = index
    return Poisoning(Split(x, pool.y.clone()), forget, context, time.perf_counter() - start, int(units))


@torch.no_grad()
def effect(model: torch.nn.Module, context: dict) -> dict[str, float]:
    """Success rate over targets (target classified as its adversarial class) with a Wilson interval, and
    the mean probability of the adversarial class over targets (`targeted/adv_prob`), in fp32."""
    model.eval()
    with full_precision():
        logits = model(context["target_x"]).float()
    adv = context["adv_y"].to(logits.device)
    m = rate_metrics((logits.argmax(1) == adv).cpu(), "targeted")
    m["targeted/adv_prob"] = float(logits.softmax(1).gather(1, adv[:, None]).mean())
    return m


def mia_nonmembers(heldout: Split, context: dict, *, seed: int, copies: int = 1) -> Split:
    """Held-out points of the poisons' base classes (the adversarial classes), with their own labels:
    clean counterparts of clean-label poisons (repeated `copies` times)."""
    keep = torch.isin(heldout.y, context["adv_y"].to(heldout.y.device))
    return Split(heldout.x[keep].repeat(copies, 1, 1, 1), heldout.y[keep].repeat(copies))
