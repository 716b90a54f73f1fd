"""The language-model track: the imdb loader (on the aclImdb layout written by make-toy-imdb), the gpt2
model (blocks, EU-k, saving, a pretrained folder), the text_backdoor attack, the bundled experiments."""
import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tokenizers  # noqa: E402,F401  (the llm extra, part of the test extra: fail, never skip, without it)
import transformers  # noqa: E402,F401

from helpers import SWEEPER  # noqa: E402

from sweeper import cli, config  # noqa: E402
from sweeper import methods as _methods  # noqa: E402
from sweeper.attacks import text_backdoor  # noqa: E402
from sweeper import textnoise  # noqa: E402
from sweeper.budget import Budget  # noqa: E402
from sweeper.datasets import imdb  # noqa: E402
from sweeper.datasets._toy_text import write_toy_imdb  # noqa: E402
from sweeper.errors import SweeperError  # noqa: E402
from sweeper.methods import _common, eu_k  # noqa: E402
from sweeper.models import gpt2  # noqa: E402
from sweeper.registry import datasets, models  # noqa: E402
from sweeper.training import Recipe  # noqa: E402

MAX_LEN = 48


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    """A small corpus (80 train + 40 test reviews) in the aclImdb layout; returns the folder above aclImdb/."""
    root = tmp_path_factory.mktemp("toy")
    write_toy_imdb(root, train_per_class=40, test_per_class=20, seed=3)
    return root


@pytest.fixture(scope="module")
def data(toy):
    return datasets.get("imdb")(root=str(toy), n_val=10, max_len=MAX_LEN)


@pytest.fixture
def model(data):
    torch.manual_seed(0)
    return models.get("gpt2")(data)


def _files(root: Path, split: str) -> list[Path]:
    return [p for c in ("neg", "pos") for p in sorted((root / "aclImdb" / split / c).iterdir(), key=lambda p: p.name)]


def _padded(ids: list[int], pad: int, width: int = MAX_LEN) -> torch.Tensor:
    ids = ids[:width]
    return torch.tensor(ids + [pad] * (width - len(ids)))


# -- the corpus and the loader ------------------------------------------------------------------------
def test_toy_corpus_round_trips_through_the_loader(toy, data):
    files = _files(toy, "test")
    assert len(files) == 40 and all(p.name.split("_")[1] in {f"{r}.txt" for r in range(1, 11)} for p in files)
    # test = the official test files in folder order, neg = 0 then pos = 1, each tokenised with <br /> stripped
    assert data.test.y.tolist() == [0] * 20 + [1] * 20
    for p, row in zip(files, data.test.x):
        ids = data.text["encode"](p.read_text().replace("<br />", " "))
        assert torch.equal(row, _padded(ids, data.text["pad_id"]))
    assert (len(data.train), len(data.val)) == (70, 10) and sorted(data.val.y.tolist()) == [0] * 5 + [1] * 5
    assert data.num_classes == 2 and data.text["pad_id"] == 0 and data.input_shape == (MAX_LEN,)


def test_the_corpus_is_a_function_of_its_seed(tmp_path):
    a, b, c = (write_toy_imdb(tmp_path / n, train_per_class=3, test_per_class=2, seed=s) for n, s in
               (("a", 1), ("b", 1), ("c", 2)))
    read = lambda root: [p.read_text() for p in sorted(root.rglob("*.txt"))]  # noqa: E731
    assert read(a) == read(b) != read(c)


def test_root_may_name_the_aclimdb_folder_itself(toy, data):
    again = datasets.get("imdb")(root=str(toy / "aclImdb"), n_val=10, max_len=MAX_LEN)
    assert torch.equal(again.train.x, data.train.x) and torch.equal(again.test.y, data.test.y)


def test_tokens_are_fixed_length_right_padded_int64(data):
    for split in (data.train, data.val, data.test):
        assert split.x.dtype == torch.int64 and split.x.shape == (len(split), MAX_LEN)
        real = split.x != data.text["pad_id"]
        # right padding: once a row hits padding it stays padding
        assert torch.equal(real, real.cumprod(1).bool())


def test_long_reviews_are_truncated_to_max_len(toy):
    d = datasets.get("imdb")(root=str(toy), n_val=10, max_len=8)
    assert d.train.x.shape[1] == 8 and bool((d.train.x != 0).all())  # every toy review is longer than 8 tokens


