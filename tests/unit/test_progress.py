"""The estimate of time left (sweeper/progress.py) on a clock the test moves: work planned in units and
evaluations, rates fitted to measured jobs, each kind of phase at its own measured pace; and the board that
shows it (plain lines for logs, one bar redrawn in place on a terminal)."""
from __future__ import annotations

import io

import pytest

from sweeper.progress import PRIOR_OVERHEAD, Board, Estimate, asha_expectation


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
    est.plan("g/tune", 100, 1.0, 0)
    est.enter("tune")
    for _ in range(40):
        clock.t += 10
        est.finished("g/tune", 1.0, 0, seconds=10)
    fraction, left, done, total = est.status()
    assert left == pytest.approx(600, rel=0.02) and fraction == pytest.approx(0.4, rel=0.02)
    assert (done, total) == (pytest.approx(400), pytest.approx(1000))


def test_trials_stopped_early_shrink_what_the_unstarted_ones_are_expected_to_cost():
    clock = Clock()
    est = Estimate(1, clock)
    est.plan("g/a/tune", 4, 1.0, 0, stops=True)
    est.plan("g/b/tune", 4, 1.0, 0, stops=True)
    est.enter("tune")
    for _ in range(4):  # method a's trials all stopped at a quarter of their plan
        clock.t += 2.5
        est.finished("g/a/tune", 0.25, 0, seconds=2.5)
    left = est.work()[1]["tune"]
    a, _ = est.rates()
    assert left == pytest.approx(4 * 0.25 * a)  # b, not started, expects what a's trials took of their plan


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


def test_a_kind_not_yet_run_is_planned_at_the_prior_pace_then_moves_to_its_own():
    clock = Clock()
    est = Estimate(2, clock)
    est.base_models(2.0, 20.0)  # a = 10 slot-s per unit
    est.plan("g/tune", 40, 1.0, 0)
    est.plan("g/fresh", 40, 1.0, 0)
    prior = PRIOR_OVERHEAD / 2
    assert est.pace("fresh", {}) == pytest.approx(prior)
    est.enter("tune")
    for _ in range(40):  # each trial 10 slot-s of work, two at a time: 200 s of wall, pace 0.5
        clock.t += 5
        est.finished("g/tune", 1.0, 0, seconds=10)
    done, _ = est.work()
    assert est.pace("tune", done) == pytest.approx((40 * 0.5 + 4 * prior) / 44)  # pulled towards the prior as 2 jobs per slot
    assert est.pace("fresh", done) == pytest.approx(prior)  # Tune's pace says nothing of plain tasks'
    assert est.status()[1] == pytest.approx(40 * 10 * prior)
    est.enter("fresh")
    for _ in range(40):
        clock.t += 2.5
        est.finished("g/fresh", 1.0, 0, seconds=10)
    done, _ = est.work()
    assert est.pace("fresh", done) == pytest.approx((40 * 0.25 + 4 * prior) / 44)


def test_asha_lets_half_the_trials_past_each_rung():
    reached, checkpoints = asha_expectation([0.02, 0.04, 0.06, 0.08, 0.10], 2)  # rungs 0.02, 0.04, 0.08
    assert reached == pytest.approx(0.5 * 0.02 + 0.25 * 0.04 + 0.125 * 0.08 + 0.125 * 0.10)
    assert checkpoints == pytest.approx(1 + 0.5 + 0.25 + 0.25 + 0.125)  # 0.06 lies past the 0.04 rung
    assert asha_expectation([0.1], 2) == (pytest.approx(0.1), pytest.approx(1.0))  # one budget: no rung


def test_replanning_and_skipping_change_what_is_left():
    est = Estimate(1, Clock())
    est.base_models(1.0, 1.0)
    est.plan("g/fresh", 20, 0.1, 5)
    est.replan("g/fresh", [(0.1, 5), (0.0, 1)])
    assert est.groups["g/fresh"].left == 2
    est.plan("g/gd/tune", 8, 0.1, 5, stops=True)
    est.skip("g/gd/tune", 3)
    assert est.groups["g/gd/tune"].left == 5


def one_job_done(board: Board, planned: int) -> None:
    """`planned` equal jobs of 10 slot-seconds on one slot; the first finished after 10 s, the board told."""
    clock = Clock()
    board.estimate = Estimate(1, clock)
    board.estimate.plan("g/tune", planned, 1.0, 0)
    board.estimate.enter("tune")
    clock.t += 10
    board.estimate.finished("g/tune", 1.0, 0, seconds=10)
    board.update()


def test_a_plain_board_appends_the_status_once_after_work_finished():
    lines = []
    board = Board(lines.append, tty=False)
    board("before any estimate")
    one_job_done(board, 2)
    board("a trial finished")
    board("another message")
    left = board.estimate.status()[1]
    assert lines[0] == "before any estimate"
    assert lines[1] == f"a trial finished · {10 / (10 + left):.0%} of planned work (0.2 of ~0.3 slot-min), ~{left:.0f}s left"
    assert lines[2] == "another message"
    assert len(board.history) == 1 and board.history[0][2] == pytest.approx(left)


def test_a_terminal_board_redraws_one_bar_under_the_lines_and_clears_it():
    out = io.StringIO()
    board = Board(stream=out, tty=True)
    one_job_done(board, 4)
    board("a trial finished")
    board.close()
    text = out.getvalue()
    assert "\n" not in text.replace("a trial finished\n", "")  # the bar never takes a line of its own
    fraction = board.estimate.status()[0]
    bar = f"[{'#' * int(fraction * 24)}{'.' * (24 - int(fraction * 24))}] {fraction:.0%} of planned work"
    assert text.count(bar) == 2 and text.endswith("\r\x1b[K")
