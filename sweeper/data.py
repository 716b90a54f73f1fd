"""Plain tensors for data sets: a Split is (x, y); a DataSet holds fixed train / val / test splits.

Inputs are float32 in [0, 1] pixel units; the model normalises inside (so input gradients and
perturbations share one unit, which GUS needs)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch


@dataclass
class Split:
    x: torch.Tensor  # (n, C, H, W) float32 in [0, 1] (poisoned inputs may leave that range)
    y: torch.Tensor  # (n,) int64

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: torch.Tensor) -> "Split":
        return Split(self.x[idx], self.y[idx])

    def to(self, device: torch.device | str) -> "Split":
        return Split(self.x.to(device), self.y.to(device))

    def digest(self) -> str:
        """sha256 (16 hex digits) of every input and label with their shapes and dtypes: the content's own
        hash. MLflow's numpy digest reads only the first 10,000 elements, so two seeds' poisoned sets
        that differ further in would share its digest."""
        h = hashlib.sha256()
        for t in (self.x, self.y):
            t = t.detach().contiguous().cpu()
            h.update(f"{tuple(t.shape)}{t.dtype};".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return h.hexdigest()[:16]


@dataclass
class DataSet:
    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    mean: tuple[float, ...]  # per-channel normalisation applied inside the model
    std: tuple[float, ...]
    # Text data sets only (x = int64 token ids, (n, max_len), right-padded): pad_id, vocab_size, max_len and
    # encode (str -> list of token ids, the data set's own tokenizer), for models and trigger-phrase attacks.
    text: dict | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])


class IndexStream:
    """An endless stream of shuffled indices, reshuffled every pass; `take(k)` may cross passes.

    Methods draw batches from it so that trimming a batch at a checkpoint does not change what comes
    after: the order of examples depends only on the seed and how many were taken (anytime contract)."""

    def __init__(self, n: int, generator: torch.Generator):
        if n <= 0:
            raise ValueError("cannot stream an empty set")
        self.n, self.gen = n, generator
        self._order = torch.randperm(n, generator=generator)
        self._pos = 0

    def take(self, k: int) -> torch.Tensor:
        parts = []
        while k > 0:
            if self._pos == self.n:
                self._order, self._pos = torch.randperm(self.n, generator=self.gen), 0
            step = min(k, self.n - self._pos)
            parts.append(self._order[self._pos : self._pos + step])
            self._pos, k = self._pos + step, k - step
        return torch.cat(parts) if parts else torch.empty(0, dtype=torch.long)


def generator(seed: int, stream: int = 0) -> torch.Generator:
    """A CPU generator for one purpose of one seed; `stream` keeps purposes (order, noise, ...) apart."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(stream))