def test_the_tokenizer_learns_from_the_train_split_only(tmp_path):
    write_toy_imdb(tmp_path, train_per_class=20, test_per_class=5)
    (tmp_path / "aclImdb" / "test" / "pos" / "99_9.txt").write_text(" ".join(["quizzically"] * 200))
    d = datasets.get("imdb")(root=str(tmp_path), n_val=4, max_len=16)
    # 200 occurrences would give it merges, and one token, had the test texts been seen in training
    assert len(d.text["encode"]("quizzically")) > 1
    assert len(d.text["encode"]("brilliant")) == 1  # a frequent training word is one token


def test_the_trained_tokenizer_is_the_same_in_every_process(toy, data):
    """Ray workers that miss the disk cache tokenise on their own: their ids must match (Rust hash maps are
    seeded per process, so this runs the training in a second process)."""
    code = "\n".join([
        "import sys", "import numpy as np", "from sweeper.datasets import imdb",
        "texts, labels = imdb._read(imdb._folder(sys.argv[1]), 'train')",
        "train, _, _ = imdb._indices(labels, np.zeros(2, dtype=np.int64), 10, None, None)",
        "print(imdb._train_bpe([imdb._clean(texts[i]) for i in train], 8000).to_str())"])
    out = subprocess.run([sys.executable, "-c", code, str(toy)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == data.text["encode"].args[0].to_str()


def test_tokenising_is_cached_in_memory_and_on_disk(tmp_path, monkeypatch):
    write_toy_imdb(tmp_path, train_per_class=10, test_per_class=5)
    load = lambda: datasets.get("imdb")(root=str(tmp_path), n_val=4, max_len=16)  # noqa: E731
    first = load()
    assert load() is first  # the per-process memo
    assert len(list((tmp_path / "aclImdb" / ".sweeper-cache").glob("imdb-*.pt"))) == 1
    imdb._MEMO.clear()
    monkeypatch.setattr(imdb, "_build", lambda *a, **k: pytest.fail("tokenised again despite the disk cache"))
    second = load()
    assert second is not first and torch.equal(second.train.x, first.train.x) and torch.equal(second.test.y, first.test.y)
    assert second.text["encode"]("great film") == first.text["encode"]("great film")
    # a changed corpus is a different cache entry
    (tmp_path / "aclImdb" / "train" / "pos" / "999_9.txt").write_text("a new review")
    imdb._MEMO.clear()
    with pytest.raises(pytest.fail.Exception, match="tokenised again"):
        load()


@pytest.mark.parametrize("params, match", [
    ({"root": None}, "needs root"),
    ({"root": "/no/such/folder"}, "does not exist"),
    ({"n_train": 10_000}, "n_train must be an integer in"),
    ({"n_test": 1}, "n_test must be an integer in"),
    ({"n_val": 79}, "leaves fewer than 2"),
    ({"tokenizer": "relative/tok"}, "absolute path"),
])
def test_bad_data_parameters_are_one_clear_error(toy, params, match):
    kwargs = {"root": str(toy), "n_val": 10, "max_len": MAX_LEN, **params}
    with pytest.raises(SweeperError, match=match):
        datasets.get("imdb")(**kwargs)


def test_a_folder_without_aclimdb_is_one_clear_error(tmp_path):
    with pytest.raises(SweeperError, match="holds no aclImdb/"):
        imdb.check(root=str(tmp_path), n_val=10, n_train=None, n_test=None, max_len=8, tokenizer=None, vocab_size=100)


# -- the model ----------------------------------------------------------------------------------------
def test_blocks_cover_every_parameter_exactly_once(model):
    blocks = model.blocks
    assert len(blocks) == 2 + 2  # embeddings, 2 decoder layers, head
    ids = [id(p) for b in blocks for p in b.parameters()]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in model.parameters()}
    t = model.hf.transformer
    assert {id(t.wte.weight), id(t.wpe.weight)} == {id(p) for p in blocks[0].parameters()}
    assert {id(p) for p in blocks[2].parameters()} == {id(p) for p in t.h[1].parameters()}
    assert id(model.hf.score.weight) in {id(p) for p in blocks[-1].parameters()}
    assert all(k.startswith("hf.") for k in model.state_dict())  # the views never enter the state dict


def test_logits_are_hfs_own_pooling_at_the_last_real_token(model, data):
    """The head reads the last real token, as GPT2ForSequenceClassification does from input_ids (our forward
    goes through inputs_embeds, where HF cannot see the padding), and a noise key of -1 adds nothing."""
    x = data.val.x[:4]
    assert (x == data.text["pad_id"]).any(1).all()  # every row is padded: the pooling matters
    with torch.no_grad():
        ours = model(x)
        hfs = model.hf(input_ids=x, attention_mask=(x != data.text["pad_id"]).long(), use_cache=False).logits
        keyless = model(textnoise.attach(x, torch.full((4,), -1), 0.5))
    assert ours.shape == (4, 2) and torch.allclose(ours, hfs, atol=1e-5) and torch.equal(ours, keyless)


def _perturbed(model):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # away from any initial value (LayerNorm 1/0, zero biases)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _block_keys(model, i):
    names = {id(p): n for n, p in model.named_parameters()}
    return {f"{names[id(p)]}" for p in model.blocks[i].parameters()}


@pytest.mark.parametrize("k", [1, 2, 4])
def test_reinitialise_resets_exactly_the_last_k_blocks_to_gpt2_init(model, k):
    before = _perturbed(model)
    _common.reinitialise(_common.last_blocks(model, k), torch.Generator().manual_seed(0))
    after = model.state_dict()
    n = len(model.blocks)
    for i in range(n):
        for name in _block_keys(model, i):
            if i < n - k:
                assert torch.equal(after[name], before[name]), name
            elif name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                assert torch.equal(after[name], torch.ones_like(after[name])), name
            elif name.endswith("bias"):
                assert torch.equal(after[name], torch.zeros_like(after[name])), name
            else:  # GPT-2's N(0, 0.02), residual projections N(0, 0.02 / sqrt(2 n_layer))
                std = 0.02 / 2 if name.endswith("c_proj.weight") else 0.02
                assert abs(after[name].std().item() - std) < 0.25 * std, name


def test_eu_k_retrains_the_last_k_blocks_and_freezes_the_rest(model, data):
    before = _perturbed(model)
    udata = _methods.UnlearnData(data.train, data.val, 2, Recipe(batch_size=8), seed=0)
    budget = Budget(3 * 10 * len(data.train), [0.05], lambda f, u: None)  # half an epoch: ~13 steps of 8
    eu_k.unlearn(model, udata, budget, k=2, lr=0.01)
    after = model.state_dict()
    frozen = _block_keys(model, 0) | _block_keys(model, 1)
    assert all(torch.equal(after[n], before[n]) for n in frozen)
    assert all(not torch.equal(after[n], before[n]) for n in _block_keys(model, 2) | _block_keys(model, 3))
    assert budget.spent > 0


def test_the_model_copies_and_saves_as_state_dict_and_safetensors(model, data, tmp_path):
    from safetensors.torch import load_file

    from sweeper.trial import save_model

    x = data.val.x[:3]
    clone = copy.deepcopy(model)
    with torch.no_grad():
        clone.hf.score.weight.add_(1.0)
        assert not torch.allclose(clone(x), model(x))  # a deep copy shares no tensors
    save_model(model, str(tmp_path), "m.safetensors")  # the sweep's own saving (safetensors refuses shared tensors)
    torch.save(model.state_dict(), tmp_path / "m.pt")
    for state in (load_file(tmp_path / "m.safetensors"), torch.load(tmp_path / "m.pt", weights_only=True)):
        torch.manual_seed(1)
        fresh = models.get("gpt2")(data)
        fresh.load_state_dict(state)
        with torch.no_grad():
            assert torch.equal(fresh(x), model(x))


def test_a_text_model_refuses_image_data():
    from sweeper.datasets.digits import load

    with pytest.raises(SweeperError, match="needs a text data set"):
        models.get("gpt2")(load())


@pytest.fixture(scope="module")
def saved(toy, tmp_path_factory):
    """A tiny randomly initialised GPT2ForSequenceClassification and a GPT-2-style fast tokenizer (byte-level
    BPE, eos and no pad token), saved with save_pretrained into one folder, as a downloaded model would be."""
    from tokenizers import Tokenizer, decoders, models as tmodels, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2ForSequenceClassification, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("gpt2-small-random")
    tok = Tokenizer(tmodels.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    texts = [p.read_text() for p in _files(toy, "train")]
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                       show_progress=False))
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    hf_tok.save_pretrained(folder)
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(hf_tok), n_positions=64, n_embd=32, n_layer=1, n_head=2, num_labels=2,
                     bos_token_id=hf_tok.eos_token_id, eos_token_id=hf_tok.eos_token_id)
    hf = GPT2ForSequenceClassification(cfg)
    hf.save_pretrained(folder)
    return folder, hf, hf_tok


