"""A seeded random-mutation probe of every bundled experiment file: a value replaced by one of another type
(list, mapping, bool, string, null, a negative, huge or non-finite number), a key deleted, an unknown key
added, at the top level and nested (profiles included). Each mutated document must load or be refused with
one SweeperError line naming the file: never a traceback, never a message without the file's name."""
import copy
import math
import random
from importlib import resources

import pytest

from sweeper import config, yamlio
from sweeper.errors import SweeperError

SEED = 19
PER_FILE = 20  # random ones, plus one per top-level key: x 12 bundled files, ~400 mutations in a few seconds
VALUES = [[], ["x"], [1, [2]], {}, {"k": 1}, True, False, "x", "8", "", None, -1, -0.5, 10**30, 1e308,
          math.nan, math.inf]
UNKNOWN = "zz_unknown"


def _paths(node, prefix=()):
    """Every path into the document: keys of mappings, indices of lists, depth first."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


def _containers(doc):
    """Paths of the mappings in the document (the root is ()): where an unknown key can be added."""
    return [()] + [p for p in _paths(doc) if isinstance(_at(doc, p), dict)]


def _at(doc, path):
    for key in path:
        doc = doc[key]
    return doc


def mutate(doc: dict, rng: random.Random) -> tuple[dict, str, tuple]:
    """One mutation of `doc` (a copy), what it did, and the path it touched."""
    doc = copy.deepcopy(doc)
    kind = rng.choice(["replace", "replace", "replace", "delete", "add"])
    if kind == "add":
        path = rng.choice(_containers(doc))
        _at(doc, path)[UNKNOWN] = rng.choice(VALUES)
        return doc, f"add {'.'.join(map(str, (*path, UNKNOWN)))}", (*path, UNKNOWN)
    path = rng.choice(list(_paths(doc)))
    parent = _at(doc, path[:-1])
    if kind == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
        return doc, f"delete {'.'.join(map(str, path))}", path
    value = copy.deepcopy(rng.choice(VALUES))
    parent[path[-1]] = value
    return doc, f"{'.'.join(map(str, path))} = {value!r}", path


def mutations(doc: dict, rng: random.Random, n: int):
    """Each top-level key replaced once (the keys a hand-written check most easily forgets), then `n` random
    mutations anywhere."""
    for key in doc:
        mutated = copy.deepcopy(doc)
        mutated[key] = copy.deepcopy(rng.choice(VALUES))
        yield mutated, f"{key} = {mutated[key]!r}", (key,)
    for _ in range(n):
        yield mutate(doc, rng)


def _profile(path: tuple) -> str | None:
    """A mutation inside `profiles.NAME` is read with that profile: otherwise it would go unread."""
    return path[1] if len(path) >= 2 and path[0] == "profiles" and isinstance(path[1], str) else None


def escapes(name: str, n: int = PER_FILE, seed: int = SEED) -> list[str]:
    """The mutations of bundled file `name` that escape as anything but one line naming the file."""
    where = f"{name}.yaml"
    doc = yamlio.load((resources.files("sweeper.experiments") / where).read_text())
    rng = random.Random(f"{seed}/{name}")
    bad = []
    for mutated, what, path in mutations(doc, rng, n):
        try:
            config.parse(mutated, where, _profile(path))
        except SweeperError as e:
            text = str(e)
            if "\n" in text or where not in text:
                bad.append(f"{what}: message {text!r}")
        except Exception as e:  # noqa: BLE001 - exactly what this probe looks for
            bad.append(f"{what}: {type(e).__name__}: {e}")
    return bad


@pytest.mark.parametrize("name", config.bundled())
def test_every_mutation_loads_or_is_one_line_naming_the_file(name):
    bad = escapes(name)
    assert not bad, "\n".join(bad)


def test_the_probe_mutates_at_every_depth():
    """The probe is only worth its name if it reaches nested keys, list elements and every kind of change."""
    doc = yamlio.load((resources.files("sweeper.experiments") / "all_attacks.yaml").read_text())
    rng = random.Random(SEED)
    done = [mutate(doc, rng) for _ in range(200)]
    assert {1, 2, 3, 4, 5} <= {len(path) for _, _, path in done}
    assert any(isinstance(key, int) for _, _, path in done for key in path)  # inside a list
    assert {what.split()[0] for _, what, _ in done} >= {"add", "delete"} and any(" = " in w for _, w, _ in done)
    assert all(repr(mutated) != repr(doc) for mutated, _, _ in done)  # repr: False == 0, yet a change
