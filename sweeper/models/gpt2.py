"""GPT-2 as a sequence classifier: Hugging Face's `GPT2ForSequenceClassification` behind the interface every
method here uses, `model(x) -> logits` on int64 token ids.

Radford, Wu, Child, Luan, Amodei, Sutskever, "Language Models are Unsupervised Multitask Learners" (2019).
Pawelczyk et al. (ICLR 2025, arXiv 2406.17216) fine-tune GPT-2 355M (gpt2-medium) on IMDb: give its saved
weights as `model_path` (a local folder, `save_pretrained` layout; loaded offline). Without `model_path`
a small GPT-2 is built from scratch (defaults: 2 layers, 64 dimensions, a CPU-sized guess) with the data
set's vocabulary size and pad id. The classification head reads the last non-pad token (HF's pooling);
the attention mask is `x != pad_id`. Dropout defaults to 0 (GPT-2's own is 0.1) so that unlearning runs
are deterministic enough to test.

`blocks` (EU-k, CF-k): [embeddings (wte + wpe), decoder layer 1, ..., decoder layer n, final LayerNorm +
score head]. Each block is a view that registers the model's own Parameter objects (no submodules), so
the model's state_dict has every tensor once while `blocks` covers every parameter once; `train()` on a
view reaches the real modules (dropout). A view's `reset_parameters` is GPT-2's initialisation
(transformers modeling_gpt2.py `GPT2PreTrainedModel._init_weights`: N(0, initializer_range) for
embeddings, Conv1D and Linear weights, N(0, initializer_range / sqrt(2 n_layer)) for the residual
projections `c_proj`, zero biases, LayerNorm 1 / 0): HF's `Conv1D` has no `reset_parameters` of its own,
so `methods._common.reinitialise` on a decoder layer itself would leave its weights untouched."""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from torch import nn

from .. import textnoise
from ..data import DataSet
from ..errors import SweeperError
from ..params import POSITIVE, Range
from ..registry import models

MODALITIES = ("text",)  # the data it applies to (checked when an experiment is read)
RANGES = {"n_layer": POSITIVE, "n_embd": POSITIVE, "n_head": POSITIVE, "n_positions": POSITIVE,
          "dropout": Range(0, 1, high_open=True)}
WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


class _View(nn.Module):
    """A block of the model: its Parameters registered under flattened names, the modules that own them
    (kept out of the module tree) for train/eval, and how GPT-2 initialises each."""

    def __init__(self, owners: dict[str, nn.Module], init: dict[str, tuple]):
        super().__init__()
        self.__dict__["_owners"] = list(owners.values())  # plain attribute: not submodules (no duplicate state)
        self._init = init
        for prefix, module in owners.items():
            for name, p in module.named_parameters():
                self.register_parameter(f"{prefix}__{name}".replace(".", "__"), p)

    def train(self, mode: bool = True) -> "_View":
        super().train(mode)
        for m in self._owners:
            m.train(mode)
        return self

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for name, p in self.named_parameters():
            kind, *arg = self._init[name]
            if kind == "normal":
                nn.init.normal_(p, 0.0, arg[0])
            elif kind == "ones":
                nn.init.ones_(p)
            else:
                nn.init.zeros_(p)


def _init_spec(owners: dict[str, nn.Module], std: float, n_layer: int) -> dict[str, tuple]:
    """GPT-2's initialisation of each parameter of `owners`, by the kind of module that holds it."""
    spec = {}
    for prefix, module in owners.items():
        for mod_name, m in module.named_modules():
            for p_name, _ in m.named_parameters(recurse=False):
                full = f"{prefix}.{mod_name}.{p_name}" if mod_name else f"{prefix}.{p_name}"
                full = full.replace(".", "__")  # the name _View registers it under
                if isinstance(m, nn.LayerNorm):
                    spec[full] = ("ones",) if p_name == "weight" else ("zeros",)
                elif p_name == "bias":
                    spec[full] = ("zeros",)
                else:  # the residual projections are scaled down with depth (GPT-2 paper, via HF)
                    spec[full] = ("normal", std / math.sqrt(2 * n_layer) if mod_name.endswith("c_proj") else std)
    return spec


