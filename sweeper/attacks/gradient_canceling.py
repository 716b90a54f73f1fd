"""Gradient Canceling: indiscriminate model-targeted poisoning.

Lu, Kamath, Yu, "Exploring the Limits of Model-Targeted Indiscriminate Data Poisoning Attacks", ICML
2023, arXiv 2302.03137. Given a low-accuracy target model θ_low, add poison points whose loss gradient
at θ_low cancels that of the clean data, so θ_low becomes a stationary point of training on
S_clean ∪ S_poison. Defaults: 3% poisons and 1000 steps (the authors' MNIST scripts, METHOD_RANGES.md).

How we obtain θ_low (the paper generates it with GradPC, gradient ascent on the clean loss from a clean
model): a clean `small_cnn` surrogate is trained on the clean data from this attack's seed, then
normalised gradient-ascent steps on its full-batch clean training loss (each of length `low_step` times
the parameters' norm) run until its clean training accuracy has fallen by `low_drop`. Poisons start as
copies of random clean points with a uniformly random other label, and their inputs are optimised with
Adam on ‖G_clean + G_poison + N·wd·θ_low‖² / ‖G_clean + N·wd·θ_low‖² (G = summed loss gradients at θ_low
in eval mode; wd the recipe's default weight decay), kept inside the pixel box [0, 1] as in the authors'
code (`box=False` lifts that, beyond the paper). Poisons are added to the training set (S_clean stays whole); the residual to each poison's base
image is a float, unbounded but for the box.

Effect = test error rate (1 − accuracy) on points `craft` holds out of the training split; with
RETRAIN_EFFECT None, removal = (acc_unlearned − acc_poisoned)/(acc_retrain − acc_poisoned): the paper's
accuracy-drop formulation. The accuracy constraint of the objective is off (ACCURACY_IS_EFFECT)."""
from __future__ import annotations

import time

import torch

from ..data import Split, generator
from ..params import FRACTION, POSITIVE, Range
from ..training import Recipe
from ._base import Poisoning
from ._surrogate import hold_out, param_grads, surrogate

PAPER = "Lu, Kamath, Yu, ICML 2023, arXiv 2302.03137"
RETRAIN_EFFECT = None
ACCURACY_IS_EFFECT = True
WEIGHT_DECAY = Recipe().weight_decay  # the victims' default recipe; part of the stationarity condition
_PICK, _LABEL, _MIA = 51, 52, 53     # generator streams: poison bases, their labels, MIA non-members
RANGES = {
    "fraction": FRACTION,       # poisons per clean point (added, not replaced); more poisons than clean points is another regime
    "steps": POSITIVE,
    "lr": POSITIVE,
    "low_drop": FRACTION,       # an accuracy drop: 0 stops at once, above 1 is never reached
    "low_step": POSITIVE,       # relative to the parameters' norm
    "surrogate_width": POSITIVE,
    "surrogate_epochs": POSITIVE,
    "eval_fraction": Range(0, 1, low_open=True, high_open=True),  # 0: no test points; 1: no clean data
    "num_classes": Range(2),    # a poison's label is another class than its base's
}


@torch.no_grad()
def _accuracy(model, split: Split) -> float:
    return float((model(split.x).argmax(1) == split.y).float().mean())


def low_accuracy_target(model: torch.nn.Module, clean: Split, *, drop: float, step: float,
                        max_steps: int = 500) -> tuple[float, float, int]:
    """GradPC-style: ascend the clean loss (normalised full-batch steps) until accuracy falls by `drop`.
    Changes `model` in place; returns (clean accuracy before, after, steps taken)."""
    params = [p for p in model.parameters()]
    before = _accuracy(model, clean)
    size = torch.cat([p.detach().flatten() for p in params]).norm()
    for k in range(1, max_steps + 1):
        grads = param_grads(model, clean.x, clean.y, reduction="mean")
        norm = torch.cat([g.flatten() for g in grads]).norm()
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.add_(g, alpha=float(step * size / norm))
        after = _accuracy(model, clean)
        if after <= before - drop:
            return before, after, k
    return before, after, max_steps


