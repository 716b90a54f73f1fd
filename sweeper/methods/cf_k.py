"""Catastrophic forgetting of the last k blocks (CF-k): fine-tune only `model.blocks[-k:]` on retain.

Goel, Prabhu, Sanyal, Lim, Torr, Kumaraguru, "Towards Adversarial Evaluation of Machine Unlearning"
(2022, arXiv 2201.06640). As EU-k without the re-initialisation: the earlier blocks are frozen and kept
in eval mode (BatchNorm statistics included); CF-all is GD. Defaults: k = 2 (inside both the
k ∈ {1, 2, 3} of most reproductions and Corrective Machine Unlearning's {2, 4, all}, Goel et al. 2024,
arXiv 2402.14015); lr 0.01 as GD (Jia et al. 2023 README). Momentum, weight decay, batch size: the
scenario recipe."""
from __future__ import annotations

from ._common import finetune_blocks, last_blocks

PAPER = "Goel et al., 2022, arXiv 2201.06640"


def unlearn(model, data, budget, *, k=2, lr=0.01):
    return finetune_blocks(model, data, budget, last_blocks(model, k), lr)
