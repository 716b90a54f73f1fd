"""How far a sweep has come and when it will end (issue 22): work planned in cost units, refined as it is
measured, and shown as plain lines (logs, CI) or, on a terminal, as lines above one status bar.

Trial counts mislead (ASHA stops trials, fixed-cost methods cost the same at every budget, the fresh-seed
phase has its own size), so a job's work is modelled from its unlearning units (retrain fractions summed
over its seeds) and its evaluations (checkpoints × seeds): slot-seconds ≈ a·units + e·evaluations, with
`a` first from the base models' training and `e` from the references (which only evaluate), then both
fitted to every job's measured seconds. Each kind of phase (references, tuning, fresh runs) then has its
own pace, wall seconds per slot-second of modelled work, measured while it runs: that takes in how many
slots it keeps busy and what the model leaves out (Tune's scheduling, MLflow writes, idle slots at its
end). The time left is each kind's work left at its pace (a kind not yet run: every slot busy, 20% lost).
Tuning trials are planned at what ASHA is expected to let them reach (`asha_expectation`), and every
group of jobs moves towards what its finished jobs cost; a look's fresh runs are re-planned exactly once
its configurations are chosen. Later looks of an adaptive sweep are planned when they start (the estimate then grows), and
the report at the end is not planned."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable

# Before anything is measured. An evaluation is a forward pass over the validation, test and forget sets (and
# GUS's gradients on the poisons); a unit is a whole training run, tens of epochs of forward and backward
# passes over the training set: about a hundredth. Replaced once the references (evaluation only) finish.
PRIOR_EVAL_PER_UNIT = 0.01
PRIOR_OVERHEAD = 1.2  # wall / ideal for a kind of phase not yet measured: every slot busy, 20% lost


def asha_expectation(budgets: list[float], reduction: int) -> tuple[float, float]:
    """(largest budget reached, checkpoints reached) a tuning trial is expected to reach under ASHA with
    its grace at the first budget: at each rung, the first budget × reduction^k below the largest, it goes
    on with probability 1/reduction (the best 1/reduction of its method's trials there). Ray's asynchronous
    ASHA lets its first trials past rungs with no one to compare with, so this is a plan, refined by the
    trials that finish."""
    rungs = set()
    rung = budgets[0]
    while rung < budgets[-1] - 1e-12:
        rungs.add(round(rung, 12))
        rung *= reduction
    alive, reached, checkpoints = 1.0, 0.0, 0.0
    for b in budgets:
        checkpoints += alive
        if round(b, 12) in rungs:
            stop = alive * (1 - 1 / reduction)
            reached += stop * b
            alive -= stop
    return reached + alive * budgets[-1], checkpoints


@dataclass
class Group:
    """Jobs of one kind (a method's tuning trials in one cell, its fresh runs, the references, ...)."""
    left: int = 0          # jobs planned, not finished
    units: float = 0.0     # planned units per job
    evals: float = 0.0     # planned evaluations per job
    seen: list = field(default_factory=list)  # finished jobs' (units, evals)
    stops: bool = False    # jobs a scheduler may stop early (tuning trials)

    def expected(self, shrink: float) -> tuple[float, float]:
        """Units and evaluations one remaining job is expected to take: the plan, moved towards the mean of
        the finished ones. For jobs that may stop early the plan counts as one observation scaled by
        `shrink` (what finished tuning trials took of their plan), so early stopping seen in one method
        informs the next."""
        shrink = shrink if self.stops else 1.0
        n = len(self.seen)
        units = (self.units * shrink + sum(u for u, _ in self.seen)) / (1 + n)
        evals = (self.evals * shrink + sum(v for _, v in self.seen)) / (1 + n)
        return units, evals


class Estimate:
    """Planned and finished work of one sweep, and the time left. A group's kind is the last part of its
    name (`bases`, `refs`, `tune`, `fresh`); the driver says which kind of phase runs (`enter`), so each
    kind's pace — wall seconds per slot-second of modelled work, which takes in its parallelism and what
    the model leaves out (Tune's scheduling, MLflow writes, idle slots at its end) — is measured apart.
    Finished work counts to the phase that runs when it finishes: the references and fresh runs that run
    in slots tuning leaves free are work of the tuning phase's wall time."""

    def __init__(self, slots: int, clock: Callable[[], float] = time.monotonic):
        self.slots, self.clock = max(1, slots), clock
        self.start = clock()
        self.groups: dict[str, Group] = {}
        self.done: dict[str, list[tuple[float, float]]] = {}  # kind -> finished jobs' (units, evals)
        self.timed: list[tuple[float, float, float]] = []     # (units, evals, slot-seconds) where measured
        self.base_rate: float | None = None                    # slot-seconds per unit from the base models
        self._base = [0.0, 0.0]                                # their units and slot-seconds so far
        self.wall: dict[str, float] = {}                       # kind -> wall seconds spent in its phases
        self._kind, self._since = "", self.start

    # -- planning ----------------------------------------------------------------------------------
    def plan(self, group: str, jobs: int, units: float, evals: float, stops: bool = False) -> None:
        """`jobs` more jobs of `group`, each planned at `units` units and `evals` evaluations."""
        g = self.groups.setdefault(group, Group(stops=stops))
        g.left += jobs
        g.units, g.evals = max(g.units, units), max(g.evals, evals)

    def skip(self, group: str, jobs: int) -> None:
        """Planned jobs this run will not do (--resume: they finished before the interruption)."""
        if group in self.groups:
            self.groups[group].left = max(0, self.groups[group].left - jobs)

    def replan(self, group: str, jobs: list[tuple[float, float]]) -> None:
        """`group`'s remaining jobs, now known exactly (units, evaluations each)."""
        g = self.groups.setdefault(group, Group())
        g.left = len(jobs)
        g.units = sum(u for u, _ in jobs) / len(jobs) if jobs else 0.0
        g.evals = sum(v for _, v in jobs) / len(jobs) if jobs else 0.0
        g.seen = []

    # -- measuring ---------------------------------------------------------------------------------
    def enter(self, kind: str) -> None:
        """A phase of `kind` starts: the wall time since the last call was the previous kind's."""
        now = self.clock()
        if self._kind:
            self.wall[self._kind] = self.wall.get(self._kind, 0.0) + now - self._since
        self._kind, self._since = kind, now

    def finished(self, group: str, units: float, evals: float, seconds: float | None = None) -> None:
        g = self.groups.setdefault(group, Group())
        g.left = max(0, g.left - 1)
        g.seen.append((units, evals))
        # counted to the phase running now: a reference or fresh run that finished in a slot tuning left free
        # is work the tuning phase's wall time bought (each phase's pace is its wall time over its work)
        self.done.setdefault(self._kind or _kind(group), []).append((units, evals))
        if seconds is not None and seconds > 0:
            self.timed.append((units, evals, seconds))

    def base_models(self, units: float, slot_seconds: float) -> None:
        """Base models trained: `units` of training (θ_poisoned and θ_retrain, per seed) in `slot_seconds`;
        the rate is over every one reported so far."""
        if units > 0 and slot_seconds > 0:
            self._base[0] += units
            self._base[1] += slot_seconds
            self.base_rate = self._base[1] / self._base[0]

    def rates(self) -> tuple[float, float]:
        """(a, e): slot-seconds per unit and per evaluation. Least squares over the timed jobs (seconds ≈
        a·units + e·evaluations), pulled towards the prior as strongly as one average job: a towards the
        base models' training rate (when known), e towards the evaluation-only jobs' (references) or a
        fixed fraction of a. Never below a hundredth of the prior, so one noisy job cannot make a kind of
        work free."""
        evals_only = [(v, t) for u, v, t in self.timed if u == 0 and v > 0]
        trained = [(u, v, t) for u, v, t in self.timed if u > 0]
        a0 = self.base_rate or (sum(t for _, _, t in trained) / sum(u for u, _, _ in trained) if trained else 1.0)
        e0 = sum(t for _, t in evals_only) / sum(v for v, _ in evals_only) if evals_only else a0 * PRIOR_EVAL_PER_UNIT
        if not self.timed:
            return a0, e0
        n = len(self.timed)
        la = sum(u * u for u, _, _ in self.timed) / n if self.base_rate else 0.0
        le = sum(v * v for _, v, _ in self.timed) / n
        suu = sum(u * u for u, _, _ in self.timed) + la
        svv = sum(v * v for _, v, _ in self.timed) + le
        suv = sum(u * v for u, v, _ in self.timed)
        sus = sum(u * t for u, _, t in self.timed) + la * a0
        svs = sum(v * t for _, v, t in self.timed) + le * e0
        det = suu * svv - suv * suv
        if suu == 0 or svv == 0 or det <= 1e-12 * suu * svv:  # one kind of work never seen: fit the other alone
            a = sus / suu if suu else a0
            e = (svs - suv * a) / svv if svv else e0
        else:
            a, e = (sus * svv - svs * suv) / det, (svs * suu - sus * suv) / det
        return max(a, a0 / 100), max(e, e0 / 100)

    def _shrink(self) -> float:
        """What finished tuning trials took of what was planned for them (1 before any finished)."""
        stopping = [g for g in self.groups.values() if g.stops]
        planned = sum(g.units * len(g.seen) for g in stopping)
        return sum(u for g in stopping for u, _ in g.seen) / planned if planned > 0 else 1.0

    # -- answering ---------------------------------------------------------------------------------
    def work(self) -> tuple[dict[str, float], dict[str, float]]:
        """(done, left) per kind, in slot-seconds at the measured rates."""
        a, e = self.rates()
        shrink = self._shrink()
        done = {kind: sum(a * u + e * v for u, v in jobs) for kind, jobs in self.done.items()}
        left: dict[str, float] = {}
        for name, g in self.groups.items():
            units, evals = g.expected(shrink)
            left[_kind(name)] = left.get(_kind(name), 0.0) + g.left * (a * units + e * evals)
        return done, left

    def pace(self, kind: str, done: dict[str, float]) -> float:
        """Wall seconds per slot-second of `kind`'s work: before any of it is done, the slots fully used
        with PRIOR_OVERHEAD on top; then what its phases measured, pulled towards that as strongly as two
        jobs per slot (a phase's first jobs finish after its start-up and beside jobs still running, so
        alone they read too slow). Kinds differ too much to lend each other a pace: Tune's trials pay a
        scheduling cost per trial that plain tasks do not."""
        prior = PRIOR_OVERHEAD / self.slots
        wall = self.wall.get(kind, 0.0) + (self.clock() - self._since if kind == self._kind else 0.0)
        n = len(self.done.get(kind, []))
        if not n or done.get(kind, 0.0) <= 0 or wall <= 0:
            return prior
        weight = 2 * self.slots
        return (n * wall / done[kind] + weight * prior) / (n + weight)

    def status(self) -> tuple[float, float | None, float, float]:
        """(fraction of the time done, seconds left or None before anything was measured, work done and
        planned in slot-seconds)."""
        done, left = self.work()
        work_done, work_left = sum(done.values()), sum(left.values())
        if self.base_rate is None and not self.timed:
            return 0.0, None, work_done, work_done + work_left
        seconds = sum(w * self.pace(kind, done) for kind, w in left.items())
        elapsed = self.clock() - self.start
        return elapsed / (elapsed + seconds) if elapsed + seconds > 0 else 1.0, seconds, work_done, work_done + work_left


def _kind(group: str) -> str:
    return group.rsplit("/", 1)[-1]


def clock_text(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def status_text(estimate: Estimate) -> str:
    fraction, left, done, total = estimate.status()
    if left is None:
        return f"0% of ~{total / 60:,.1f} slot-min of planned work; time left: after the first jobs"
    return f"{fraction:.0%} of planned work ({done / 60:,.1f} of ~{total / 60:,.1f} slot-min), ~{clock_text(left)} left"


class Board:
    """Where a sweep's messages go. Plain (not a terminal: logs, CI): each line as it comes, and the progress
    status after the first line that follows finished work. On a terminal: the lines scroll above one
    status bar, redrawn in place."""

    WIDTH = 24

    def __init__(self, say: Callable[[str], None] = print, tty: bool | None = None, stream=None):
        self.say, self.stream = say, stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.estimate: Estimate | None = None
        self.history: list[tuple[float, float, float | None]] = []  # (time, fraction, seconds left) per update
        self._changed = False  # finished work not yet reported (plain)
        self._bar = ""

    def __call__(self, line: str) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K" + line + "\n")
            self._draw()
            return
        if self._changed and self.estimate is not None:
            line, self._changed = f"{line} · {status_text(self.estimate)}", False
        self.say(line)

    def update(self) -> None:
        """The estimate changed (a job finished): remember it and redraw the bar."""
        if self.estimate is None:
            return
        fraction, left, _, _ = self.estimate.status()
        self.history.append((time.monotonic(), fraction, left))
        self._changed = True
        if self.tty:
            self._draw()

    def _draw(self) -> None:
        if self.estimate is None:
            self.stream.flush()
            return
        filled = int(self.estimate.status()[0] * self.WIDTH)
        self._bar = f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {status_text(self.estimate)}"
        self.stream.write("\r\x1b[K" + self._bar)
        self.stream.flush()

    def close(self) -> None:
        """Clear the bar (a terminal's last line is the sweep's own)."""
        if self.tty and self._bar:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._bar = ""
