"""tuning.Pool: plain trials (references, fresh runs) in the slots Tune's trials leave free, with a real
embedded Ray and real trials."""
from sweeper import tuning


def test_the_pool_waits_for_free_slots_and_hands_every_result_over(ray_here, tiny_base, tiny_scenario, base_dir):
    def config(method):
        return {"scenario": tiny_scenario.as_dict(), "method": method, "base_dir": base_dir, "budgets": [0.02],
                "seeds": [0], "device": "cpu"}

    pool = tuning.Pool(2, device="cpu")
    got = {}
    pool.poll(busy=2)  # Tune's trials hold both slots: nothing starts
    for i, method in enumerate(["none", "retrain", "none", "no_such_method"]):
        pool.submit(config(method), lambda result, i=i: got.__setitem__(i, result))
    assert (len(pool.running), len(pool.queued)) == (0, 4)
    pool.poll(busy=1)  # one slot free
    assert (len(pool.running), len(pool.queued)) == (1, 3)
    pool.drain()  # tuning is over: every slot is the pool's
    assert not pool.running and not pool.queued and sorted(got) == [0, 1, 2, 3]
    assert got[0][0]["budget"] == 0.0 and got[1][0]["budget"] == 1.0
    assert got[0][0]["attack/effect"] == got[2][0]["attack/effect"]  # the same trial, run twice
    assert isinstance(got[3], str) and "no_such_method" in got[3]  # an error is its line, not an exception


def test_a_cell_without_fresh_seeds_still_collects_its_queued_references(ray_here, tiny_base, tiny_scenario, base_dir):
    """The references are queued when a cell starts; with no fresh seeds nothing else drains the pool, and
    a reference Tune's loop did not collect (every slot Tune's, or no Tuner at all on --resume) was lost."""
    from types import SimpleNamespace

    from sweeper import phases

    pool, got = tuning.Pool(1, device="cpu"), []
    pool.poll(busy=1)  # Tune held the only slot until it returned
    pool.submit({"scenario": tiny_scenario.as_dict(), "method": "none", "base_dir": base_dir, "budgets": [0.02],
                 "seeds": [0], "device": "cpu"}, got.append)
    phases.fresh(SimpleNamespace(exp=SimpleNamespace(fresh_seeds=[]), pool=pool))
    assert len(got) == 1 and got[0][0]["budget"] == 0.0
