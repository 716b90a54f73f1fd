"""The base-model cache's keys and publishing: an entry's folder name never changes under a refactor (or
every cache on disk and in buckets would be rebuilt), and builders racing on one entry end up sharing it."""
import pytest
import torch
from conftest import TINY

from sweeper import config
from sweeper.scenario import BASE_VERSION, base_folder

# Computed with the code before the cache moved to sweeper/basecache.py (issue 19). A change here means
# every existing entry is orphaned: bump BASE_VERSION on purpose, never by accident.
QUICKSTART_KEYS = {0: "eef956df51456a75", 100: "1988c5fec8814b98"}
TINY_KEYS = {0: "5a4305748fabf622", 1: "08f4c51e6ae8f872", 100: "1df101ec4e618bc7"}


@pytest.fixture
def torch_release(monkeypatch):
    """The key names torch's release (a new one may change what training produces); pin the one the
    literal keys were computed under, so the test checks the key's recipe, not the installed torch."""
    monkeypatch.setattr(torch, "__version__", "2.14.1+cu130")


def test_base_version_is_unchanged():
    assert BASE_VERSION == 6


@pytest.mark.parametrize("seed", sorted(QUICKSTART_KEYS))
def test_quickstart_keys_are_unchanged(torch_release, seed, tmp_path):
    scenario = config.load("quickstart").scenarios[0]
    assert scenario.key(seed) == QUICKSTART_KEYS[seed]
    assert base_folder(scenario, seed, tmp_path) == tmp_path / QUICKSTART_KEYS[seed]


@pytest.mark.parametrize("seed", sorted(TINY_KEYS))
def test_tiny_keys_are_unchanged(torch_release, seed, tmp_path):
    assert TINY.key(seed) == TINY_KEYS[seed]
    assert base_folder(TINY, seed, tmp_path) == tmp_path / TINY_KEYS[seed]
