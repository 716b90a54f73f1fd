"""Shared fixtures: a tiny digits scenario (seconds to train) and the quickstart scenario, each cached
once per test session in a temporary base directory."""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from sweeper import config  # noqa: E402
from sweeper.basecache import base_models  # noqa: E402
from sweeper.scenario import Scenario  # noqa: E402
from sweeper.training import Recipe  # noqa: E402

TINY = Scenario(model_params={"width": 8}, attack_params={"fraction": 0.2, "eps": 1.0},
                recipe=Recipe(epochs=8))


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # as inside a Ray trial; keeps CPU results bit-reproducible


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("base"))


@pytest.fixture(scope="session")
def tiny_scenario():
    return TINY


@pytest.fixture(scope="session")
def tiny_base(base_dir):
    return base_models(TINY, 0, base_dir)


@pytest.fixture(scope="session")
def quickstart_scenario():
    return config.load("quickstart").scenario


@pytest.fixture(scope="session")
def quickstart_base(base_dir, quickstart_scenario):
    return base_models(quickstart_scenario, 0, base_dir)


@pytest.fixture(scope="session")
def ray_session():
    """One embedded Ray for the whole test session (starting one costs seconds)."""
    from sweeper import tuning

    started = tuning.start(num_cpus=2)
    yield
    if started:
        tuning.stop()