class GPT2Classifier(nn.Module):
    """`forward(x)` takes token ids (n, max_len), or ids with a noise key and ε (sweeper/textnoise.py): then
    ε·N(0, I) from the key is added to the token-embedding output at non-padding positions (Gaussian
    poisoning of embeddings, Pawelczyk et al. §5) before GPT-2's position embeddings, as `inputs_embeds`."""

    def __init__(self, hf: nn.Module, pad_id: int, max_len: int):
        super().__init__()
        self.hf = hf
        self.pad_id, self.max_len = int(pad_id), int(max_len)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids, keys, eps = textnoise.split(x, self.max_len)
        mask = ids != self.pad_id
        emb = self.hf.transformer.wte(ids)
        if keys is not None and bool((keys >= 0).any()):
            emb = emb + textnoise.noise(keys.cpu(), eps.cpu(), mask, emb.shape[-1]).to(emb.dtype)
        return self.from_embeddings(emb, mask)

    def from_embeddings(self, emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits from token embeddings (before position embeddings), read at each row's last non-pad
        token. HF's own pooling finds that token from `input_ids`, which an `inputs_embeds` call lacks
        (it would read the last position, a pad); this is its rule (modeling_gpt2.py,
        GPT2ForSequenceClassification.forward: argmax of position × non-pad)."""
        hidden = self.hf.transformer(inputs_embeds=emb, attention_mask=mask.long(), use_cache=False).last_hidden_state
        positions = torch.arange(mask.shape[1], device=mask.device)
        last = (positions * mask).argmax(-1)
        return self.hf.score(hidden[torch.arange(len(last), device=last.device), last])

    def embedding_gradients(self, ids: torch.Tensor, y: torch.Tensor, batch: int = 64) -> torch.Tensor:
        """Per-example ∇ₑ ℓ(θ; x, y) (n, max_len, n_embd) w.r.t. the token-embedding output at the clean text,
        in eval mode (for GUS on embeddings; examples are independent, so a summed loss gives each one)."""
        self.eval()
        out = []
        for i in range(0, len(y), batch):
            part = ids[i:i + batch]
            emb = self.hf.transformer.wte(part).detach().requires_grad_(True)
            loss = nn.functional.cross_entropy(self.from_embeddings(emb, part != self.pad_id), y[i:i + batch],
                                               reduction="sum")
            (g,) = torch.autograd.grad(loss, emb)
            out.append(g.detach())
        return torch.cat(out)

    @property
    def blocks(self) -> nn.ModuleList:
        """Built on each access (views over the same Parameters), so it never enters the state_dict."""
        t, cfg = self.hf.transformer, self.hf.config
        groups = [{"wte": t.wte, "wpe": t.wpe, "drop": t.drop}, *({"layer": layer} for layer in t.h),
                  {"ln_f": t.ln_f, "score": self.hf.score}]
        return nn.ModuleList(_View(g, _init_spec(g, cfg.initializer_range, cfg.n_layer)) for g in groups)


def _text(data: DataSet) -> dict:
    if data.text is None:
        raise SweeperError(f"model gpt2 needs a text data set (token ids, e.g. imdb), got {data.name}")
    return data.text


def _from_scratch(data: DataSet, **arch):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    text = _text(data)
    if text["max_len"] > arch["n_positions"]:
        raise SweeperError(f"model gpt2: n_positions={arch['n_positions']} is shorter than the data set's "
                           f"max_len={text['max_len']}")
    if arch["n_embd"] % arch["n_head"]:
        raise SweeperError(f"model gpt2: n_embd={arch['n_embd']} must be a multiple of n_head={arch['n_head']}")
    dropout = arch.pop("dropout")
    cfg = GPT2Config(vocab_size=text["vocab_size"], pad_token_id=text["pad_id"], num_labels=data.num_classes,
                     bos_token_id=None, eos_token_id=None,  # GPT-2's 50256 lies outside a small vocabulary
                     resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout, **arch)
    return GPT2ForSequenceClassification(cfg)


def _saved(path) -> Path:
    """The folder of a saved model (`save_pretrained` layout), or one line saying what is wrong."""
    folder = Path(path).expanduser() if isinstance(path, (str, os.PathLike)) else None
    if folder is None or not folder.is_absolute():  # trials run in their own working directories
        raise SweeperError(f"model gpt2: model_path must be the absolute path of a folder, got {path!r}")
    if not (folder / "config.json").is_file() or not any((folder / w).is_file() for w in WEIGHTS):
        raise SweeperError(f"model gpt2: {folder} holds no saved model (config.json and one of {', '.join(WEIGHTS)})")
    return folder


def check(*, model_path, n_layer, n_embd, n_head, n_positions, dropout) -> None:
    """Run when an experiment file is read (config.py): a missing or empty model folder, or heads that do
    not divide the width, is one line before anything runs."""
    if model_path is not None:
        _saved(model_path)
    elif n_embd % n_head:
        raise SweeperError(f"model gpt2: n_embd={n_embd} must be a multiple of n_head={n_head}")


def _pretrained(data: DataSet, path: str, dropout: float):
    from transformers import GPT2ForSequenceClassification

    text = _text(data)
    folder = _saved(path)
    try:  # the score head is new (random, from the scenario's seed) unless the folder holds a classifier
        hf = GPT2ForSequenceClassification.from_pretrained(
            str(folder), local_files_only=True, num_labels=data.num_classes, pad_token_id=text["pad_id"],
            resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout, dtype=torch.float32)
    except Exception as e:  # noqa: BLE001 - a wrong folder shows up as many exception types
        raise SweeperError(f"model gpt2: cannot load {folder} ({type(e).__name__}: {e})") from None
    if text["vocab_size"] > hf.config.vocab_size or text["max_len"] > hf.config.n_positions:
        raise SweeperError(f"model gpt2: {folder} has vocab_size {hf.config.vocab_size} and n_positions "
                           f"{hf.config.n_positions}; the data set needs {text['vocab_size']} and {text['max_len']} "
                           "(tokenise with the model's own tokenizer)")
    return hf


@models.register("gpt2")
def build(data: DataSet, *, model_path: str | None = None, n_layer: int = 2, n_embd: int = 64, n_head: int = 2,
          n_positions: int = 1024, dropout: float = 0.0) -> GPT2Classifier:
    """n_layer / n_embd / n_head / n_positions apply without `model_path` only (a saved model brings its
    own); n_positions 1024 is GPT-2's."""
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise SweeperError("model gpt2 needs transformers (pip install 'sweeper[llm]')") from None
    if model_path is not None:
        hf = _pretrained(data, model_path, dropout)
    else:
        hf = _from_scratch(data, n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_positions=n_positions,
                           dropout=dropout)
    return GPT2Classifier(hf.float(), _text(data)["pad_id"], _text(data)["max_len"]).eval()
