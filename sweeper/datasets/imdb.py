"""IMDb movie reviews (Maas, Daly, Pham, Huang, Ng, Potts, "Learning Word Vectors for Sentiment Analysis",
ACL 2011: 25,000 train + 25,000 test reviews; labels neg = 0, pos = 1) from a local aclImdb folder, as
fixed-length token ids. Nothing is ever downloaded.

Layout: `<root>/aclImdb/{train,test}/{pos,neg}/*.txt` (the official tarball; `train/unsup` is ignored), or
root = the aclImdb folder itself. `sweeper make-toy-imdb DIR` writes a small synthetic corpus in it.

Splits (split seed 0, stratified, as the CIFAR loaders): test = the official test set, or a stratified
subsample of `n_test` of it; validation = `n_val` reviews carved from the official train set; train = the
rest, or a stratified subsample of `n_train` of it.

Tokens: `tokenizer: PATH` loads a pretrained fast tokenizer from a local folder
(`transformers.AutoTokenizer.from_pretrained(PATH, local_files_only=True)`); GPT-2's has no pad token,
so eos pads, as Hugging Face's GPT-2 sequence-classification examples do. By default a BPE tokenizer of
at most `vocab_size` entries is trained here with the `tokenizers` library on the train split's texts
only (lowercased, whitespace pre-tokenised, [PAD] = 0, [UNK] = 1). HTML line breaks (`<br />`) become
spaces. Every review becomes `max_len` int64 ids, truncated and right-padded; a model's attention mask
is `x != pad_id`. `DataSet.text` carries pad_id, vocab_size, max_len and `encode` (a phrase -> ids with
the same tokenizer, for trigger-phrase attacks).

Caching: tokenising once per process (a memo keyed by folder and parameters) and once per machine (a
file `imdb-<hash>.pt` under `<aclImdb>/.sweeper-cache/`, or the system temp folder where the data folder
is read-only, written atomically; the hash covers the parameters, the tokenizer, the `tokenizers`
version and each class folder's file count, total size and newest mtime)."""
from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from ..data import DataSet, Split
from ..errors import SweeperError
from ..params import Range
from ..registry import datasets

SPLIT_SEED = 0  # fixed for ever: changing it changes every cached base model's meaning
CACHE_VERSION = 1  # bump when tokenisation or splitting changes what a cache file means
CLASSES = ("neg", "pos")  # label = index
MODALITY = "text"  # `methods: all` on this data set picks the methods made for text too (npo, grad_diff)
PAD, UNK = "[PAD]", "[UNK]"
MEMO_SIZE = 2  # data sets kept in memory per process (a full IMDb at max_len 512 is ~400 MB of int64)
# n_val: one review per class at least (stratified); max_len: one token at least; vocab_size: more than the
# two special tokens. n_train / n_test default to None (all), so they are checked on load instead.
RANGES = {"n_val": Range(2), "max_len": Range(1), "vocab_size": Range(3)}
_MEMO: OrderedDict[str, DataSet] = OrderedDict()


@datasets.register("imdb")
def load(*, root: str | None = None, n_val: int = 2500, n_train: int | None = None, n_test: int | None = None,
         max_len: int = 256, tokenizer: str | None = None, vocab_size: int = 8000) -> DataSet:
    # n_val 2,500 = 10% of the official train set (a guess; the paper does not state its validation split);
    # max_len 256 and vocab_size 8,000: guesses that keep a CPU epoch short, not the paper's settings.
    folder = _folder(root)
    params = {"n_val": n_val, "n_train": n_train, "n_test": n_test, "max_len": max_len,
              "tokenizer": _tokenizer_path(tokenizer), "vocab_size": vocab_size}
    key = json.dumps([str(folder.resolve()), params], sort_keys=True)
    if key not in _MEMO:
        _MEMO[key] = _load(folder, **params)
        while len(_MEMO) > MEMO_SIZE:
            _MEMO.popitem(last=False)
    _MEMO.move_to_end(key)
    return _MEMO[key]


def check(*, root, n_val: int, n_train: int | None, n_test: int | None, max_len: int, tokenizer: str | None,
          vocab_size: int) -> None:
    """Run when an experiment file is read: the folder layout, the tokenizer folder and the split sizes
    (file counts only: nothing is read or tokenised), so a wrong folder is one line before anything runs."""
    folder = _folder(root)
    _tokenizer_path(tokenizer)
    counts = {split: sum(_count(folder / split / c) for c in CLASSES) for split in ("train", "test")}
    _plan(counts["train"], counts["test"], n_val, n_train, n_test, folder)


