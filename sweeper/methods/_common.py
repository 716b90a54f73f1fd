"""Plain helpers that methods call (no method inherits from another)."""
from __future__ import annotations

import copy
import hashlib
import io
import operator
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F

from .. import storage
from ..budget import Budget
from ..data import IndexStream, Split, generator
from ..training import Recipe, sgd

FORWARD, BACKWARD = 1, 2
TRAIN_STEP = FORWARD + BACKWARD  # units per example of one forward + backward pass


@dataclass
class UnlearnData:
    """What a method may use: the retain and forget sets (S_corr = both), the scenario's optimiser
    recipe and a seed for its own randomness. θ_retrain is deliberately not here."""
    retain: Split
    forget: Split
    num_classes: int
    recipe: Recipe
    seed: int
    cache_dir: Path | None = None  # per (scenario, seed): where hyperparameter-free results are shared
    initial: Callable[[], dict] | None = None  # the state θ_poisoned and θ_retrain were trained from (the
    #                                            scenario's initialisation for this seed): `scratch` starts there

    def shared(self, key: str, compute: Callable[[], Any]) -> Any:
        """A hyperparameter-free result (SSD's importances, SalUn's saliency) computed once per
        (scenario, seed) and reused by every trial. The caller still charges its full cost to every
        trial (docs/architecture.md, Cost units): caching saves wall time, not units. A corrupt file is
        recomputed and replaced, with a warning naming it."""
        if self.cache_dir is None:
            return compute()
        path = Path(self.cache_dir) / f"{key}.pt"
        payload = _read_checked(path)
        if payload is not None:
            return torch.load(io.BytesIO(payload), weights_only=True)  # tensors and containers only: no code runs
        value = compute()
        _write_checked(value, path)
        return value

    def gen(self, stream: int) -> torch.Generator:
        return generator(self.seed, 100 + stream)

    @property
    def batch_size(self) -> int:
        return self.recipe.batch_size


_SHA256 = hashlib.sha256().digest_size


def _read_checked(path: Path) -> bytes | None:
    """The torch.save payload of a shared file, or None if there is none or it fails its checksum (a
    truncated pickle can still load, as something else). The bytes checked are the bytes loaded."""
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        return None
    payload, digest = blob[:-_SHA256], blob[-_SHA256:]
    if len(blob) > _SHA256 and hashlib.sha256(payload).digest() == digest:
        return payload
    warnings.warn(f"shared cache file {path} is corrupt (checksum mismatch); recomputing it", stacklevel=3)
    return None


def _write_checked(value: Any, path: Path) -> None:
    """torch.save(value) followed by its sha256, replaced atomically. The checksum sits in the file, not
    beside it: concurrent trials writing the same key could otherwise pair one's payload with another's
    checksum. (torch.load still reads such a file: a zip archive ignores trailing bytes.)"""
    buf = io.BytesIO()
    torch.save(value, buf)
    payload = buf.getvalue()
    storage.write_atomic(path, payload + hashlib.sha256(payload).digest())  # concurrent trials never read half a file


def optimizer(model: nn.Module, data: UnlearnData, lr: float, params=None) -> torch.optim.Optimizer:
    """The retraining recipe's SGD (momentum, weight decay) at the method's own learning rate."""
    return sgd(params if params is not None else model.parameters(), data.recipe, lr)


def step_loop(model: nn.Module, budget: Budget, opt: torch.optim.Optimizer, n: int, gen: torch.Generator,
              batch_size: int, per_item: int, loss_fn: Callable[[torch.Tensor], torch.Tensor],
              after_step: Callable[[], None] | None = None) -> nn.Module:
    """SGD steps on batches of `batch_size` indices into a set of size `n` until the budget has no room.

    `per_item` is the units one item of a step costs (3 for one example forward + backward, 6 for a
    pair of examples)."""
    stream = IndexStream(n, gen)

    def step(k: int) -> None:
        sgd_step(opt, loss_fn(stream.take(k)))
        if after_step is not None:
            after_step()

    train_steps(budget, batch_size, per_item, step, model.train)
    return model.eval()


# -- helpers added with EU-k, CF-k, SCRUB, SSD, SalUn, RL, l1-sparse, Fisher forgetting, bad teacher -------

TEACHER_FORWARD = FORWARD  # units per example of a frozen teacher's forward pass (SCRUB, bad teacher)


