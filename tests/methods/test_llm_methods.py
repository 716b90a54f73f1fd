"""NPO and GradDiff (issue 13) do what they are defined to do, on the tiny digits scenario's CNN (the
methods are model-agnostic). The losses are checked directly against their formulas, the runs from
outside: forwards counted by hooks, parameters compared with hand-written loops."""
import math

import pytest
import torch
from torch.nn import functional as F

from sweeper.data import IndexStream
from sweeper.methods import grad_diff, npo
from sweeper.methods._common import frozen_copy
from helpers import mean_loss, run_method, states_equal, unlearn_data

ADAMW_DECAY = 0.01  # the references' AdamW weight decay (TOFU config/forget.yaml)


def batch(split, n=64):
    return split.x[:n], split.y[:n]


def moved_copy(base, scale=0.05):
    """θ_poisoned with every parameter nudged by fixed noise: p_θ / p_ref now spreads around 1."""
    model = base.model("poisoned").eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return model


def flat_grad(model, loss):
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(model.parameters()))])


def log_p(model, x, y):
    return F.log_softmax(model(x), dim=1).gather(1, y[:, None]).squeeze(1)


# -- NPO's loss ------------------------------------------------------------------------------------

@pytest.mark.parametrize("beta", [0.05, 0.1, 1.0, 5.0])
def test_npo_loss_at_the_start_is_2_over_beta_log_2(tiny_base, beta):
    model = tiny_base.model("poisoned").eval()
    x, y = batch(tiny_base.poisoning.forget_set)
    with torch.no_grad():
        loss = npo.npo_loss(model(x), frozen_copy(model)(x), y, beta)
    assert float(loss) == pytest.approx(2 / beta * math.log(2), rel=1e-6)


def test_npo_loss_is_the_papers_expression(tiny_base):
    """(2/β)·mean log(1 + (p_θ(y|x)/p_ref(y|x))^β), computed from the probabilities in float64."""
    ref, model = tiny_base.model("poisoned").eval(), moved_copy(tiny_base)
    x, y = batch(tiny_base.poisoning.forget_set)
    with torch.no_grad():
        ratio = (log_p(model, x, y).double() - log_p(ref, x, y).double()).exp()
        assert ratio.min() < 0.8 and ratio.max() > 1.25  # a real spread, not the start
        for beta in (0.1, 2.0):
            expected = 2 / beta * torch.log1p(ratio ** beta).mean()
            assert float(npo.npo_loss(model(x), ref(x), y, beta)) == pytest.approx(float(expected), rel=1e-5)


def test_npo_gradient_is_gradient_ascent_weighted_by_2_sigmoid_of_the_log_ratio(tiny_base):
    """The paper's gradient analysis: ∇L_NPO = mean_i 2σ(β·log(p_θ/p_ref))·∇log p_θ(y_i|x_i). At the
    start the weights are 1 (gradient ascent, any β); away from it they tend to 1 only as β → 0."""
    ref = tiny_base.model("poisoned").eval()
    x, y = batch(tiny_base.poisoning.forget_set)
    start = tiny_base.model("poisoned").eval()
    ga = flat_grad(start, -F.cross_entropy(start(x), y))  # descending this ascends the forget loss
    for beta in (0.1, 5.0):
        torch.testing.assert_close(flat_grad(start, npo.npo_loss(start(x), ref(x), y, beta)), ga)

    model = moved_copy(tiny_base)
    ga = flat_grad(model, log_p(model, x, y).mean())
    for beta in (1.0e-6, 0.5, 2.0):
        with torch.no_grad():
            weights = 2 * torch.sigmoid(beta * (log_p(model, x, y) - log_p(ref, x, y)))
        got = flat_grad(model, npo.npo_loss(model(x), ref(x), y, beta))
        torch.testing.assert_close(got, flat_grad(model, (weights * log_p(model, x, y)).mean()), rtol=1e-4, atol=1e-6)
        if beta < 1e-3:
            torch.testing.assert_close(got, ga, rtol=1e-4, atol=1e-6)  # β → 0: gradient ascent
        else:
            assert (got - ga).norm() > 0.05 * ga.norm()  # the weighting is real


