"""sweeper/instep.py: jobs advanced round by round, one at a time, stopped where they stand."""
import threading

import pytest

from sweeper.instep import InStep


def counting(name, n, log, running=None):
    def job(emit):
        for k in range(n):
            if running is not None:
                assert not running, f"{name} ran while {running} ran"
                running.append(name)
            log.append((name, k))
            if running is not None:
                running.remove(name)
            emit((name, k))
    return job


def test_rounds_hold_one_value_per_job_and_jobs_run_one_after_the_other():
    log, running = [], []
    with InStep([counting(j, 3, log, running) for j in "abc"]) as rounds:
        got = list(rounds)
    assert got == [[(j, k) for j in "abc"] for k in range(3)]
    assert log == [(j, k) for k in range(3) for j in "abc"]  # round by round, never two at once


def test_stopping_after_a_round_leaves_no_job_past_it():
    log = []
    with InStep([counting(j, 5, log) for j in "ab"]) as rounds:
        for values in rounds:
            break  # the caller stops after the first round (ASHA stopping a trial at its first checkpoint)
    assert log == [("a", 0), ("b", 0)]
    assert not [t for t in threading.enumerate() if t.name.startswith("instep-")]  # every thread ended


def test_a_round_is_whole_or_not_at_all():
    log = []
    with InStep([counting("a", 3, log), counting("b", 2, log)]) as rounds:
        got = list(rounds)
    assert got == [[("a", 0), ("b", 0)], [("a", 1), ("b", 1)]]


def test_an_error_in_a_job_is_raised_to_the_caller_and_the_others_stop():
    def broken(emit):
        emit(1)
        raise ValueError("diverged")

    log = []
    with pytest.raises(ValueError, match="diverged"):
        with InStep([counting("a", 5, log), broken]) as rounds:
            list(rounds)
    assert log == [("a", 0), ("a", 1)]
    assert not [t for t in threading.enumerate() if t.name.startswith("instep-")]


def test_a_job_that_catches_exceptions_is_still_stopped():
    def stubborn(emit):
        for k in range(5):
            try:
                emit(k)
            except Exception:  # noqa: BLE001 - a method's own handler must not keep it running
                pass

    with InStep([stubborn, stubborn]) as rounds:
        first = next(iter(rounds))
    assert first == [0, 0]
    assert not [t for t in threading.enumerate() if t.name.startswith("instep-")]
