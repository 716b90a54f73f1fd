"""Valid ranges of numeric parameters, declared as data next to the code that uses them.

Each attack, model and dataset module holds `RANGES = {name: Range(...)}` for every numeric keyword-only
parameter of its entry function (`craft`, the registered builder, the registered loader); the experiment
loader checks file values against them before anything runs, and a registry-generated test checks that
no numeric parameter lacks a range and that every default lies inside its range."""
from __future__ import annotations

import inspect
import math
import sys
from dataclasses import dataclass

from .errors import SweeperError


@dataclass(frozen=True)
class Range:
    """low ≤ value ≤ high (strict where open); None = unbounded on that side."""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if not _finite(value):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self) -> str:
        left = "(-inf" if self.low is None else f"{'(' if self.low_open else '['}{self.low:g}"
        right = "inf)" if self.high is None else f"{self.high:g}{')' if self.high_open else ']'}"
        return f"{left}, {right}"

    def rule(self) -> str:
        return {POSITIVE: "be positive", NON_NEGATIVE: "be non-negative"}.get(self, f"lie in {self}")


POSITIVE = Range(0, low_open=True)  # for an integer parameter (the type is checked apart): ≥ 1
NON_NEGATIVE = Range(0)
FRACTION = Range(0, 1, low_open=True)  # a share of a set: none of it makes no sense, all of it may


def _finite(value: float) -> bool:
    # Only floats can be nan or inf; math.isfinite would overflow on a 400-digit YAML integer.
    return not isinstance(value, float) or math.isfinite(value)


def check(where: str, name: str, value: float, valid: Range) -> float:
    """`value` (already known to be a number) is finite and inside `valid`, or one error naming where."""
    if not _finite(value):  # YAML reads .inf and .nan as floats: numbers no parameter here can mean
        raise SweeperError(f"{where}.{name} must be a finite number, got {value!r}")
    if value not in valid:
        raise SweeperError(f"{where}.{name} must {valid.rule()}, got {value!r}")
    return value


def ranges(fn) -> dict[str, Range]:
    """The RANGES declared by the module that defines `fn` (empty if it declares none)."""
    return getattr(sys.modules[fn.__module__], "RANGES", {})


def numeric_keywords(fn) -> dict[str, float]:
    """`fn`'s keyword-only parameters whose default is a number (bool is not one): those that need a range."""
    return {p.name: p.default for p in inspect.signature(fn).parameters.values()
            if p.kind is p.KEYWORD_ONLY and isinstance(p.default, (int, float)) and not isinstance(p.default, bool)}
