"""The scenario's training recipe: how θ_poisoned and θ_retrain are trained from scratch.

Unlearning methods reuse its optimiser settings (momentum, weight decay, batch size) so that they differ
from retraining only in what they search (lr, their own knobs) and in how much compute they get.

Training runs wherever the model and the data are (the caller moves both to the trial's device): batches
are indexed out of device-resident tensors, augmentation happens on the device, and on CUDA the forward
pass runs under bf16 autocast with channels_last memory. No DataLoader: the data sets here fit in memory
(CIFAR-10 is 600 MB as float32), and indexing a resident tensor is what airbench-style GPU training does.
Perturbations stay float throughout: nothing here clips, rounds or quantises an input."""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from .data import IndexStream, Split, generator

CROP_PAD = 4  # random-crop padding in pixels (the CIFAR recipe of kuangliu/pytorch-cifar and the paper's)
_AUGMENT = 7  # generator stream of the augmentation draws


@dataclass(frozen=True)
class Recipe:
    epochs: int = 60
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5.0e-4
    augment: bool = False   # random crop (pad 4) + horizontal flip per example, drawn from the seed
    amp: bool = True        # bf16 autocast on CUDA (never on the CPU, where it is slower and not the paper's)
    compile: bool = False   # torch.compile the model for training (same math, faster steps on a GPU)

    def steps_per_epoch(self, n: int) -> int:
        return -(-n // self.batch_size)

    def batch(self, n: int) -> int:
        """Examples per step: the batch size, or the whole set when it is smaller."""
        return min(self.batch_size, n)

    def retrain_units(self, n_clean: int) -> int:
        """C_retrain: the units `train_from_scratch` spends on |S_clean| examples, forward 1 + backward 2 per
        example of every step: 3 x epochs x ceil(|S_clean| / batch) x batch (docs/architecture.md, Cost units).
        Every step takes a whole batch (the index stream crosses epochs), so this is slightly above
        3 x epochs x |S_clean|, which earlier versions used (a budget of 1.0 then fell a few steps short of
        the retrain's own training)."""
        return 3 * self.epochs * self.steps_per_epoch(n_clean) * self.batch(n_clean)

    def as_dict(self) -> dict:
        return asdict(self)


def sgd(params, recipe: Recipe, lr: float) -> torch.optim.SGD:
    return torch.optim.SGD(params, lr=lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)


def autocast(recipe: Recipe, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast where the recipe asks for it and the device is CUDA; a no-op elsewhere."""
    if recipe.amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def full_precision() -> contextlib.AbstractContextManager:
    """Evaluation (accuracy, GUS, membership inference) always runs in fp32, even inside a bf16 trial."""
    return torch.autocast("cuda", enabled=False) if torch.cuda.is_available() else contextlib.nullcontext()


def augment(x: torch.Tensor, gen: torch.Generator, pad: int = CROP_PAD) -> torch.Tensor:
    """Random crop after zero padding by `pad` and a horizontal flip with probability ½, independently per
    example, on x's device. The draws come from `gen` (CPU), so the same seed gives the same crops on every
    device."""
    n, _, h, w = x.shape
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen).to(x.device)
    flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = dx[:, None] + torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, chan, rows, cols]


def prepare(model: nn.Module, device: torch.device) -> nn.Module:
    """The model on `device`; channels_last on CUDA for 4-d weights (faster convolutions, same math)."""
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


class RecipeRun:
    """The recipe's training of `model` on `split`, one step at a time: SGD at `lr` (default the recipe's) with
    a per-step cosine schedule over `steps` (default the recipe's epochs × steps per epoch), examples in the
    order of `seed`'s stream, crops from its augmentation stream. `train_from_scratch` runs every step; the
    `scratch` baseline runs as many as its budget allows (every step depends on the step count only)."""

    def __init__(self, model: nn.Module, split: Split, recipe: Recipe, seed: int, lr: float | None = None,
                 steps: int | None = None):
        self.model, self.split, self.recipe = model, split, recipe
        self.device = split.x.device
        self.batch = recipe.batch(len(split))
        self.total = recipe.epochs * recipe.steps_per_epoch(len(split)) if steps is None else int(steps)
        self.done = 0
        self.opt = sgd(model.parameters(), recipe, recipe.lr if lr is None else lr)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, max(self.total, 1))
        self.stream = IndexStream(len(split), generator(seed, stream=1))
        self.crops = generator(seed, _AUGMENT)
        self.forward = torch.compile(model) if recipe.compile else model

    def step(self) -> None:
        """One SGD step on the next batch (train mode is the caller's: train_from_scratch sets it once)."""
        split, device = self.split, self.device
        idx = self.stream.take(self.batch).to(device, non_blocking=True)
        x = split.x[idx]
        if self.recipe.augment:
            x = augment(x, self.crops)
        if device.type == "cuda" and x.dim() == 4:  # images only: token ids (n, L) have no channels
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.recipe, device):
            loss = F.cross_entropy(self.forward(x), split.y[idx])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        self.done += 1


def train_from_scratch(model: nn.Module, split: Split, recipe: Recipe, seed: int,
                       after_epoch: Callable[[int, nn.Module], None] | None = None) -> nn.Module:
    """SGD with a per-step cosine schedule over `recipe.epochs` passes of `split` (order from `seed`), on
    the device of `split`. `after_epoch(epoch, model)` is called after each epoch (1-based) in eval mode,
    and train mode is restored after it (θ_retrain's learning curve: it must not touch the RNG or the model)."""
    model = prepare(model, split.x.device)
    run = RecipeRun(model, split, recipe, seed)
    per_epoch = recipe.steps_per_epoch(len(split))
    model.train()
    for epoch in range(recipe.epochs):
        for _ in range(per_epoch):
            run.step()
        if after_epoch is not None:
            after_epoch(epoch + 1, model.eval())
            model.train()
    model.eval()
    return model