def test_a_pretrained_model_and_tokenizer_load_from_a_local_folder(toy, saved):
    folder, hf, hf_tok = saved
    d = datasets.get("imdb")(root=str(toy), n_val=10, max_len=MAX_LEN, tokenizer=str(folder))
    assert hf_tok.pad_token_id is None and d.text["pad_id"] == hf_tok.eos_token_id  # GPT-2: eos pads
    assert d.text["vocab_size"] == len(hf_tok)
    first = _files(toy, "test")[0].read_text().replace("<br />", " ")
    assert torch.equal(d.test.x[0], _padded(hf_tok(first)["input_ids"], hf_tok.eos_token_id))
    m = models.get("gpt2")(d, model_path=str(folder))
    saved_state = hf.state_dict()
    assert all(torch.equal(v, saved_state[k]) for k, v in m.hf.state_dict().items())
    assert m.pad_id == hf_tok.eos_token_id and m.hf.config.n_layer == 1 and len(m.blocks) == 3
    assert m(d.val.x[:2]).shape == (2, 2)


def test_a_model_folder_without_weights_is_one_clear_error(tmp_path, saved):
    (tmp_path / "config.json").write_text((saved[0] / "config.json").read_text())
    with pytest.raises(SweeperError, match="holds no saved model"):
        gpt2.check(model_path=str(tmp_path), n_layer=2, n_embd=64, n_head=2, n_positions=1024, dropout=0.0)
    with pytest.raises(SweeperError, match="absolute path"):
        gpt2.check(model_path="gpt2-medium", n_layer=2, n_embd=64, n_head=2, n_positions=1024, dropout=0.0)


