"""Each method beyond the paper's first four changes what it is defined to change, and nothing else.

Full state_dicts are compared (BatchNorm buffers included) against θ_poisoned of the tiny scenario."""
import copy

import pytest
import torch
from torch.nn import functional as F

from sweeper import methods as _methods
from sweeper.methods import bad_teacher, eu_k, fisher_forget, random_label, salun, scrub, ssd
from sweeper.methods._common import distill_kl, frozen_copy, optimizer, reinitialise
from sweeper.registry import methods
from helpers import mean_loss, run_method, states_equal, unlearn_data


@torch.no_grad()
def kl(teacher, student, split, T=1.0):
    """KL(teacher ‖ student) on a split, both in eval mode."""
    teacher.eval(), student.eval()
    return float(distill_kl(student(split.x), teacher(split.x), T))


def block_keys(state, i):
    return [k for k in state if k.startswith(f"blocks.{i}.")]


def test_eu_k_reinitialises_and_trains_exactly_the_last_k_blocks(tiny_base):
    before = tiny_base.poisoned
    rng = torch.get_rng_state()
    model, _, _ = run_method(tiny_base, "eu_k", (0.05,), k=3)
    after = model.state_dict()
    assert torch.equal(torch.get_rng_state(), rng)  # the init came from data.gen, not the global RNG
    assert states_equal({k: after[k] for k in block_keys(after, 0)}, {k: before[k] for k in block_keys(before, 0)})
    changed = [k for i in (1, 2, 3) for k in block_keys(after, i)]
    assert any("running_mean" in k for k in changed)  # block 1 has BatchNorm: its statistics were reset too
    for k in changed:
        assert not torch.equal(after[k], before[k]), k


def test_eu_k_starts_the_last_k_blocks_from_a_fresh_initialisation(tiny_base):
    data = unlearn_data(tiny_base)
    fresh = copy.deepcopy(tiny_base.model("poisoned").blocks[-2:])
    reinitialise(fresh, data.gen(eu_k.INIT_STREAM))
    model, _, _ = run_method(tiny_base, "eu_k", (0.02,), k=2, lr=0.0)  # no step moves a parameter
    for (name, p), q in zip(model.blocks[-2:].named_parameters(), fresh.parameters()):
        assert torch.equal(p, q), name
        assert not torch.equal(p, dict(tiny_base.model("poisoned").blocks[-2:].named_parameters())[name])


def test_cf_k_leaves_earlier_blocks_and_their_batchnorm_statistics_bit_identical(tiny_base):
    before = tiny_base.poisoned
    model, _, _ = run_method(tiny_base, "cf_k", (0.05,), k=2, lr=0.05)
    after = model.state_dict()
    frozen = block_keys(after, 0) + block_keys(after, 1)
    assert any("running_var" in k for k in frozen)
    assert states_equal({k: after[k] for k in frozen}, {k: before[k] for k in frozen})
    for k in block_keys(after, 2) + block_keys(after, 3):
        assert not torch.equal(after[k], before[k]), k


def reference_importances(model, split, batch_size):
    """SSD's reference `calc_importance`: p.grad² of each batch's mean CE, summed, / number of batches."""
    model = copy.deepcopy(model).eval()
    imp = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    batches = 0
    for i in range(0, len(split), batch_size):
        model.zero_grad()
        F.cross_entropy(model(split.x[i:i + batch_size]), split.y[i:i + batch_size]).backward()
        for n, p in model.named_parameters():
            imp[n] += p.grad.pow(2)
        batches += 1
    return {n: v / batches for n, v in imp.items()}