# -- the folder ---------------------------------------------------------------------------------------
def _folder(root) -> Path:
    """The aclImdb folder: `root`/aclImdb, or `root` itself when it holds train/ and test/."""
    if not isinstance(root, (str, os.PathLike)) or not str(root):
        raise SweeperError("dataset imdb needs root: the folder holding aclImdb/ (data_root: in the experiment "
                           "file, or --data-root DIR; `sweeper make-toy-imdb DIR` writes a small synthetic one)")
    root = Path(root).expanduser()
    for folder in (root / "aclImdb", root):
        if all((folder / s / c).is_dir() for s in ("train", "test") for c in CLASSES):
            return folder
    if not root.is_dir():
        raise SweeperError(f"dataset imdb: data folder {root} does not exist (expected {root}/aclImdb/"
                           "{train,test}/{pos,neg}/*.txt)")
    raise SweeperError(f"dataset imdb: {root} holds no aclImdb/{{train,test}}/{{pos,neg}}/ folders (the layout "
                       "of the official aclImdb_v1.tar.gz; `sweeper make-toy-imdb DIR` writes a small one)")


def _files(folder: Path) -> list[os.DirEntry]:
    """The reviews of one class folder, sorted by name: a fixed order whatever the file system lists."""
    return sorted((e for e in os.scandir(folder) if e.name.endswith(".txt") and e.is_file()), key=lambda e: e.name)


def _count(folder: Path) -> int:
    return sum(1 for e in os.scandir(folder) if e.name.endswith(".txt"))


def _read(folder: Path, split: str) -> tuple[list[str], np.ndarray]:
    texts, labels = [], []
    for label, name in enumerate(CLASSES):
        for entry in _files(folder / split / name):
            try:
                texts.append(Path(entry.path).read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError) as e:
                raise SweeperError(f"dataset imdb: cannot read {entry.path} as UTF-8 text ({e})") from None
            labels.append(label)
    return texts, np.asarray(labels, dtype=np.int64)


def _fingerprint(folder: Path) -> list:
    """Per class folder: file count, total size, newest mtime. Cheap (one stat per file) and changes
    whenever a review is added, removed or rewritten."""
    out = []
    for split in ("train", "test"):
        for name in CLASSES:
            st = [e.stat() for e in _files(folder / split / name)]
            out.append([len(st), sum(s.st_size for s in st), max((s.st_mtime_ns for s in st), default=0)])
    return out


# -- split sizes --------------------------------------------------------------------------------------
def _plan(n_train_total: int, n_test_total: int, n_val: int, n_train: int | None, n_test: int | None,
          where: Path) -> None:
    k = len(CLASSES)
    if n_val > n_train_total - k:
        raise SweeperError(f"dataset imdb: n_val={n_val} leaves fewer than {k} of the {n_train_total} training "
                           f"reviews in {where} for training")
    for name, value, total in (("n_train", n_train, n_train_total - n_val), ("n_test", n_test, n_test_total)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not k <= value <= total):
            raise SweeperError(f"dataset imdb: {name} must be an integer in [{k}, {total}] (the reviews in "
                               f"{where}), got {value!r}")


