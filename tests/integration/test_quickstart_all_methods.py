"""The quickstart's content at the tiny profile: every registered method gets a row at every budget."""
import pytest

from sweeper import config, sweep

pytestmark = pytest.mark.slow


def test_every_method_has_a_row_at_every_budget(tmp_path, ray_session):
    exp = config.load("quickstart", "tiny")
    result = sweep.run_sweep(exp, workdir=tmp_path, trials=1, progress=lambda _: None)
    s = result.summary
    searched = s[~s.method.isin(["none", "retrain"])]
    assert set(searched.method) == set(config.searchable_methods("image"))
    for method, rows in searched.groupby("method"):
        assert sorted(rows.budget) == list(exp.budgets), method
        fixed = config.methods.get(method).__dict__.get("KIND") == "fixed"
        assert set(rows.status) <= ({"ok", "accuracy_violated", "diverged", "over_budget"} if fixed
                                    else {"ok", "accuracy_violated", "diverged"}), method
    assert set(s[s.method.isin(["none", "retrain"])].budget) == {0.0, 1.0}
