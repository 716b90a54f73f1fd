import pytest

from sweeper.errors import SweeperError
from sweeper.registry import Registry, attacks, datasets, methods, models


def test_duplicate_name_raises():
    r = Registry("thing")
    r.register("a")(object())
    with pytest.raises(ValueError, match="registered twice"):
        r.register("a")(object())


def test_unknown_name_lists_known_ones():
    r = Registry("thing")
    r.register("alpha")(1)
    r.register("beta")(2)
    with pytest.raises(SweeperError, match="unknown thing 'gamma'; known: alpha, beta"):
        r.get("gamma")


def test_registries_hold_the_core_entries():
    assert {"none", "retrain", "gd", "ngd", "ga", "neggrad_plus"} <= set(methods.names())
    assert "gaussian" in attacks.names() and "digits" in datasets.names() and "small_cnn" in models.names()
