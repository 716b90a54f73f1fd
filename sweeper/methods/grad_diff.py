"""GradDiff: minimise γ·(−L_forget) + α·L_retain on paired forget / retain batches (NegGrad+ as LLM
benchmarks name and run it).

Maini, Feng, Schwarzschild, Lipton, Kolter, "TOFU: A Task of Fictitious Unlearning for LLMs", 2024,
arXiv 2401.06121 (gradient difference: Liu, Liu, Stone, "Continual Learning and Private Unlearning",
2022). Follows github.com/locuslab/open-unlearning (commit d3d7cf9), src/trainer/unlearn/grad_diff.py:
loss = γ·(−NLL_forget) + α·NLL_retain (lines 41-62; the forget term negated at line 50, the sum at
line 60), defaults γ 1, α 1, retain_loss_type NLL (line 7; configs/trainer/GradDiff.yaml lines 5-8),
lr 1e-5 with AdamW (configs/trainer/finetune.yaml lines 6, 15). The TOFU original is the same loss
with both weights 1 (github.com/locuslab/tofu, dataloader.py lines 101-111) and AdamW with weight decay
0.01 (config/forget.yaml lines 8, 18; forget.py line 100): the decay used here (open-unlearning's
finetune.yaml line 18 sets 0.0), as in `npo`. Batches: the recipe's batch size of forget examples and
as many retain examples, one paired with each forget example (open-unlearning src/data/unlearn.py
lines 34-40). Each example costs 3 units; α = 0 draws no retain batch (TOFU's `grad_ascent`, lines
93-99) and is then gradient ascent with this optimiser, batch for batch.

Only the NLL retain loss: the KL variant needs a reference model and is `npo`'s territory. Adam's
update hardly depends on the loss's overall scale, so γ is kept for the benchmarks' names but its
search space fixes it at 1; α (= α/γ) is searched.

What differs from `neggrad_plus` (the same method as the SCRUB repository runs it,
docs/architecture.md, Methods): independent weights γ, α instead of β, 1−β (the same direction for α/γ =
β/(1−β)); no L2 pull toward θ_poisoned; AdamW instead of plain SGD; forget and retain batches of equal size
(NegGrad+'s forget batch is half the retain batch); forget batches from data stream 0, as `ga`'s.

Deliberate deviations from open-unlearning, as in `npo` (see there): eval mode (BatchNorm statistics
frozen; HF's train mode changes nothing in the reference's LLMs), a constant learning rate (no
budget-dependent linear decay), no gradient clipping (DeepSpeed runs without `gradient_clipping`),
retain examples from an index stream."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from ..data import IndexStream
from ._common import TRAIN_STEP, sgd_step, train_steps
from .npo import FORGET_STREAM, RETAIN_STREAM, adamw

# An LLM-unlearning method (TOFU, MUSE, open-unlearning): `methods: all` picks it for text data sets only; it
# runs on any classifier where named.
MODALITIES = ("text",)
PAPER = "Maini et al., 2024, arXiv 2401.06121 (TOFU); Liu, Liu, Stone, CoLLAs 2022 (gradient difference)"


def objective(model, forget: tuple[torch.Tensor, torch.Tensor], retain: tuple[torch.Tensor, torch.Tensor] | None,
              gamma: float, alpha: float) -> torch.Tensor:
    """γ·(−CE on the forget batch) + α·CE on the retain batch (none: the forget term alone)."""
    loss = gamma * -F.cross_entropy(model(forget[0]), forget[1])
    if retain is not None:
        loss = loss + alpha * F.cross_entropy(model(retain[0]), retain[1])
    return loss


def unlearn(model, data, budget, *, lr=1.0e-5, gamma=1.0, alpha=1.0):
    r, f = data.retain, data.forget
    opt = adamw(model, lr)
    f_stream, r_stream = IndexStream(len(f), data.gen(FORGET_STREAM)), IndexStream(len(r), data.gen(RETAIN_STREAM))

    def step(k: int) -> None:  # k forget examples, and k retain examples when alpha > 0
        fi = f_stream.take(k)
        retain = None
        if alpha:
            ri = r_stream.take(k)
            retain = (r.x[ri], r.y[ri])
        sgd_step(opt, objective(model, (f.x[fi], f.y[fi]), retain, gamma, alpha))

    per_pair = TRAIN_STEP * (2 if alpha else 1)
    train_steps(budget, data.batch_size, per_pair, step, model.eval)  # eval mode: BatchNorm frozen
    return model.eval()
