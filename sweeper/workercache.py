"""Per-process caches. A Ray worker is reused across trials (reuse_actors, Ray's task worker pool), so each
loads a data set and a (scenario, seed)'s base models once instead of once per trial. Bounded: a CIFAR
entry holds a poisoned copy of the training set (600 MB). A module of its own because both the scenario
(its data sets) and the base-model cache (its entries) use it, and neither may import the other's side."""
from __future__ import annotations

import os
from collections import OrderedDict

WORKER_CACHE = int(os.environ.get("SWEEPER_WORKER_CACHE", "4"))  # entries per cache, per process


def remember(cache: OrderedDict, key, make):
    """`cache[key]`, made on a miss; least recently used entries beyond WORKER_CACHE are dropped."""
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = cache[key] = make()
    while len(cache) > max(1, WORKER_CACHE):
        cache.popitem(last=False)
    return value
