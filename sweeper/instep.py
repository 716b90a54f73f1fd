"""Jobs run in step: several jobs that each emit a sequence of values (a trial's seeds, each emitting its
checkpoints), advanced round by round: job 0 up to its first value, job 1 up to its first, ..., then the
round is handed to the caller; then every job on to its second value, and so on.

Why: a tuning trial reports a checkpoint once every seed has reached it. Run one seed after another, its
earlier seeds had already unlearned up to the largest budget by then, and when ASHA stops the trial at the
first checkpoint that work is thrown away (benchmarks/sweep_overhead.py measured it at 15% of the
quickstart's slot time). In step, no seed is ever past the checkpoint the trial last reported.

Each job runs in its own thread, but only one runs at any moment (a baton passes from job to job), so what
each computes is exactly what it computes alone: nothing runs concurrently, and the per-thread state torch
keeps (grad mode, autocast) is each job's own. The price is that every job's state (a model and its
optimizer) is held at once."""
from __future__ import annotations

import queue
import threading
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")
Job = Callable[[Callable[[T], None]], None]  # job(emit): calls emit(value) for each value, then returns


class _Stopped(BaseException):
    """Raised inside a job's emit when the caller stopped: unwinds the job (BaseException, so that a
    method's `except Exception` cannot swallow it)."""


class InStep(Generic[T]):
    """Iterate over the rounds (a list with one value per job); `close()` (or leaving a `with` block) stops
    every job where it stands. A round in which some job returned without a value ends the iteration (its
    other values are dropped: a round is whole or not at all); an exception in a job is raised here."""

    def __init__(self, jobs: list[Job]):
        self._box: queue.Queue = queue.Queue()
        self._go = [threading.Semaphore(0) for _ in jobs]
        self._stopped = False
        self._threads = [threading.Thread(target=self._run, args=(i, job), daemon=True, name=f"instep-{i}")
                         for i, job in enumerate(jobs)]
        for t in self._threads:
            t.start()

    def _run(self, i: int, job: Job) -> None:
        def emit(value: T) -> None:
            self._box.put(("value", value))
            self._wait(i)

        try:
            self._wait(i)
            job(emit)
            self._box.put(("done", None))
        except _Stopped:
            pass
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread, raised there
            self._box.put(("error", e))

    def _wait(self, i: int) -> None:
        self._go[i].acquire()
        if self._stopped:
            raise _Stopped

    def __iter__(self) -> Iterator[list[T]]:
        while True:
            values = []
            for go in self._go:
                go.release()  # the baton: job i runs until its next value, its end or its error
                kind, value = self._box.get()
                if kind == "error":
                    raise value
                if kind == "done":
                    return
                values.append(value)
            yield values

    def close(self) -> None:
        """Stop every job (each waits for the baton, or has returned) and wait for its thread to end."""
        self._stopped = True
        for go in self._go:
            go.release()
        for t in self._threads:
            t.join()

    def __enter__(self) -> "InStep[T]":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