def _cancel_loss(model, x_p, y_p, fixed):
    grads = param_grads(model, x_p, y_p, create_graph=True)
    total = torch.cat([g.flatten() for g in grads]) + fixed
    return total.square().sum() / fixed.square().sum()


def craft(train: Split, *, seed: int, fraction: float = 0.03, steps: int = 1000, lr: float = 0.01,
          low_drop: float = 0.5, low_step: float = 0.01, surrogate_width: int = 16, surrogate_epochs: int = 60,
          eval_fraction: float = 0.1, box: bool = True, num_classes: int = 10) -> Poisoning:
    start = time.perf_counter()
    clean, held = hold_out(train, round(eval_fraction * len(train)), seed)
    model, units = surrogate(clean, seed=seed, width=surrogate_width, epochs=surrogate_epochs,
                             num_classes=num_classes)
    acc_clean, acc_low, low_steps = low_accuracy_target(model, clean, drop=low_drop, step=low_step)
    units += low_steps * 4 * len(clean)  # a full-batch gradient (3) and an accuracy pass (1) per step
    n = len(clean)
    n_poison = max(1, round(fraction * n))
    base = torch.randperm(n, generator=generator(seed, _PICK))[:n_poison]
    y_p = (clean.y[base] + torch.randint(1, num_classes, (n_poison,), generator=generator(seed, _LABEL))) % num_classes
    theta = torch.cat([p.detach().flatten() for p in model.parameters()])
    g_clean = torch.cat([g.flatten() for g in param_grads(model, clean.x, clean.y)])
    fixed = (g_clean + (n + n_poison) * WEIGHT_DECAY * theta).detach()
    x_p = clean.x[base].clone().requires_grad_(True)
    opt = torch.optim.Adam([x_p], lr=lr)
    for _ in range(steps):
        loss = _cancel_loss(model, x_p, y_p, fixed)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if box:
            with torch.no_grad():
                x_p.clamp_(0, 1)
    units += 3 * n + steps * 6 * n_poison
    final = float(_cancel_loss(model, x_p.detach(), y_p, fixed).detach())
    x = torch.cat([clean.x, x_p.detach()])
    y = torch.cat([clean.y, y_p])
    forget = torch.arange(n, n + n_poison)
    context = {"eval_x": held.x.clone(), "eval_y": held.y.clone(), "poison_base": clean.x[base].clone(),
               "low_acc_train": acc_low, "surrogate_acc_train": acc_clean, "cancel_loss": final,
               "num_classes": int(num_classes)}
    return Poisoning(Split(x, y), forget, context, time.perf_counter() - start, int(units))


@torch.no_grad()
def effect(model: torch.nn.Module, context: dict) -> dict[str, float]:
    """Error rate on the held-out points (larger = more poison) and its binomial standard error."""
    model.eval()
    wrong = (model(context["eval_x"]).argmax(1) != context["eval_y"]).double()
    err, n = float(wrong.mean()), len(wrong)
    return {"gc/error": err, "gc/accuracy": 1 - err, "gc/n": n,
            "attack/effect": err, "attack/effect_se": max(err * (1 - err), 1 / n) ** 0.5 / n ** 0.5}


def mia_nonmembers(heldout: Split, context: dict, *, seed: int, copies: int = 1) -> Split:
    """Poisons are crafted inputs with arbitrary labels; their held-out counterparts are held-out points
    with a uniformly random other label (the poisons' initialisation, before optimisation), fresh per copy."""
    gen = generator(seed, _MIA)
    y = heldout.y.repeat(copies)
    shift = torch.randint(1, int(context.get("num_classes", 10)), y.shape, generator=gen)
    return Split(heldout.x.repeat(copies, 1, 1, 1), (y + shift.to(y.device)) % int(context.get("num_classes", 10)))
