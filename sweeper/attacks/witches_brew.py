"""Witches' Brew: targeted clean-label poisoning by gradient matching.

Geiping, Fowl, Huang, Czaja, Taylor, Moeller, Goldstein, "Witches' Brew: Industrial Scale Data
Poisoning via Gradient Matching", ICLR 2021, arXiv 2009.02276. For each target (a held-out image and an
adversarial class), images of that class get perturbations Δ with ‖Δ‖∞ ≤ ε, inside the pixel box, whose
training gradient on a clean surrogate aligns (cosine) with the gradient that would send the target to the
adversarial class; their labels stay correct. Defaults from the paper (METHOD_RANGES.md): ε = 16/255,
8 restarts, 250 signed-Adam steps at lr τ·ε with τ = 0.1 (decayed ×0.1 at 3/8, 5/8, 7/8 of the steps),
budget 1% of the training set per target; T = 4 targets crafted jointly (DESIGN §2), each with a
disjoint poison subset of its adversarial class.

Targets are points `craft` sets aside from the training split (it sees no other split): never trained on,
they play the role of the paper's test targets. The surrogate is a `small_cnn` trained from scratch on the
clean rest from its own seed; the victims (θ_poisoned, θ_retrain) are trained later from the scenario's
own initialisation, so poisons must transfer across initialisations as in the paper."""
from __future__ import annotations

import time

import torch

from ..data import Split, generator
from ..params import FRACTION, POSITIVE, Range
from ._base import Poisoning
from ._surrogate import hold_out, param_grads, rate_metrics, surrogate

PAPER = "Geiping et al., ICLR 2021, arXiv 2009.02276"
RETRAIN_EFFECT = None  # a clean model may still classify a target as its adversarial class: measured
_CLASS, _PICK, _INIT = 41, 42, 43  # generator streams: adversarial classes, poison subsets, Δ restarts
RANGES = {
    "targets": POSITIVE,
    "budget": FRACTION,         # share of the training set poisoned per target
    "eps": FRACTION,            # ‖Δ‖∞ in [0, 1] pixel units: 0 perturbs nothing, beyond 1 the box binds
    "restarts": POSITIVE,       # 0 restarts would return no perturbation at all
    "steps": POSITIVE,
    "tau": POSITIVE,            # Adam's lr is τ·ε
    "surrogate_width": POSITIVE,
    "surrogate_epochs": POSITIVE,
    "num_classes": Range(2),    # the adversarial class differs from the true one
}


def _choose(rest: Split, targets: Split, n_per_target: int, num_classes: int, seed: int):
    """An adversarial class ≠ the true one per target, and disjoint poison subsets of those classes."""
    gen = generator(seed, _CLASS)
    adv = (targets.y + torch.randint(1, num_classes, targets.y.shape, generator=gen)) % num_classes
    gen = generator(seed, _PICK)
    used = torch.zeros(len(rest), dtype=torch.bool)
    subsets = []
    for c in adv.tolist():
        pool = torch.nonzero((rest.y == c) & ~used).flatten()
        chosen = pool[torch.randperm(len(pool), generator=gen)[:n_per_target]].sort().values
        used[chosen] = True
        subsets.append(chosen)
    return adv, subsets


def _match(model, x, y, target_grad, *, eps, steps, tau, restarts, gen):
    """Best-of-`restarts` Δ (‖Δ‖∞ ≤ ε, x + Δ in [0, 1]) minimising 1 − cos(∇θ ℓ(x + Δ, y), target_grad)."""
    flat_target = torch.cat([g.flatten() for g in target_grad])
    best, best_loss = None, float("inf")
    for _ in range(restarts):
        delta = ((torch.rand(x.shape, generator=gen) * 2 - 1) * eps).requires_grad_(True)
        opt = torch.optim.Adam([delta], lr=tau * eps)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, [3 * steps // 8, 5 * steps // 8, 7 * steps // 8], 0.1)
        for _ in range(steps):
            loss = _alignment_loss(model, x + delta, y, flat_target)
            (grad,) = torch.autograd.grad(loss, delta)
            delta.grad = grad.sign()  # signed Adam, as in the paper's code
            opt.step()
            sched.step()
            with torch.no_grad():
                delta.clamp_(-eps, eps)
                delta.copy_((x + delta).clamp(0, 1) - x)
        final = float(_alignment_loss(model, x + delta.detach(), y, flat_target).detach())
        if final < best_loss:
            best, best_loss = delta.detach().clone(), final
    return best, best_loss


def _alignment_loss(model, x, y, flat_target):
    grads = param_grads(model, x, y, create_graph=True)
    flat = torch.cat([g.flatten() for g in grads])
    return 1 - torch.nn.functional.cosine_similarity(flat, flat_target, dim=0)


def craft(train: Split, *, seed: int, targets: int = 4, budget: float = 0.01, eps: float = 16 / 255,
          restarts: int = 8, steps: int = 250, tau: float = 0.1, surrogate_width: int = 16,
          surrogate_epochs: int = 60, num_classes: int = 10) -> Poisoning:
    start = time.perf_counter()
    rest, held = hold_out(train, targets, seed)
    n_per_target = max(1, round(budget * len(rest)))
    adv, subsets = _choose(rest, held, n_per_target, num_classes, seed)
    model, units = surrogate(rest, seed=seed, width=surrogate_width, epochs=surrogate_epochs,
                             num_classes=num_classes)
    for p in model.parameters():
        p.requires_grad_(True)
    gen = generator(seed, _INIT)
    x = rest.x.clone()
    losses = []
    for t, idx in enumerate(subsets):
        target_grad = [g.detach() for g in param_grads(model, held.x[t : t + 1], adv[t : t + 1])]
        delta, loss = _match(model, rest.x[idx], rest.y[idx], target_grad, eps=eps, steps=steps, tau=tau,
                             restarts=restarts, gen=gen)
        x[idx] += delta
        losses.append(loss)
        units += restarts * steps * 6 * len(idx) + 3  # a per-poison gradient (3) and its gradient (3) per step
    forget = torch.cat(subsets).sort().values
    context = {"target_x": held.x.clone(), "target_y": held.y.clone(), "adv_y": adv,
               "poison_delta": x[forget] - rest.x[forget], "eps": float(eps),
               "alignment_loss": torch.tensor(losses)}
    return Poisoning(Split(x, rest.y.clone()), forget, context, time.perf_counter() - start, int(units))


@torch.no_grad()
def effect(model: torch.nn.Module, context: dict) -> dict[str, float]:
    """Success rate over targets (target classified as its adversarial class) with a Wilson interval."""
    model.eval()
    pred = model(context["target_x"]).argmax(1)
    return rate_metrics(pred == context["adv_y"], "targeted")


def mia_nonmembers(heldout: Split, context: dict, *, seed: int, copies: int = 1) -> Split:
    """Held-out points of the poisons' base classes (the adversarial classes), with their own labels:
    clean counterparts of clean-label poisons (repeated `copies` times)."""
    keep = torch.isin(heldout.y, context["adv_y"].to(heldout.y.device))
    return Split(heldout.x[keep].repeat(copies, 1, 1, 1), heldout.y[keep].repeat(copies))