def test_ssd_only_shrinks_the_selected_parameters(tiny_base):
    data = unlearn_data(tiny_base)
    poisoned = tiny_base.model("poisoned")
    all_ = reference_importances(poisoned, ssd.corrupted_set(data), ssd.IMPORTANCE_BATCH)
    forget = reference_importances(poisoned, data.forget, ssd.IMPORTANCE_BATCH)
    alpha, lam = 10.0, 1.0
    model, budget, seen = run_method(tiny_base, "ssd", (0.2,), alpha=alpha, lam=lam)
    assert seen and not budget.over_budget
    before, after = tiny_base.poisoned, model.state_dict()
    n_selected = 0
    for name, p in poisoned.named_parameters():
        old, new = before[name], after[name]
        assert (new.abs() <= old.abs()).all() and (new * old >= 0).all()  # shrunk, never flipped
        selected = forget[name] > alpha * all_[name]
        assert torch.equal(new[~selected], old[~selected])  # below the selection threshold: untouched
        scale = (lam * all_[name] / forget[name]).clamp(max=1.0)
        torch.testing.assert_close(new[selected], old[selected] * scale[selected])
        n_selected += int(selected.sum())
    assert n_selected > 0
    buffers = [k for k in after if k not in dict(poisoned.named_parameters())]
    assert states_equal({k: after[k] for k in buffers}, {k: before[k] for k in buffers})


def test_scrub_separates_forget_from_retain(tiny_base):
    p = tiny_base.poisoning
    teacher = tiny_base.model("poisoned")
    model, _, _ = run_method(tiny_base, "scrub", (0.3,), lr=1.0e-4, msteps=1)
    assert kl(teacher, model, p.forget_set) > 2 * kl(teacher, model, p.retain)


def test_scrub_max_step_raises_forget_kl_more_than_min_step(tiny_base):
    data = unlearn_data(tiny_base)
    f, r = data.forget, data.retain
    teacher = frozen_copy(tiny_base.model("poisoned"))
    moved = {}
    for which in ("max", "min"):
        student = tiny_base.model("poisoned").train()
        opt = optimizer(student, data, 1.0e-2)
        if which == "max":
            scrub.max_step(student, teacher, opt, f.x[:64], T=4.0)
        else:
            scrub.min_step(student, teacher, opt, r.x[:64], r.y[:64], T=4.0, alpha=0.001, gamma=0.99)
        moved[which] = kl(teacher, student, f)
    assert moved["max"] > 2 * moved["min"] and moved["max"] > 0


def test_salun_updates_only_masked_parameters(tiny_base):
    data = unlearn_data(tiny_base)
    poisoned = tiny_base.model("poisoned")
    ratio = 0.3
    mask = salun.top_mask(salun.saliency(poisoned, data.forget, data.batch_size), ratio)
    total = sum(m.numel() for m in mask.values())
    assert sum(int(m.sum()) for m in mask.values()) == int(total * ratio)
    model, _, _ = run_method(tiny_base, "salun", (0.1,), lr=0.05, mask_ratio=ratio)
    before, after = tiny_base.poisoned, model.state_dict()
    moved = 0
    for name, m in mask.items():
        m = m.view_as(before[name])
        assert torch.equal(after[name][~m], before[name][~m]), name
        moved += int((after[name][m] != before[name][m]).sum())
    assert moved > 0.5 * int(total * ratio)


def test_l1_sparse_penalty_shrinks_the_l1_norm(tiny_base):
    def l1(model):
        return sum(float(p.detach().abs().sum()) for p in model.parameters())

    plain, _, _ = run_method(tiny_base, "l1_sparse", (0.1,), gamma=0.0)
    sparse, _, _ = run_method(tiny_base, "l1_sparse", (0.1,), gamma=1.0e-3, decay_fraction=0.2)
    assert l1(sparse) < l1(plain) - 1.0


def test_fisher_forget_is_reported_only_at_checkpoints_at_or_above_its_cost(tiny_base):
    assert _methods.kind(methods.get("fisher_forget")) == "fixed"
    cost = 3 * len(tiny_base.poisoning.retain)  # one per-example gradient per retain example
    rng = torch.get_rng_state()
    model, budget, seen = run_method(tiny_base, "fisher_forget", (0.05, 0.2, 0.3), alpha=1.0e-12)
    assert torch.equal(torch.get_rng_state(), rng)
    assert budget.over_budget == [0.05] and [(f, u) for f, u, _ in seen] == [(0.2, cost), (0.3, cost)]
    assert not states_equal(model.state_dict(), tiny_base.poisoned)
    # below its cost at every checkpoint: nothing is reported, nothing computed, nothing spent
    model, budget, seen = run_method(tiny_base, "fisher_forget", (0.05, 0.1))
    assert not seen and budget.over_budget == [0.05, 0.1] and budget.spent == 0
    assert states_equal(model.state_dict(), tiny_base.poisoned)


