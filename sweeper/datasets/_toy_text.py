"""A small synthetic movie-review corpus in the aclImdb layout, for tests and CPU runs without a network.

Maas et al. (ACL 2011) ship IMDb as `aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt`, one review per
file, ratings 7-10 positive and 1-4 negative, line breaks written as `<br />`. This writes the same
layout with templated reviews: each mixes neutral filler with sentiment sentences, most (not all) of the
review's own polarity, so a classifier has something to learn but the task is not one keyword. The
corpus is a function of the seed only (Python's `random.Random`, whose output is fixed across versions
for `random()`, `randrange`, `choice`, `shuffle` with an int seed)."""
from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path

from ..errors import SweeperError

SUBJECTS = ("the plot", "the acting", "the director", "the soundtrack", "the script", "the cast", "the ending",
            "the camera work", "the dialogue", "the pacing", "the lead actress", "the villain")
WORDS = {
    "pos": ("wonderful", "brilliant", "excellent", "moving", "superb", "delightful", "charming", "great",
            "touching", "gripping", "beautiful", "clever"),
    "neg": ("terrible", "boring", "awful", "dull", "horrible", "weak", "painful", "poor", "bland", "clumsy",
            "ugly", "pointless"),
}
OPINIONS = ("{s} was {a}.", "i thought {s} felt {a}.", "honestly, {s} is {a} and {b}.", "{s} is simply {a}.",
            "what a {a} film, and {s} was {b} too.", "overall i found it {a}.")
FILLER = ("i watched it on a sunday with friends.", "it runs about two hours.", "the film is set in a small town.",
          "my brother recommended it to me.", "it was released a few years ago.", "there is a long scene at a train station.",
          "the story follows a family over one summer.", "i saw it in a half empty cinema.",
          "it is based on a novel i have not read.", "the trailer gives away most of the story.")
RATINGS = {"pos": (7, 8, 9, 10), "neg": (1, 2, 3, 4)}  # the aclImdb naming: <id>_<rating>.txt
MIXED = 0.3  # chance that one opinion sentence has the other polarity (reviews are rarely one-sided)


def review(rng: random.Random, label: str) -> str:
    other = "neg" if label == "pos" else "pos"
    polarities = [label] * rng.randint(2, 4) + ([other] if rng.random() < MIXED else [])
    sentences = [_opinion(rng, p) for p in polarities] + rng.sample(FILLER, rng.randint(1, 3))
    rng.shuffle(sentences)
    breaks = rng.random() < 0.3  # real reviews carry HTML line breaks; the loader must strip them
    return (" <br /><br />" if breaks else " ").join(sentences)


def _opinion(rng: random.Random, polarity: str) -> str:
    a, b = rng.sample(WORDS[polarity], 2)
    return rng.choice(OPINIONS).format(s=rng.choice(SUBJECTS), a=a, b=b)


def write_toy_imdb(folder: str | Path, *, train_per_class: int = 300, test_per_class: int = 100,
                   seed: int = 0) -> Path:
    """Write `folder`/aclImdb/{train,test}/{pos,neg}/<i>_<rating>.txt; returns the aclImdb folder.
    Refuses a folder that already holds an aclImdb/ (never overwrites someone's data); written in a
    temporary folder and renamed into place, so an interrupted run leaves no half corpus behind."""
    for name, n in (("train_per_class", train_per_class), ("test_per_class", test_per_class)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise SweeperError(f"make-toy-imdb: {name} must be an integer of at least 2, got {n!r}")
    root = Path(folder).expanduser() / "aclImdb"
    if root.exists():
        raise SweeperError(f"make-toy-imdb: {root} already exists; choose another folder")
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".aclImdb-", dir=root.parent))
    except OSError as e:
        raise SweeperError(f"make-toy-imdb: cannot write in {root.parent} ({e.strerror or e})") from None
    try:
        for stream, (split, n) in enumerate((("train", train_per_class), ("test", test_per_class))):
            _write_split(tmp / split, n, random.Random(seed * 1_000_003 + stream))  # disjoint streams of one seed
        os.rename(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _write_split(folder: Path, per_class: int, rng: random.Random) -> None:
    for label in ("neg", "pos"):
        out = folder / label
        out.mkdir(parents=True)
        for i in range(per_class):
            (out / f"{i}_{rng.choice(RATINGS[label])}.txt").write_text(review(rng, label), encoding="utf-8")