# -- NPO's runs ------------------------------------------------------------------------------------

def test_npo_raises_the_forget_loss(tiny_base):
    forget = tiny_base.poisoning.forget_set
    before = mean_loss(tiny_base.model("poisoned"), forget)
    model, _, _ = run_method(tiny_base, "npo", (0.1,), lr=1.0e-3, beta=0.1, alpha=0.0)
    assert mean_loss(model, forget) > before + 0.05


def test_npo_first_step_is_a_gradient_ascent_step(tiny_base):
    """Student and reference both in eval mode, so p_θ = p_ref before the first step, which is then an
    AdamW step of gradient ascent on the first forget batch (data stream 0)."""
    data = unlearn_data(tiny_base)
    f, b, lr = data.forget, data.batch_size, 1.0e-3
    one_step = (npo.FORGET_ITEM * b + 1) / tiny_base.retrain_units  # room for one step, not two
    model, budget, _ = run_method(tiny_base, "npo", (one_step,), lr=lr, beta=0.1, alpha=0.0)
    assert budget.spent == 4 * b
    ga = tiny_base.model("poisoned").eval()
    opt = torch.optim.AdamW(ga.parameters(), lr=lr, weight_decay=ADAMW_DECAY)
    idx = IndexStream(len(f), data.gen(0)).take(b)
    (-F.cross_entropy(ga(f.x[idx]), f.y[idx])).backward()
    opt.step()
    got, want = model.state_dict(), ga.state_dict()
    assert not states_equal(got, tiny_base.poisoned)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=lr * 1e-3)  # buffers: exactly


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_npo_reference_is_never_updated_and_its_forwards_are_charged(tiny_base, monkeypatch, alpha):
    refs, seen_by = [], {"student": 0, "reference": 0}
    model = tiny_base.model("poisoned")

    def spy_frozen_copy(m):
        ref = frozen_copy(m)
        ref.register_forward_hook(lambda mod, args, out: seen_by.update(reference=seen_by["reference"] + len(args[0])))
        refs.append(ref)
        return ref

    def count_student(mod, args, out):
        if mod is model:  # the reference, a deep copy, carries this hook too
            seen_by["student"] += len(args[0])

    model.register_forward_hook(count_student)
    monkeypatch.setattr(npo, "frozen_copy", spy_frozen_copy)
    budgets = (0.02, 0.05, 0.08)
    _, budget, seen = run_method(tiny_base, "npo", budgets, model=model, lr=1.0e-2, alpha=alpha)

    assert len(refs) == 1
    ref = refs[0]
    assert states_equal(ref.state_dict(), tiny_base.poisoned)  # BatchNorm statistics included
    assert not ref.training and not any(p.requires_grad for p in ref.parameters())
    assert not states_equal(model.state_dict(), tiny_base.poisoned)  # while the student moved
    # one reference forward per forget example; alpha > 0 adds as many retain examples
    assert seen_by["reference"] > 0 and seen_by["student"] == (2 if alpha else 1) * seen_by["reference"]
    assert budget.spent == 3 * seen_by["student"] + seen_by["reference"]  # fwd + bwd, plus the reference fwd
    assert [f for f, _, _ in seen] == list(budgets)
    for (_, units, _), limit in zip(seen, budget.limits):
        assert units <= limit
    assert budget.spent <= budget.total


# -- GradDiff --------------------------------------------------------------------------------------

