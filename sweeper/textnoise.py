"""Gaussian noise on token embeddings that travels with its example.

Gaussian poisoning of a language model (Pawelczyk et al., ICLR 2025, §5) adds ξ ~ N(0, ε²I) to the
token-embedding output of a poisoned text's non-padding positions. The noise lives in embedding space, so
it cannot be added to the stored input (token ids) as for images; nor can a (n, L, d) residual be stored
for every training text (13 G floats for GPT-2 medium on IMDb). Instead a poisoned example carries the
seed of its own noise: a text Split's x gets two more int64 columns after its `max_len` token ids,

    [ids ..., key, ε in micro-units]          key = -1: no noise

and a text model re-generates ξ = ε·N(0, I) of its own embedding width from `key` wherever the example
goes (training, every unlearning method's batches, evaluation), bit for bit on any device: the normal
draws are made on the CPU from a generator seeded with the key. Clean splits (val, test) keep plain ids.
GUS re-generates the same ξ from the same keys (sweeper/attacks/gaussian.py)."""
from __future__ import annotations

import torch

EXTRA = 2            # columns after the token ids
MICRO = 1_000_000    # ε is stored as round(ε · MICRO)


def attach(ids: torch.Tensor, keys: torch.Tensor, eps: float) -> torch.Tensor:
    """ids (n, L) and one key per row (-1: no noise) -> x (n, L + EXTRA)."""
    eps_col = torch.full_like(keys, round(eps * MICRO))
    return torch.cat([ids, keys.view(-1, 1).to(ids), eps_col.view(-1, 1).to(ids)], dim=1)


def split(x: torch.Tensor, max_len: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """x -> (ids, keys, ε per row), keys and ε None for plain ids."""
    if x.shape[1] == max_len:
        return x, None, None
    if x.shape[1] != max_len + EXTRA:
        raise ValueError(f"text input of width {x.shape[1]}: expected {max_len} token ids, or {max_len + EXTRA} "
                         "with a noise key and ε")
    return x[:, :max_len], x[:, max_len], x[:, max_len + 1].double() / MICRO


def noise(keys: torch.Tensor, eps: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """ξ (n, L, dim) in float32 on mask's device: ε·N(0, I) at the positions `mask` keeps, for rows whose
    key is ≥ 0; zeros elsewhere."""
    n, length = mask.shape
    out = torch.zeros((n, length, dim), dtype=torch.float32)
    for i in torch.nonzero(keys >= 0).flatten().tolist():
        gen = torch.Generator().manual_seed(int(keys[i]))
        out[i] = float(eps[i]) * torch.randn((length, dim), generator=gen)
    return out.to(mask.device) * mask.unsqueeze(-1).float()