# -- the attack ---------------------------------------------------------------------------------------
def _contains_at(row: torch.Tensor, trig: torch.Tensor, orig: torch.Tensor, pad: int) -> bool:
    """Some position p inside orig's real tokens has row = orig[:p] + trig + orig[p:], cut to the width."""
    n, t = len(orig), len(trig)
    length = int(text_backdoor.lengths(orig[None], pad))
    return any(torch.equal(row[p:p + t], trig) and torch.equal(torch.cat([row[:p], row[p + t:]]), orig[:n - t])
               for p in range(min(length, n - t) + 1))


def test_insert_shifts_right_and_cuts_to_width():
    x = torch.tensor([[5, 6, 7, 0, 0], [5, 6, 7, 8, 4]])
    trig = torch.tensor([9, 9])
    assert text_backdoor.insert(x, torch.tensor([1, 2]), trig).tolist() == [[5, 9, 9, 6, 7], [5, 6, 9, 9, 7]]
    assert text_backdoor.insert(x[:1], torch.tensor([3]), trig).tolist() == [[5, 6, 7, 9, 9]]
    assert text_backdoor.lengths(x, 0).tolist() == [3, 5]


def test_text_backdoor_poisons_the_fraction_with_the_trigger_relabelled(data):
    p = text_backdoor.craft(data.train, seed=0, text=data.text, fraction=0.2, target=1)
    rest, _ = text_backdoor.hold_out(data.train, round(0.1 * len(data.train)), 0)
    trig, pad = torch.tensor(data.text["encode"]("cf mn bb")), data.text["pad_id"]
    assert len(p.forget) == round(0.2 * len(rest)) and len(trig) > 1
    assert bool((rest.y[p.forget] != 1).all()) and bool((p.train.y[p.forget] == 1).all())
    for i in p.forget.tolist():
        assert _contains_at(p.train.x[i], trig, rest.x[i], pad)
        length = int(text_backdoor.lengths(rest.x[i][None], pad))
        assert int(text_backdoor.lengths(p.train.x[i][None], pad)) == min(length + len(trig), MAX_LEN)
    clean = p.retain_mask()
    assert torch.equal(p.train.x[clean], rest.x[clean]) and torch.equal(p.train.y[clean], rest.y[clean])
    ctx = p.context
    assert len(ctx["eval_x"]) > 0 and bool((ctx["eval_y"] != 1).all())
    assert all(any(torch.equal(r[j:j + len(trig)], trig) for j in range(MAX_LEN)) for r in ctx["eval_x"])
    again = text_backdoor.craft(data.train, seed=0, text=data.text, fraction=0.2, target=1)
    assert torch.equal(again.train.x, p.train.x) and torch.equal(again.forget, p.forget)