def test_grad_diff_loss_is_gamma_times_negative_forget_ce_plus_alpha_times_retain_ce(tiny_base):
    model = tiny_base.model("poisoned").eval()
    (fx, fy), (rx, ry) = batch(tiny_base.poisoning.forget_set, 32), batch(tiny_base.poisoning.retain, 32)
    with torch.no_grad():
        ce_f, ce_r = float(F.cross_entropy(model(fx), fy)), float(F.cross_entropy(model(rx), ry))
        for gamma, alpha in [(1.0, 1.0), (0.3, 2.5), (2.0, 0.0)]:
            got = float(grad_diff.objective(model, (fx, fy), (rx, ry), gamma, alpha))
            assert got == pytest.approx(gamma * -ce_f + alpha * ce_r, rel=1e-6)
        assert float(grad_diff.objective(model, (fx, fy), None, 1.0, 0.0)) == pytest.approx(-ce_f, rel=1e-6)


@pytest.mark.parametrize("gamma, alpha", [(1.0, 0.0), (0.5, 2.0)])
def test_grad_diff_is_adamw_on_paired_batches_step_for_step(tiny_base, gamma, alpha):
    """alpha = 0 is pure gradient ascent on forget, batch for batch; otherwise each step pairs a forget
    batch (stream 0) with a retain batch of the same size (stream 1). Compared at every checkpoint."""
    data = unlearn_data(tiny_base)
    f, r, b, lr = data.forget, data.retain, data.batch_size, 1.0e-3
    _, _, seen = run_method(tiny_base, "grad_diff", (0.02, 0.04), lr=lr, gamma=gamma, alpha=alpha)
    model = tiny_base.model("poisoned").eval()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=ADAMW_DECAY)
    f_stream, r_stream = IndexStream(len(f), data.gen(0)), IndexStream(len(r), data.gen(1))
    step_units = 3 * b * (2 if alpha else 1)
    steps = 0
    for _, units, state in seen:
        while (steps + 1) * step_units <= units:
            fi = f_stream.take(b)
            loss = -gamma * F.cross_entropy(model(f.x[fi]), f.y[fi])
            if alpha:
                ri = r_stream.take(b)
                loss = loss + alpha * F.cross_entropy(model(r.x[ri]), r.y[ri])
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
        assert units == steps * step_units and steps > 0
        assert states_equal(model.state_dict(), state)
    assert not states_equal(model.state_dict(), tiny_base.poisoned)


def test_npo_with_retain_term_is_adamw_on_paired_batches_step_for_step(tiny_base):
    """Each step: a forget batch (stream 0) through student and reference, (2/β)·mean softplus(β·log-ratio)
    (the paper's (2/β)·log(1 + ratio^β)), plus α·CE on a retain batch of the same size (stream 1)."""
    data = unlearn_data(tiny_base)
    f, r, b, lr, beta, alpha = data.forget, data.retain, data.batch_size, 1.0e-3, 0.5, 2.0
    _, _, seen = run_method(tiny_base, "npo", (0.02, 0.04), lr=lr, beta=beta, alpha=alpha)
    ref, model = tiny_base.model("poisoned").eval(), tiny_base.model("poisoned").eval()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=ADAMW_DECAY)
    f_stream, r_stream = IndexStream(len(f), data.gen(0)), IndexStream(len(r), data.gen(1))
    step_units = (4 + 3) * b  # forget: fwd + bwd + reference fwd; retain: fwd + bwd
    steps = 0
    for _, units, state in seen:
        while (steps + 1) * step_units <= units:
            fi, ri = f_stream.take(b), r_stream.take(b)
            with torch.no_grad():
                ref_lp = log_p(ref, f.x[fi], f.y[fi])
            npo_term = 2 / beta * F.softplus(beta * (log_p(model, f.x[fi], f.y[fi]) - ref_lp)).mean()
            loss = npo_term + alpha * F.cross_entropy(model(r.x[ri]), r.y[ri])
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
        assert units == steps * step_units and steps > 0
        for k, v in model.state_dict().items():
            torch.testing.assert_close(state[k], v, rtol=0, atol=lr * 1e-2)
    assert not states_equal(model.state_dict(), tiny_base.poisoned)
