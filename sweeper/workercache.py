"""Per-process caches. A Ray worker is reused across trials (reuse_actors, Ray's task worker pool), so each
loads a data set and a (scenario, seed)'s base models once instead of once per trial. Bounded: a CIFAR
entry holds a poisoned copy of the training set (600 MB). A module of its own because both the scenario
(its data sets) and the base-model cache (its entries) use it, and neither may import the other's side.

The bound: `SWEEPER_WORKER_CACHE` entries per cache when set (the user's cap, e.g. for memory), else at
least DEFAULT entries and as many as the sweep's trials say it uses (`fit`: its seeds × discovery levels),
so that a worker that meets every seed of a sweep loads each once."""
from __future__ import annotations

import os
from collections import Counter, OrderedDict

DEFAULT = 4
_SET = os.environ.get("SWEEPER_WORKER_CACHE")
WORKER_CACHE = int(_SET) if _SET else DEFAULT  # entries per cache, per process
MISSES: Counter = Counter()  # id(cache) -> entries made: how often this process loaded something


def fit(entries: int) -> None:
    """Make room for `entries` per cache (a sweep's seeds × levels), unless the user set the bound."""
    global WORKER_CACHE
    if not _SET and entries > WORKER_CACHE:
        WORKER_CACHE = entries


def remember(cache: OrderedDict, key, make):
    """`cache[key]`, made on a miss; least recently used entries beyond WORKER_CACHE are dropped."""
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    MISSES[id(cache)] += 1
    value = cache[key] = make()
    while len(cache) > max(1, WORKER_CACHE):
        cache.popitem(last=False)
    return value