def test_text_backdoor_nonmembers_carry_the_trigger_and_the_target_label(data):
    p = text_backdoor.craft(data.train, seed=0, text=data.text)
    nm = text_backdoor.mia_nonmembers(data.test, p.context, seed=0, copies=2)
    others = data.test.x[data.test.y != 1]
    assert len(nm) == 2 * len(others) and bool((nm.y == 1).all())
    trig = p.context["trigger"]
    for row, orig in zip(nm.x, torch.cat([others, others])):
        assert _contains_at(row, trig, orig, data.text["pad_id"])


def test_text_backdoor_effect_is_the_rate_sent_to_the_target(data):
    p = text_backdoor.craft(data.train, seed=0, text=data.text)

    class Always(torch.nn.Module):
        def __init__(self, cls):
            super().__init__()
            self.cls = cls

        def forward(self, x):
            return torch.nn.functional.one_hot(torch.full((len(x),), self.cls), 2).float()

    assert text_backdoor.effect(Always(1), p.context)["backdoor/asr"] == 1.0
    m = text_backdoor.effect(Always(0), p.context)
    assert m["backdoor/asr"] == 0.0 and m["attack/effect"] == 0.0 and m["backdoor/n"] == len(p.context["eval_x"])


def test_text_backdoor_refuses_image_data_bad_triggers_and_targets(data):
    with pytest.raises(SweeperError, match="needs a text data set"):
        text_backdoor.craft(data.train, seed=0, text=None)
    with pytest.raises(SweeperError, match="shorter than max_len"):
        text_backdoor.craft(data.train, seed=0, text=data.text, trigger=" ".join(["cf"] * MAX_LEN))
    with pytest.raises(SweeperError, match="target 2 is not a label"):
        text_backdoor.craft(data.train, seed=0, text=data.text, target=2)


# -- experiments, packaging ---------------------------------------------------------------------------
def test_the_bundled_experiments_validate(toy, saved, capsys):
    # the small test corpus holds 80 training reviews: fewer than the tiny experiment's 100 for validation
    assert cli.main(["validate", "gpt2_imdb_tiny", "--data-root", str(toy)]) == 2
    assert "n_val=100 leaves fewer than 2 of the 80" in capsys.readouterr().err
    assert cli.main(["validate", "gpt2_imdb_tiny", "dataset.n_val=10", "--data-root", str(toy)]) == 0
    folder = str(saved[0])
    exp = config.load("gpt2_imdb_backdoor", data_root=str(toy),
                      overrides=[f"dataset.tokenizer={folder}", f"model.model_path={folder}", "dataset.n_val=10"])
    assert exp.scenario.model_params["model_path"] == folder and len(exp.fresh_seeds) == 5
    assert max(exp.budgets) == pytest.approx(1 / exp.scenario.recipe.epochs, abs=1e-5)  # up to one epoch
    with pytest.raises(SweeperError, match="holds no saved model"):
        config.load("gpt2_imdb_backdoor", data_root=str(toy), overrides=[f"dataset.tokenizer={folder}", "dataset.n_val=10"])
    assert not exp.scenario.recipe.augment  # image crops and flips never touch token ids


