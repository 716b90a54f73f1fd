"""Compute budgets in cost units and the anytime-checkpoint contract (docs/architecture.md, Cost units
and Budgets and checkpoints).

A unit is one example through the model forward (1); a backward pass costs 2; a per-example gradient 3.
Budgets are fractions of C_retrain. Methods ask `room(want, per_item)` before each step and `charge`
what they spent. The helper never lets spending pass a checkpoint: when a method's next step does not
fit, it calls `on_checkpoint(fraction, units)` (not charged, not timed) and the step waits for the next
checkpoint's room; after the last checkpoint there is no room and the method returns.

Steps are never trimmed to land exactly on a checkpoint. Trimming would make a trial's step boundaries
depend on which checkpoints it has, so checkpoint 0.04 of a 0.10 trial (which trimmed at 0.02 too)
would differ from a 0.04-only trial. Without trimming, step boundaries depend on units spent only, and
the model at any checkpoint is the model a trial ending there produces, whatever other checkpoints
either trial has; the price is landing up to one step (a batch) short of each checkpoint, and
`cost/units` records exactly where. Schedules inside methods must likewise depend on units spent only.
"""
from __future__ import annotations

import time
from typing import Callable

import torch

CheckpointFn = Callable[[float, int], None]


def step_of(budget: float) -> int:
    """A checkpoint's step where it is logged (MLflow's metrics, the Optuna mirror's intermediate values):
    its budget in per-mille of C_retrain, so 0.02 is step 20."""
    return int(round(budget * 1000))


class BudgetExceeded(RuntimeError):
    pass


class Budget:
    def __init__(self, retrain_units: int, checkpoints: list[float], on_checkpoint: CheckpointFn,
                 device: torch.device | str = "cpu"):
        if not checkpoints or any(not 0 < c <= 1 for c in checkpoints):
            raise ValueError(f"checkpoints must be fractions in (0, 1], got {checkpoints}")
        self.retrain_units = int(retrain_units)
        self.fractions = sorted(checkpoints)
        self.limits = [round(f * self.retrain_units) for f in self.fractions]
        self.on_checkpoint = on_checkpoint
        self.spent = 0
        self.seconds = 0.0
        self.over_budget: list[float] = []  # checkpoints a fixed-cost method could not meet
        self.earlier = 0  # units spent before the last `restart` (a method that starts over per checkpoint)
        self.earlier_seconds = 0.0  # and the seconds those runs took
        self._next = 0
        self._device = torch.device(device)
        self._clock = time.perf_counter()

    # -- what methods call -------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self._next < len(self.limits)

    @property
    def total(self) -> int:
        """Units up to the last checkpoint: the most a method may ever spend."""
        return self.limits[-1]

    def room(self, want: int, per_item: int) -> int:
        """`want` if a step of `want` items costing `per_item` units each fits before the next
        checkpoint; otherwise fires checkpoints until it fits. 0 means the trial is over."""
        while self.active:
            if self.spent + want * per_item <= self.limits[self._next]:
                return want
            self._fire()
        return 0

    def charge(self, units: int) -> None:
        if not self.active or self.spent + units > self.limits[self._next]:
            raise BudgetExceeded(f"charging {units} units at {self.spent} passes the next checkpoint")
        self.spent += units
        if self.spent == self.limits[self._next]:
            self._fire()

    def charge_fixed(self, units: int) -> bool:
        """A fixed-cost step (SSD, Fisher forgetting): checkpoints it overshoots are marked over
        budget instead of being met, and the trial reports the result at the remaining ones.

        Returns False, spending nothing, when the cost exceeds the last checkpoint: no checkpoint
        could report the result, so the method must not compute it (every checkpoint is over budget)."""
        units = int(units)
        if self.active and self.spent + units > self.total:
            self.over_budget += self.fractions[self._next:]
            self._next = len(self.limits)
            return False
        self.spent += units
        while self.active and self.limits[self._next] < self.spent:
            self.over_budget.append(self.fractions[self._next])
            self._next += 1
        return True

    @property
    def next_index(self) -> int:
        """The position in `fractions` of the next checkpoint to report."""
        return self._next

    @property
    def trial_units(self) -> int:
        """Everything the trial spent so far: `spent`, plus what runs before a `restart` spent."""
        return self.earlier + self.spent

    @property
    def trial_seconds(self) -> float:
        """Seconds the trial spent so far: `seconds`, plus what runs before a `restart` took."""
        return self.earlier_seconds + self.seconds

    def close(self) -> None:
        """Report the next checkpoint now, at what was spent (a run cut to end at it: scratch's compressed
        schedule). Its evaluation is not timed, as any checkpoint's."""
        if self.active:
            self._fire()

    def restart(self) -> None:
        """Start over towards the next checkpoint from 0 units and 0 seconds: a method that trains a new
        model for each checkpoint (scratch's compressed schedule) is charged each run against that
        checkpoint alone, and the trial's cost is the sum (`trial_units`)."""
        self.earlier += self.spent
        self.earlier_seconds += self.seconds
        self.spent, self.seconds = 0, 0.0
        self._clock = time.perf_counter()

    def finish(self) -> None:
        """A fixed-cost method is done: it is reported at every remaining checkpoint."""
        while self.active:
            self._fire()

    # -- internals ---------------------------------------------------------------------------------
    def _sync(self) -> None:
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)

    def _fire(self) -> None:
        self._sync()
        self.seconds += time.perf_counter() - self._clock
        fraction = self.fractions[self._next]
        self._next += 1
        self.on_checkpoint(fraction, self.spent)
        self._sync()
        self._clock = time.perf_counter()  # the evaluation above is not timed
