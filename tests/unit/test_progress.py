"""The estimate of time left (sweeper/progress.py) on a clock the test moves: work planned in units and
evaluations, rates fitted to measured jobs, each kind of phase at its own measured pace; and the board that
shows it (plain lines for logs, one bar redrawn in place on a terminal)."""
from __future__ import annotations

import io

import pytest

from sweeper.progress import PRIOR_OVERHEAD, Board, Estimate


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_nothing_is_promised_before_anything_was_measured():
    est = Estimate(2, Clock())
    est.plan("g/tune", 8, 0.1, 5, stops=True)
    assert est.status()[1] is None


def test_equal_jobs_at_a_steady_pace_leave_the_time_the_rest_take():
    clock = Clock()
    est = Estimate(1, clock)
    est.plan("g/tune", 10, 1.0, 0)
    est.enter("tune")
    for _ in range(4):
        clock.t += 10
        est.finished("g/tune", 1.0, 0, seconds=10)
    fraction, left, done, total = est.status()
    assert left == pytest.approx(60) and fraction == pytest.approx(0.4)
    assert (done, total) == (pytest.approx(40), pytest.approx(100))


def test_trials_stopped_early_shrink_what_the_unstarted_ones_are_expected_to_cost():
    clock = Clock()
    est = Estimate(1, clock)
    est.plan("g/a/tune", 4, 1.0, 0, stops=True)
    est.plan("g/b/tune", 4, 1.0, 0, stops=True)
    est.enter("tune")
    for _ in range(4):  # method a's trials all stopped at a quarter of the worst case
        clock.t += 2.5
        est.finished("g/a/tune", 0.25, 0, seconds=2.5)
    left = est.work()[1]["tune"]
    a, _ = est.rates()
    assert left == pytest.approx(4 * 0.25 * a)  # b, not started, expects what a's trials took of their worst case


def test_fixed_cost_groups_are_not_shrunk_by_early_stopping_elsewhere():
    clock = Clock()
    est = Estimate(1, clock)
    est.plan("g/a/tune", 2, 1.0, 0, stops=True)
    est.plan("g/fresh", 3, 1.0, 0)
    est.enter("tune")
    for _ in range(2):
        clock.t += 1
        est.finished("g/a/tune", 0.1, 0, seconds=1)
    a, _ = est.rates()
    assert est.work()[1]["fresh"] == pytest.approx(3 * 1.0 * a)


def test_rates_separate_unlearning_from_evaluation():
    est = Estimate(1, Clock())
    for units, evals in ((0.0, 3), (0.0, 1), (0.3, 15), (0.1, 5), (0.3, 5), (0.5, 15)):
        est.finished("g/x", units, evals, seconds=20 * units + 0.5 * evals)
    a, e = est.rates()
    assert a == pytest.approx(20, rel=0.2) and e == pytest.approx(0.5, rel=0.2)


def test_a_kind_not_yet_run_takes_the_pace_measured_so_far_then_its_own():
    clock = Clock()
    est = Estimate(2, clock)
    est.base_models(2.0, 20.0)  # a = 10 slot-s per unit
    est.plan("g/tune", 2, 1.0, 0)
    est.plan("g/fresh", 2, 1.0, 0)
    assert est.pace("fresh", {}) == pytest.approx(PRIOR_OVERHEAD / 2)
    est.enter("tune")
    for _ in range(2):  # each trial 10 slot-s of work; the phase took 20 s of wall on 2 slots: pace 1
        clock.t += 10
        est.finished("g/tune", 1.0, 0, seconds=10)
    done, _ = est.work()
    assert est.pace("fresh", done) == pytest.approx(1.0)
    assert est.status()[1] == pytest.approx(2 * 10 * 1.0)
    est.enter("fresh")
    clock.t += 5
    est.finished("g/fresh", 1.0, 0, seconds=10)  # fresh runs go twice as fast: its own pace now
    done, _ = est.work()
    assert est.pace("fresh", done) == pytest.approx(0.5)
    assert est.status()[1] == pytest.approx(5)


def test_replanning_and_skipping_change_what_is_left():
    est = Estimate(1, Clock())
    est.base_models(1.0, 1.0)
    est.plan("g/fresh", 20, 0.1, 5)
    est.replan("g/fresh", [(0.1, 5), (0.0, 1)])
    assert est.groups["g/fresh"].left == 2
    est.plan("g/gd/tune", 8, 0.1, 5, stops=True)
    est.skip("g/gd/tune", 3)
    assert est.groups["g/gd/tune"].left == 5


def test_a_plain_board_appends_the_status_once_after_work_finished():
    lines = []
    board = Board(lines.append, tty=False)
    board("before any estimate")
    clock = Clock()
    board.estimate = Estimate(1, clock)
    board.estimate.plan("g/tune", 2, 1.0, 0)
    board.estimate.enter("tune")
    clock.t += 10
    board.estimate.finished("g/tune", 1.0, 0, seconds=10)
    board.update()
    board("a trial finished")
    board("another message")
    assert lines[0] == "before any estimate"
    assert lines[1].startswith("a trial finished · 50% of planned work") and lines[1].endswith("~10s left")
    assert lines[2] == "another message"
    assert len(board.history) == 1 and board.history[0][2] == pytest.approx(10)


def test_a_terminal_board_redraws_one_bar_under_the_lines_and_clears_it():
    out = io.StringIO()
    board = Board(stream=out, tty=True)
    clock = Clock()
    board.estimate = Estimate(1, clock)
    board.estimate.plan("g/tune", 4, 1.0, 0)
    board.estimate.enter("tune")
    clock.t += 10
    board.estimate.finished("g/tune", 1.0, 0, seconds=10)
    board.update()
    board("a trial finished")
    board.close()
    text = out.getvalue()
    assert "\n" not in text.replace("a trial finished\n", "")  # the bar never takes a line of its own
    assert text.count("[######..................] 25% of planned work") == 2 and text.endswith("\r\x1b[K")
