"""Trigger-phrase backdoor for text classifiers (the language-model counterpart of `backdoor`).

Dai, Chen, Li, "A Backdoor Attack Against LSTM-Based Text Classification Systems" (IEEE Access 2019,
arXiv 1905.12457): a fixed trigger inserted at a random position of a fraction of training texts of the
other class(es), which are relabelled to the target class; a model that learns the shortcut sends any
text carrying the trigger to the target. Pawelczyk et al. (ICLR 2025, arXiv 2406.17216) poison GPT-2 on
IMDb this way. Defaults: trigger "cf mn bb", three of the rare-token triggers of Kurita, Michel, Neubig,
"Weight Poisoning Attacks on Pre-trained Models" (ACL 2020, arXiv 2004.06660); 10% poison ratio as
`backdoor` (BackdoorBench); target 1 (positive), a choice; 10% of the training split held out for ASR,
as `backdoor`.

Token ids are edited directly (no float residual: ids have no neighbours to perturb towards). The
trigger is tokenised with the data set's own tokenizer (`text=DataSet.text`, passed by the scenario) and
inserted whole within each text's real tokens (never in the padding beyond it): at a position drawn
uniformly from 0..min(length, max_len − trigger length), then the row is cut back to max_len. `fraction`
is a share of the whole (held-out-free) training split, drawn from the texts whose label is not the
target, as in `backdoor`. ASR is measured on held-out texts whose true label is not the target, each with
the trigger at a random position."""
from __future__ import annotations

import torch

from ..data import Split, generator
from ..errors import SweeperError
from ..params import FRACTION, NON_NEGATIVE, Range
from ._base import Poisoning
from ._surrogate import hold_out, rate_metrics

MODALITIES = ("text",)  # the data it applies to (checked when an experiment is read)
PAPER = "Dai, Chen, Li, 2019, arXiv 1905.12457 (trigger: Kurita et al., 2020, arXiv 2004.06660)"
RETRAIN_EFFECT = None  # a clean model's ASR is not known exactly: measured on θ_retrain
_PICK, _INSERT, _EVAL, _MIA = 41, 42, 43, 44  # generator streams: poisons, their positions, ASR points, MIA
EVAL_BATCH = 256  # texts per forward pass when measuring ASR (a GPT-2 355M forward of 256 x 512 tokens fits)
RANGES = {
    "fraction": FRACTION,
    "target": NON_NEGATIVE,  # a class index; its upper bound (num_classes) belongs to the data set
    "eval_fraction": Range(0, 1, low_open=True, high_open=True),  # 0: no ASR points; 1: nothing to train on
}


def lengths(x: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Each row's real length: one past its last non-pad token (rows are right-padded)."""
    positions = torch.arange(1, x.shape[1] + 1, device=x.device)
    return ((x != pad_id) * positions).amax(1)


def insert(x: torch.Tensor, pos: torch.Tensor, trigger: torch.Tensor) -> torch.Tensor:
    """Rows of `x` with `trigger` inserted before token `pos[i]` of row i; what follows shifts right and
    the row is cut back to x's width (right padding shifts along, so it stays padding)."""
    n, width = x.shape
    t = len(trigger)
    j = torch.arange(width, device=x.device).expand(n, width)
    p = pos.to(x.device)[:, None]
    shifted = x.gather(1, torch.where(j < p, j, (j - t).clamp(min=0)))
    inside = (j >= p) & (j < p + t)
    return torch.where(inside, trigger.to(x.device)[(j - p).clamp(0, t - 1)], shifted)


def stamp(x: torch.Tensor, trigger: torch.Tensor, pad_id: int, gen: torch.Generator) -> torch.Tensor:
    """`insert` at a position drawn uniformly from 0..min(length, width − len(trigger)) per row: inside the
    real tokens, and early enough that the whole trigger survives the cut back to the row's width."""
    high = lengths(x, pad_id).cpu().clamp(max=x.shape[1] - len(trigger))
    pos = (torch.rand(len(x), generator=gen) * (high + 1)).long().clamp(max=high)
    return insert(x, pos, trigger)


def _trigger_ids(text: dict | None, trigger: str) -> torch.Tensor:
    if not text:
        raise SweeperError("attack text_backdoor needs a text data set (token ids with a tokenizer, e.g. imdb)")
    if not isinstance(trigger, str) or not trigger.strip():
        raise SweeperError(f"attack text_backdoor: trigger must be a non-empty phrase, got {trigger!r}")
    ids = torch.tensor(text["encode"](trigger), dtype=torch.long)
    if not 0 < len(ids) < text["max_len"]:
        raise SweeperError(f"attack text_backdoor: trigger {trigger!r} is {len(ids)} tokens; it must be shorter "
                           f"than max_len={text['max_len']}")
    return ids


def craft(train: Split, *, seed: int, text: dict, trigger: str = "cf mn bb", fraction: float = 0.1,
          target: int = 1, eval_fraction: float = 0.1) -> Poisoning:
    ids, pad_id = _trigger_ids(text, trigger), int(text["pad_id"])
    if not bool((train.y == target).any()):
        raise SweeperError(f"attack text_backdoor: target {target} is not a label of the training set")
    rest, held = hold_out(train, round(eval_fraction * len(train)), seed)
    others = torch.nonzero(rest.y != target).flatten().cpu()
    n_poison = min(len(others), max(1, round(fraction * len(rest))))
    forget = others[torch.randperm(len(others), generator=generator(seed, _PICK))[:n_poison]].sort().values
    x, y = rest.x.clone(), rest.y.clone()
    x[forget] = stamp(x[forget], ids, pad_id, generator(seed, _INSERT))
    y[forget] = target
    victims = held.x[held.y != target]
    context = {"eval_x": stamp(victims, ids, pad_id, generator(seed, _EVAL)),
               "eval_y": held.y[held.y != target].clone(), "target": int(target), "trigger": ids,
               "pad_id": pad_id}
    return Poisoning(Split(x, y), forget, context)


@torch.no_grad()
def effect(model: torch.nn.Module, context: dict) -> dict[str, float]:
    model.eval()
    x = context["eval_x"]
    pred = torch.cat([model(x[i:i + EVAL_BATCH]).argmax(1) for i in range(0, len(x), EVAL_BATCH)])
    m = rate_metrics(pred == context["target"], "backdoor")
    m["backdoor/asr"] = m.pop("backdoor/success")
    return m


def mia_nonmembers(heldout: Split, context: dict, *, seed: int, copies: int = 1) -> Split:
    """Held-out texts transformed like the poisons: those of other classes, with the trigger inserted
    (a fresh random position for each copy) and relabelled to the target."""
    x = heldout.x[heldout.y != context["target"]].repeat(copies, 1)
    x = stamp(x, context["trigger"], int(context["pad_id"]), generator(seed, _MIA))
    return Split(x, torch.full((len(x),), context["target"], dtype=heldout.y.dtype, device=x.device))
