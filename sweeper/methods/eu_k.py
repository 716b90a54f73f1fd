"""Exact unlearning of the last k blocks (EU-k): re-initialise `model.blocks[-k:]`, train them on retain.

Goel, Prabhu, Sanyal, Lim, Torr, Kumaraguru, "Towards Adversarial Evaluation of Machine Unlearning"
(2022, arXiv 2201.06640). The earlier blocks are frozen and kept in eval mode, so their BatchNorm
statistics do not move; EU-all is retraining. Defaults: k = 2 (inside both the k ∈ {1, 2, 3} of most
reproductions and Corrective Machine Unlearning's {2, 4, all}, Goel et al. 2024, arXiv 2402.14015);
lr 0.01 as GD (Jia et al. 2023 README). Momentum, weight decay, batch size: the scenario recipe."""
from __future__ import annotations

from ._common import finetune_blocks, last_blocks, reinitialise

PAPER = "Goel et al., 2022, arXiv 2201.06640"
INIT_STREAM = 1  # data.gen stream of the re-initialisation (the retain order is stream 0, as GD's)


def unlearn(model, data, budget, *, k=2, lr=0.01):
    blocks = last_blocks(model, k)
    reinitialise(blocks, data.gen(INIT_STREAM))
    return finetune_blocks(model, data, budget, blocks, lr)