def _indices(y_train: np.ndarray, y_test: np.ndarray, n_val: int, n_train: int | None,
             n_test: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split  # ~1 s to import: only when loading

    from ._cifar import _indices as carve  # the CIFAR loaders' val carve-out and train subsample, reused

    train, val = carve(y_train, n_val, n_train)
    test = np.arange(len(y_test))
    if n_test is not None and n_test < len(test):
        test, _ = train_test_split(test, train_size=n_test, stratify=y_test, random_state=SPLIT_SEED)
    return train, val, np.sort(test)


# -- tokenisation -------------------------------------------------------------------------------------
def _tokenizer_path(tokenizer) -> str | None:
    if tokenizer is None:
        return None
    path = Path(tokenizer).expanduser() if isinstance(tokenizer, (str, os.PathLike)) else None
    if path is None or not path.is_absolute() or not path.is_dir():  # absolute: trials run in other folders
        raise SweeperError(f"dataset imdb: tokenizer must be the absolute path of a local folder holding a "
                           f"saved tokenizer (save_pretrained), got {tokenizer!r}")
    return str(path)


def _clean(text: str) -> str:
    return text.replace("<br />", " ")  # aclImdb writes line breaks as HTML


def _pretrained(path: str):
    """(tokenizers.Tokenizer, pad id, vocab size) of a saved Hugging Face fast tokenizer, offline."""
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise SweeperError("dataset imdb: tokenizer: PATH needs transformers (pip install 'sweeper[llm]')") from None
    try:
        hf = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - missing files, bad JSON, unknown class: all one answer
        raise SweeperError(f"dataset imdb: cannot load a tokenizer from {path} ({type(e).__name__}: {e})") from None
    backend = getattr(hf, "backend_tokenizer", None)
    if backend is None:
        raise SweeperError(f"dataset imdb: the tokenizer in {path} is not a fast tokenizer (no tokenizer.json)")
    pad = hf.pad_token_id if hf.pad_token_id is not None else hf.eos_token_id  # GPT-2: eos pads
    if pad is None:
        raise SweeperError(f"dataset imdb: the tokenizer in {path} has neither a pad nor an eos token")
    backend.no_truncation()  # we truncate and pad ourselves, to max_len
    backend.no_padding()
    return backend, int(pad), backend.get_vocab_size(with_added_tokens=True)


def _train_bpe(texts: list[str], vocab_size: int):
    """A BPE tokenizer trained on `texts` (the train split only): [PAD] = 0, [UNK] = 1."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, UNK],
                                                       show_progress=False))
    return tok


def _ids(tok, texts: list[str], max_len: int, pad_id: int) -> torch.Tensor:
    """(n, max_len) int64: each text's ids truncated to max_len, right-padded with pad_id."""
    out = np.full((len(texts), max_len), pad_id, dtype=np.int64)
    for row, enc in zip(out, tok.encode_batch(texts, add_special_tokens=True)):
        ids = enc.ids[:max_len]
        row[:len(ids)] = ids
    return torch.from_numpy(out)


def encode(tok, phrase: str) -> list[int]:
    """A phrase as it reads in the middle of a text: a leading space, so byte-level BPE (GPT-2) gives the
    word-initial tokens it would inside a review; whitespace pre-tokenisers ignore the space."""
    return list(tok.encode(" " + phrase, add_special_tokens=False).ids)


def _import_tokenizers() -> None:
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        raise SweeperError("dataset imdb needs the tokenizers library (pip install 'sweeper[llm]')") from None


# -- building, caching --------------------------------------------------------------------------------
def _load(folder: Path, **params) -> DataSet:
    _import_tokenizers()
    import tokenizers

    key = hashlib.sha256(json.dumps({
        "version": CACHE_VERSION, "params": params, "files": _fingerprint(folder), "tokenizers": tokenizers.__version__,
        "tokenizer_files": _fingerprint_tokenizer(params["tokenizer"]),
    }, sort_keys=True).encode()).hexdigest()[:20]
    cached = _read_cache(folder, key)
    state = cached if cached is not None else _build(folder, **params)
    if cached is None:
        _write_cache(folder, key, state)
    return _dataset(state, params)


def _fingerprint_tokenizer(path: str | None) -> list:
    if path is None:
        return []
    return sorted([e.name, e.stat().st_size, e.stat().st_mtime_ns] for e in os.scandir(path) if e.is_file())


def _build(folder: Path, *, n_val, n_train, n_test, max_len, tokenizer, vocab_size) -> dict:
    train_texts, y_train = _read(folder, "train")
    test_texts, y_test = _read(folder, "test")
    _plan(len(y_train), len(y_test), n_val, n_train, n_test, folder)
    train, val, test = _indices(y_train, y_test, n_val, n_train, n_test)
    clean = lambda texts, idx: [_clean(texts[i]) for i in idx]  # noqa: E731
    if tokenizer is None:
        tok = _train_bpe(clean(train_texts, train), vocab_size)
        pad_id, spec = tok.token_to_id(PAD), tok.to_str()
    else:
        tok, pad_id, _ = _pretrained(tokenizer)
        spec = ""  # reloaded from its folder
    state = {"tokenizer": spec, "pad_id": pad_id}
    for name, texts, y, idx in (("train", train_texts, y_train, train), ("val", train_texts, y_train, val),
                                ("test", test_texts, y_test, test)):
        state[f"{name}_x"] = _ids(tok, clean(texts, idx), max_len, pad_id)
        state[f"{name}_y"] = torch.from_numpy(y[idx])
    return state


def _dataset(state: dict, params: dict) -> DataSet:
    if params["tokenizer"] is None:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_str(state["tokenizer"])
        vocab = tok.get_vocab_size(with_added_tokens=True)
    else:
        tok, _, vocab = _pretrained(params["tokenizer"])
    text = {"pad_id": int(state["pad_id"]), "vocab_size": int(vocab), "max_len": params["max_len"],
            "encode": functools.partial(encode, tok)}
    split = lambda name: Split(state[f"{name}_x"], state[f"{name}_y"])  # noqa: E731
    return DataSet("imdb", split("train"), split("val"), split("test"), len(CLASSES), (0.0,), (1.0,), text)


def _cache_dirs(folder: Path) -> list[Path]:
    return [folder / ".sweeper-cache", Path(tempfile.gettempdir()) / "sweeper-imdb-cache"]


def _read_cache(folder: Path, key: str) -> dict | None:
    for d in _cache_dirs(folder):
        path = d / f"imdb-{key}.pt"
        if not path.is_file():
            continue
        try:
            return torch.load(path, weights_only=True)  # tensors, ints and a string: nothing runs on load
        except Exception as e:  # noqa: BLE001 - a truncated or foreign file: tokenise again
            warnings.warn(f"ignoring unreadable token cache {path} ({type(e).__name__})", stacklevel=3)
    return None


def _write_cache(folder: Path, key: str, state: dict) -> None:
    """Atomically (temp file + rename) into the first cache folder that takes it; a cache that cannot be
    written costs only time, so failures pass silently."""
    for d in _cache_dirs(folder):
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=d, prefix=f".imdb-{key}-", suffix=".tmp")
        except OSError:
            continue
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(state, f)
            os.replace(tmp, d / f"imdb-{key}.pt")
            return
        except OSError:
            Path(tmp).unlink(missing_ok=True)
