"""Defects of the Ray and MLflow edges, each on the real thing: a sweep's record never creates an
experiment except by reserving it, a read that fails is never taken for an absent artifact, the Ray
address is probed once, and the experiment's `search_seed` reaches every Optuna study."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import optuna
import pytest

from sweeper import config, tracking
from sweeper.errors import SweeperError


@pytest.fixture
def store(tmp_path):
    uri = tracking.default_uri(tmp_path)
    tracking.open_store(uri, tmp_path)
    return uri, tmp_path


def test_a_record_of_an_unknown_sweep_creates_nothing(store):
    uri, wd = store
    with pytest.raises(SweeperError, match="no sweep named 'nope'"):
        tracking.SweepRecord(uri, "nope", wd).experiment_id  # noqa: B018 - the property is the test
    assert tracking.sweeps(uri) == []  # the old property created the experiment, unowned and untagged


def test_a_failed_read_is_one_line_not_an_absent_artifact(store):
    """The experiment a sweep logged is what --resume compares with: a read that fails must not look
    like a sweep that logged nothing (which skipped the comparison), nor escape as a traceback."""
    uri, wd = store
    record = tracking.SweepRecord(uri, "s", wd)
    record.reserve(numbered=False)
    writer = tracking.RunWriter(record)
    parent = writer.start_parent("gaussian", "gd", {}, {"trials": 2})
    assert tracking.read_experiment(record) == {"trials": 2}
    logged = Path(record.client.get_run(parent).info.artifact_uri.removeprefix("file://")) / "experiment.json"
    logged.unlink()
    logged.mkdir()  # the artifact is there but cannot be read as text (a damaged artifact store)
    with pytest.raises(SweeperError, match=f"cannot read experiment.json of run {parent}") as e:
        tracking.read_experiment(record)
    assert "\n" not in str(e.value)


def test_an_absent_table_still_reads_as_absent(store):
    uri, wd = store
    record = tracking.SweepRecord(uri, "s", wd)
    record.reserve(numbered=False)
    writer = tracking.RunWriter(record)
    writer.start_parent("gaussian", "gd", {}, {})  # interrupted before its table was written
    assert tracking.read_rows(record).empty


def test_abort_closes_a_run_created_just_before_the_interrupt(store, monkeypatch):
    """CI saw a trial run RUNNING after Ctrl-C: the signal landed in start_child after MLflow created the
    run and before the writer registered it. abort() closes the sweep's RUNNING runs, registered or not."""
    uri, wd = store
    record = tracking.SweepRecord(uri, "s", wd)
    record.reserve(numbered=False)
    writer = tracking.RunWriter(record)
    parent = writer.start_parent("gaussian", "gd", {}, {})
    create = writer.client.create_run

    def interrupted_create(*args, **kwargs):
        create(*args, **kwargs)
        raise KeyboardInterrupt  # the run exists in MLflow; start_child never returns its id

    monkeypatch.setattr(writer.client, "create_run", interrupted_create)
    with pytest.raises(KeyboardInterrupt):
        writer.start_child(parent, "trial", {}, {})
    writer.abort("KILLED", "interrupted")
    runs = record.client.search_runs([record.experiment_id])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"KILLED"}
    assert {r.data.tags.get("sweeper.interrupted") for r in runs} == {"true"}


def test_the_writer_thread_writes_what_was_written_in_order_and_raises_what_failed(store, monkeypatch):
    """Issue 23: a sweep's writer hands a trial's params, inputs and end to one thread (the driver goes back
    to Tune at once). Read back after `wait`, the runs equal what was written, in order; a write that failed
    is raised by the next `wait`, and `abort` still closes the run it left open."""
    uri, wd = store
    record = tracking.SweepRecord(uri, "s", wd)
    record.reserve(numbered=False)
    writer = tracking.RunWriter(record, background=True)
    parent = writer.start_parent("gaussian", "gd", {}, {})
    child = writer.start_child(parent, "gd-1", {"lr": 0.1}, {"trial_id": "1"})
    for budget, objective in ((0.02, 0.1), (0.04, 0.3)):
        writer.log_checkpoint(child, {"budget": budget, "objective": objective})
    ended = time.time() * 1000
    writer.later(time.sleep, 0.3)  # a writer thread that is busy when the trial ends
    writer.end_child(child, "KILLED", [{"budget": 0.02}, {"budget": 0.04}], {"diverged": "false"})
    writer.wait()
    assert record.client.get_run(child).info.end_time - ended < 200  # when it ended, not when it was written
    run = record.client.get_run(child)
    assert (run.info.status, run.data.params, run.data.tags["diverged"]) == ("KILLED", {"lr": "0.1"}, "false")
    history = record.client.get_metric_history(child, "objective")
    assert [(m.step, m.value) for m in history] == [(20, 0.1), (40, 0.3)]
    assert tracking.child_rows(record, child) == [{"budget": 0.02}, {"budget": 0.04}]

    broken = writer.start_child(parent, "gd-2", {}, {"trial_id": "2"})
    monkeypatch.setattr(writer.client, "set_terminated", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    writer.end_child(broken, "FINISHED", [])
    with pytest.raises(OSError, match="disk full"):
        writer.wait()
    monkeypatch.undo()
    writer.abort("FAILED", "stopped")
    writer.close()
    assert record.client.get_run(broken).info.status == "FAILED"  # never left RUNNING, never FINISHED


def test_start_does_not_probe_the_address_again(ray_session, monkeypatch):
    """`check` probes an address (seconds against a silent port); `start` is handed what it returned."""
    from sweeper.tuning import cluster

    probed = []
    monkeypatch.setattr(cluster, "check_address", probed.append)  # a spy on our own probe, not on Ray
    assert cluster.check("10.255.255.1:6379") == "10.255.255.1:6379"
    assert cluster.start("10.255.255.1:6379") is False  # Ray already runs in this process: it is used
    assert probed == ["10.255.255.1:6379"]


def _first_proposal(study_search) -> float:
    study = optuna.create_study(sampler=study_search._sampler)
    return study.ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0)}).params["x"]


def test_search_seed_reaches_every_study_and_zero_keeps_the_old_seeds():
    import zlib

    from sweeper.tuning import study_seed
    from sweeper.tuning.tuner import _study

    assert study_seed(0, "gaussian", "gd") == zlib.crc32(b"gaussian/gd") % 2**31  # the seeds sweeps had
    exp = config.load("quickstart")
    assert exp.search_seed == 0
    same = [_first_proposal(_study(exp, "gaussian", "gd")) for _ in range(2)]
    other = _first_proposal(_study(dataclasses.replace(exp, search_seed=1), "gaussian", "gd"))
    assert same[0] == same[1] and other != same[0]
