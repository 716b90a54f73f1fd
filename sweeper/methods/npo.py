"""NPO: push the forget set's likelihood below a frozen reference's, with a loss that saturates.

Zhang, Lin, Bai, Mei, "Negative Preference Optimization: From Catastrophic Collapse to Effective
Unlearning", 2024, arXiv 2404.05868. Minimises
    L = (2/β)·E_forget log(1 + (p_θ(y|x)/p_ref(y|x))^β) = −(2/β)·E_forget logσ(−β·(log p_θ − log p_ref))
with p_ref a frozen copy of θ_poisoned, plus α·CE on paired retain batches (α = 0: pure NPO). At the
start p_θ = p_ref and the gradient is exactly gradient ascent's; each forget example's gradient is then
weighted by 2σ(β·log(p_θ/p_ref)) (the paper's gradient analysis), which vanishes as the example is
forgotten, and tends to 1 (plain gradient ascent) as β → 0.

Every model here is a classifier, sequence classifiers (GPT-2 on IMDb) included: log p(y|x) =
log_softmax(logits)[y] for the one label. For a causal LM the reference sums the token
log-likelihoods of the answer (`get_batch_loss`, TOFU/data_module.py lines 242-250); with one label
the two agree. The authors' own classifier experiment reads it the same way (synthetic/mymodel.py
lines 277-290: log_softmax, the label's entry, −(2/β)·logσ(β·(log p_ref − log p_θ)).mean()).

Follows github.com/licong-lin/negative-preference-optimization (commit 1207bbe), TOFU/dataloader.py:
loss type `npo` (lines 255-270) and `npo_grad_diff` (lines 272-291: npo_coeff·L_NPO +
grad_diff_coeff·CE_retain); the reference model ("oracle", ref_policy fine_tuned) is the model before
unlearning, forwarded under no_grad, in eval mode with requires_grad off (lines 131-135). Defaults:
β 0.1, both coefficients 1, lr 1e-5, AdamW (paged_adamw_32bit, the same update) with weight decay
0.01 (TOFU/config/forget.yaml lines 8, 16-17, 20-21; TOFU/forget.py line 135). open-unlearning
(github.com/locuslab/open-unlearning, commit d3d7cf9) runs the same loss (src/trainer/utils.py
lines 47-67, `compute_dpo_loss` with win_inputs None) as γ·L_NPO + α·NLL_retain
(src/trainer/unlearn/npo.py line 31) with β 0.1, α 1, γ 1 (configs/trainer/NPO.yaml lines 5-9): the
source of α's default (α = 1, as the authors' grad_diff_coeff). γ is not a parameter here: Adam's
update hardly depends on the loss's overall scale, so only α/γ matters.

Batches: each step takes the recipe's batch size of forget examples and, when α > 0, as many retain
examples (both references pair one random retain example with each forget example:
TOFU/data_module.py lines 67-74; open-unlearning src/data/unlearn.py lines 34-40). Each forget example
costs 4 units, forward + backward (3) and the reference's forward (1); each retain example 3.

Deliberate deviations:
- Mode: the student stays in eval mode, as the reference model does, so BatchNorm uses θ_poisoned's
  running statistics, p_θ = p_ref exactly at the start (the loss is (2/β)·log 2 and the first step is
  gradient ascent's), and the log-ratio measures only what the weights changed. HF's Trainer puts the
  student in train mode, which in the reference's Llama-2 / Phi models (no BatchNorm, dropout 0) changes
  nothing; with our BatchNorm CNNs train mode would make p_θ ≠ p_ref before any step.
- Constant learning rate: HF's default linear decay to 0 at the run's last step depends on the trial's
  total budget, which the anytime contract forbids; the authors' one-epoch warmup
  (TOFU/config/forget.yaml line 27) goes with it (open-unlearning has none). No gradient clipping:
  both references run under DeepSpeed configs without `gradient_clipping`, where HF's max_grad_norm is
  not applied. Full precision unless the scenario's recipe asks for bf16 (the references run bf16).
- Retain examples are drawn from an index stream (a fresh permutation per pass) rather than at random
  with replacement; α = 0 draws no retain batch and spends nothing on it (the authors' `npo`)."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from ..data import IndexStream
from ._common import TEACHER_FORWARD, TRAIN_STEP, frozen_copy, sgd_step, train_steps

# An LLM-unlearning method (TOFU, MUSE, open-unlearning): `methods: all` picks it for text data sets only; it
# runs on any classifier where named.
MODALITIES = ("text",)
PAPER = "Zhang, Lin, Bai, Mei, 2024, arXiv 2404.05868"
WEIGHT_DECAY = 0.01  # AdamW's, TOFU/config/forget.yaml line 21 of the authors' repository
FORGET_ITEM = TRAIN_STEP + TEACHER_FORWARD  # units per forget example: student fwd + bwd, reference fwd
FORGET_STREAM, RETAIN_STREAM = 0, 1  # data.gen streams of the batch orders


def log_likelihood(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """log p(y|x) per example: the label's entry of log_softmax (a classifier's sequence likelihood)."""
    return F.log_softmax(logits, dim=1).gather(1, y[:, None]).squeeze(1)


def npo_loss(logits: torch.Tensor, ref_logits: torch.Tensor, y: torch.Tensor, beta: float) -> torch.Tensor:
    """−(2/β)·mean logσ(−β·(log p_θ − log p_ref)) = (2/β)·mean log(1 + (p_θ/p_ref)^β)."""
    log_ratio = log_likelihood(logits, y) - log_likelihood(ref_logits, y)
    return -2 / beta * F.logsigmoid(-beta * log_ratio).mean()


def adamw(model, lr: float) -> torch.optim.AdamW:
    """The references' optimiser: AdamW (β₁ 0.9, β₂ 0.999, ε 1e-8: HF's defaults, also torch's)."""
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=WEIGHT_DECAY)


def unlearn(model, data, budget, *, lr=1.0e-5, beta=0.1, alpha=1.0):
    if not beta > 0:
        raise ValueError(f"npo needs beta > 0, got {beta!r}")
    r, f = data.retain, data.forget
    ref = frozen_copy(model)
    opt = adamw(model, lr)
    f_stream, r_stream = IndexStream(len(f), data.gen(FORGET_STREAM)), IndexStream(len(r), data.gen(RETAIN_STREAM))

    def step(k: int) -> None:  # k forget examples, and k retain examples when alpha > 0
        fi = f_stream.take(k)
        with torch.no_grad():
            ref_logits = ref(f.x[fi])
        loss = npo_loss(model(f.x[fi]), ref_logits, f.y[fi], beta)
        if alpha:
            ri = r_stream.take(k)
            loss = loss + alpha * F.cross_entropy(model(r.x[ri]), r.y[ri])
        sgd_step(opt, loss)

    per_pair = FORGET_ITEM + (TRAIN_STEP if alpha else 0)
    train_steps(budget, data.batch_size, per_pair, step, model.eval)  # eval mode: p_θ = p_ref at the start
    return model.eval()