def train_steps(budget: Budget, want: int, per_item: int, step: Callable[[int], None],
                train: Callable[[], Any]) -> None:
    """Call `step(k)` (one optimiser step on k items) while the budget has room for `want` items.

    `train()` sets train mode before every step, not once: a checkpoint's evaluation, which runs inside
    `budget.room`, leaves the model in eval mode, and steps after it must not depend on that."""
    while k := budget.room(want, per_item):
        train()
        step(k)
        budget.charge(per_item * k)


def one_pass(budget: Budget, n: int, batch_size: int, per_item: int, step: Callable[[int], None],
             train: Callable[[], Any] | None = None) -> bool:
    """One pass over `n` items in batches of `batch_size` (the last one smaller), each charged before
    the next; False when the budget ran out first. The steps depend on units spent only."""
    left = n
    while left:
        k = min(batch_size, left)
        if not budget.room(k, per_item):
            return False
        if train is not None:
            train()
        step(k)
        budget.charge(per_item * k)
        left -= k
    return True


def sgd_step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def frozen_copy(model: nn.Module) -> nn.Module:
    """A teacher: a deep copy in eval mode (its BatchNorm statistics never move), without gradients."""
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def reinitialise(module: nn.Module, gen: torch.Generator) -> None:
    """A fresh default initialisation (`reset_parameters()` on every submodule that has it, BatchNorm
    running statistics included), drawn from `gen`.

    The draw happens on a CPU copy, so it is the same on every device, and inside `fork_rng`, so the
    global RNG is untouched (only the CPU generator is seeded: `torch.manual_seed` would reseed CUDA)."""
    seed = int(torch.randint(2**62, (), generator=gen))
    fresh = copy.deepcopy(module).cpu()
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        for m in fresh.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
    module.load_state_dict(fresh.state_dict())  # copies into the module's own tensors and device


def other_labels(y: torch.Tensor, num_classes: int, gen: torch.Generator) -> torch.Tensor:
    """Each label replaced by a class drawn uniformly from the *other* num_classes − 1 classes."""
    shift = torch.randint(1, num_classes, y.shape, generator=gen).to(y.device)
    return (y + shift) % num_classes


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float) -> torch.Tensor:
    """KL(teacher ‖ student) of the softmaxes at temperature T, summed over classes, averaged over the
    batch and scaled by T² (the usual distillation form; SCRUB's `DistillKL`)."""
    log_s = F.log_softmax(student_logits / T, dim=1)
    p_t = F.softmax(teacher_logits / T, dim=1)
    return F.kl_div(log_s, p_t, reduction="batchmean") * T**2


def cache_key(name: str, *parts: object) -> str:
    """A `UnlearnData.shared` key; include everything besides (scenario, seed) the result depends on
    (batch size, device type: a GPU computes slightly different numbers from a CPU)."""
    return "-".join([name, *(str(p) for p in parts)])


def to_device(tensors: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in tensors.items()}


def to_cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in tensors.items()}


def device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def last_blocks(model: nn.Module, k: int) -> nn.ModuleList:
    """`model.blocks[-k:]` (BlockModel): what "the last k blocks" means for EU-k and CF-k."""
    n = len(model.blocks)
    try:
        ok = not isinstance(k, bool) and 1 <= operator.index(k) <= n  # ints, numpy ints from a sampler
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"k must be an integer in 1..{n} (this model has {n} blocks), got {k!r}")
    return model.blocks[-operator.index(k):]


def finetune_blocks(model: nn.Module, data: UnlearnData, budget: Budget, blocks: nn.Module,
                    lr: float) -> nn.Module:
    """SGD on retain that updates only `blocks`; every other block is frozen and kept in eval mode, so
    its BatchNorm statistics do not move either (EU-k, CF-k)."""
    r = data.retain
    trainable = {id(p) for p in blocks.parameters()}
    was = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in was:
        p.requires_grad_(id(p) in trainable)
    opt = optimizer(model, data, lr, blocks.parameters())
    stream = IndexStream(len(r), data.gen(0))

    def train() -> None:
        model.eval()
        blocks.train()

    def step(k: int) -> None:
        idx = stream.take(k)
        sgd_step(opt, F.cross_entropy(model(r.x[idx]), r.y[idx]))

    try:
        train_steps(budget, data.batch_size, TRAIN_STEP, step, train)
    finally:
        for p, flag in was:
            p.requires_grad_(flag)
    return model.eval()