def test_fisher_forget_noise_follows_the_per_example_fisher(tiny_base):
    data = unlearn_data(tiny_base)
    model = tiny_base.model("poisoned")
    few = data.retain.subset(torch.arange(5))
    fisher = fisher_forget.retain_fisher(model, few)
    for name, p in model.named_parameters():  # vmap'd per-example gradients = one backward per example
        naive = torch.zeros_like(p)
        for i in range(5):
            model.zero_grad()
            F.cross_entropy(model(few.x[i:i + 1]), few.y[i:i + 1]).backward()
            naive += p.grad.pow(2) / 5
        torch.testing.assert_close(fisher[name], naive)
    noisy = tiny_base.model("poisoned")
    fisher_forget.add_noise(noisy, fisher, 1.0e-8, data.gen(1))
    gen = data.gen(1)
    for name, p in model.named_parameters():
        n = torch.randn(p.shape, generator=gen)
        expected = p + (1.0e-8 * fisher[name].clamp(min=1.0e-8).reciprocal().clamp(max=1.0e3)).pow(0.25) * n
        torch.testing.assert_close(dict(noisy.named_parameters())[name], expected)


def test_random_label_never_keeps_a_forget_label(tiny_base):
    data = unlearn_data(tiny_base)
    n = len(data.forget) + len(data.retain)
    gen = data.gen(1)
    epochs = [random_label.labelled_batch(data, torch.randperm(n, generator=data.gen(0)), gen) for _ in range(3)]
    for x, y, y_true, is_forget in epochs:
        assert is_forget.sum() == len(data.forget)
        assert (y[is_forget] != y_true[is_forget]).all()  # every forget point gets another class
        assert torch.equal(y[~is_forget], y_true[~is_forget])  # retain labels are kept
        assert ((y >= 0) & (y < data.num_classes)).all()
    fresh = [y[is_forget] for _, y, _, is_forget in epochs]  # same permutation: same order each epoch
    assert (fresh[0] != fresh[1]).float().mean() > 0.5  # relabelled afresh each epoch
    assert len(torch.unique(torch.cat(fresh))) == data.num_classes


def test_random_label_unlearns_the_forget_labels(tiny_base):
    f = tiny_base.poisoning.forget_set
    model, _, _ = run_method(tiny_base, "random_label", (0.2,), lr=0.05)
    assert mean_loss(model, f) > mean_loss(tiny_base.model("poisoned"), f) + 0.5


def test_bad_teacher_moves_forget_outputs_toward_the_random_teacher(tiny_base):
    data = unlearn_data(tiny_base)
    poisoned = tiny_base.model("poisoned")
    bad = bad_teacher.random_teacher(poisoned, data.gen(bad_teacher.TEACHER_STREAM))
    rng = torch.get_rng_state()
    model, _, _ = run_method(tiny_base, "bad_teacher", (0.1,), lr=1.0e-3)
    assert torch.equal(torch.get_rng_state(), rng)
    assert kl(bad, model, data.forget) < 0.5 * kl(bad, poisoned, data.forget)
    assert kl(poisoned, model, data.retain) < kl(poisoned, model, data.forget)  # retain stays near θ_poisoned


@pytest.mark.parametrize("name", ["eu_k", "cf_k"])
def test_k_outside_the_model_is_one_clear_error(tiny_base, name):
    with pytest.raises(ValueError, match="k must be an integer in 1..4"):
        run_method(tiny_base, name, (0.02,), k=5)