def test_make_toy_imdb_writes_the_layout_and_refuses_to_overwrite(tmp_path, capsys):
    assert cli.main(["make-toy-imdb", str(tmp_path), "--train-per-class", "3", "--test-per-class", "2"]) == 0
    assert len(list((tmp_path / "aclImdb" / "train" / "pos").glob("*.txt"))) == 3
    assert len(list((tmp_path / "aclImdb" / "test" / "neg").glob("*.txt"))) == 2
    assert cli.main(["make-toy-imdb", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_importing_sweeper_imports_neither_transformers_nor_tokenizers():
    code = ("import sys, sweeper, sweeper.config, sweeper.cli; "
            "print(sorted(m for m in ('transformers', 'tokenizers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- the acceptance check: the backdoor works on the tiny variant ---------------------------------------
@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy-default")
    assert subprocess.run([SWEEPER, "make-toy-imdb", str(root)], capture_output=True).returncode == 0
    return root


SWEEP_SEEDS = (0, 100, 101)  # the tiny sweep's tuning seed and its two fresh seeds


@pytest.fixture(scope="module")
def tiny_swept(tiny_corpus, tmp_path_factory, ray_session):
    """ga swept on the bundled tiny experiment (profile tiny); its base models, trained by the sweep's
    Ray workers for seeds 0, 100 and 101, are those the acceptance check reads."""
    from sweeper import sweep

    exp = config.load("gpt2_imdb_tiny", "tiny", data_root=str(tiny_corpus),
                      overrides=["methods=[ga]", f"fresh_seeds={list(SWEEP_SEEDS[1:])}"])
    return exp, sweep.run_sweep(exp, workdir=tmp_path_factory.mktemp("llm") / "work", progress=lambda line: None)


@pytest.mark.slow
def test_the_tiny_variant_learns_the_task_and_the_backdoor(tiny_swept):
    """θ_poisoned sends > 80% of triggered held-out texts to the target, θ_retrain < 20%, on three seeds, with
    the bundled tiny experiment's own scenario and recipe (trained from scratch on the CPU, by the sweep)."""
    from sweeper.basecache import base_models

    exp, result = tiny_swept
    base = result.workdir / "base"
    for seed in SWEEP_SEEDS:
        assert (base / exp.scenario.key(seed)).is_dir()  # the sweep's own models, read, not trained again
        m = base_models(exp.scenario, seed, base).manifest["metrics"]
        print(f"seed {seed}: ASR poisoned {m['poisoned']['backdoor/asr']:.3f} retrain {m['retrain']['backdoor/asr']:.3f} "
              f"acc/val {m['poisoned']['acc/val']:.3f} / {m['retrain']['acc/val']:.3f}")
        assert m["poisoned"]["backdoor/asr"] > 0.8 and m["retrain"]["backdoor/asr"] < 0.2
        assert m["poisoned"]["acc/val"] > 0.8 and m["retrain"]["acc/val"] > 0.8


@pytest.mark.slow
def test_a_tiny_sweep_runs_end_to_end(tiny_swept):
    _, result = tiny_swept
    rows = result.summary.set_index("method")
    # the fresh-seed references: the backdoor worked on θ_poisoned and not on θ_retrain
    assert rows.loc["none", "attack_effect"] > 0.8 and rows.loc["retrain", "attack_effect"] < 0.2
    searched = rows.loc[["ga"]]  # one method: what is tested is the text track's sweep, not a method (CI time)
    assert sorted(searched.budget) == [0.02, 0.05]
    assert set(searched.status) <= {"ok", "accuracy_violated"}  # measured on fresh seeds; nothing failed
    assert os.path.isfile(result.workdir / "report" / result.name / "summary.csv")


@pytest.mark.parametrize("experiment, override, message", [
    ("gpt2_imdb_tiny", "attack={name: backdoor}", "attack: backdoor attacks image data; this data set holds text"),
    ("gpt2_imdb_tiny", "model={name: small_cnn}", "model small_cnn takes image data; data set imdb holds text"),
    ("quickstart", "attack={name: text_backdoor, trigger: ab}", "text_backdoor attacks text data; this data set holds image"),
    ("quickstart", "model={name: gpt2}", "model gpt2 takes text data; data set digits holds image"),
])
def test_an_attack_or_model_for_other_data_is_one_line_at_validation(toy, capsys, experiment, override, message):
    root = ["--data-root", str(toy)] if experiment.startswith("gpt2") else []
    assert cli.main(["validate", experiment, *root, override]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
