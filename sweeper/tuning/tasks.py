"""Base models and plain trials (references, fresh seeds) as parallel Ray tasks: no scheduler, no
searcher, every core used."""
from __future__ import annotations

from collections import deque
from typing import Callable

import ray

from .. import plugins
from ..config import GPUS_PER_TRIAL
from ..basecache import BuildSummary, base_models, entry_status, remove_stale_temps
from ..scenario import Scenario
from ..trial import pick_device, run_trial
from .cluster import slots

@ray.remote(num_cpus=1)
def _build_base(scenario: dict, seed: int, base_dir: str, device: str, plugin_specs: list[dict]) -> dict:
    plugins.ensure(plugin_specs)
    return base_models(Scenario.from_dict(scenario), seed, base_dir, device=pick_device(device)).manifest


def build_bases(scenarios: list[Scenario], seeds: list[int], base_dir: str, device: str = "auto",
                max_failures: int = 2, plugin_specs: list[dict] | None = None,
                on_built: Callable[[int, dict], None] | None = None) -> BuildSummary:
    """Train, in parallel, the base models of every (scenario, seed) that is absent or broken (a file
    failing its manifest checksum; the task moves it aside first), after removing the temporary folders
    of dead builds. Returns what it did, broken entries with the reason, for the progress line.
    `on_built(builds, manifest)` hears of each build as it finishes (for the progress estimate)."""
    summary = BuildSummary(removed=remove_stale_temps(base_dir))
    todo = [(sc, s) for sc in scenarios for s in seeds if summary.record(sc, s, entry_status(sc, s, base_dir))]
    options = {**slots(device=device).build_task, "max_retries": max_failures}  # a build lost with its node is redone
    pending = [_build_base.options(**options).remote(sc.as_dict(), s, base_dir, device, plugin_specs or [])
               for sc, s in todo]
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        manifest = ray.get(ready[0])  # a build that raised raises here, as before
        if on_built is not None:
            on_built(len(todo), manifest)
    return summary


@ray.remote(num_cpus=1)
def _run_plain(config: dict) -> list[dict]:
    return run_trial(config)


class Pool:
    """Plain trials (references, fresh runs) queued by the driver and run as Ray tasks whenever a slot is
    free, beside whatever else runs (Tune's trials): the slots a phase would leave idle at its end (the last
    tuning trials, a Tuner's set-up) run the next phase's work. `limit` caps every trial of the sweep that
    runs at once (Tune's included: the Tune callback says how many it holds, `poll(busy=...)`); a queued job
    waits rather than take a slot Tune needs, so Tune's trials run as they would alone.

    Each job's `on_result(result)` runs in the driver's thread, from `poll` (never blocks) or `drain`
    (blocks until every queued job is done), with the trial's rows or its error line if it raised. A task whose worker or node dies is
    retried up to `max_failures` times; an exception it raises is not (it would raise again)."""

    def __init__(self, limit: int, gpus_per_trial: float = GPUS_PER_TRIAL, max_failures: int = 2,
                 device: str = "auto"):
        self.limit = max(1, limit)
        self.options = {**slots(gpus_per_trial, device).trial_task, "max_retries": max_failures}
        self.queued: deque[tuple[dict, Callable]] = deque()
        self.running: dict = {}  # ray object ref -> on_result
        self.busy = 0            # slots Tune's trials hold now

    def submit(self, config: dict, on_result: Callable[[list[dict] | str], None]) -> None:
        self.queued.append((config, on_result))
        self._launch()

    def poll(self, busy: int | None = None) -> None:
        """Hand over whatever finished and start queued jobs in the slots free now."""
        if busy is not None:
            self.busy = busy
        self._collect(timeout=0)
        self._launch()  # slots Tune gave back, even when nothing of ours finished

    def drain(self) -> None:
        """Nothing else runs now: every slot is the pool's until its last job is done."""
        self.busy = 0
        self._launch()
        while self.running:
            self._collect(timeout=None)

    def _launch(self) -> None:
        while self.queued and len(self.running) + self.busy < self.limit:
            config, on_result = self.queued.popleft()
            self.running[_run_plain.options(**self.options).remote(config)] = on_result

    def _collect(self, timeout: float | None) -> None:
        if not self.running:
            return
        ready, _ = ray.wait(list(self.running), num_returns=1 if timeout is None else len(self.running),
                            timeout=timeout)
        done = [(self.running.pop(ref), ref) for ref in ready]
        self._launch()  # the freed slots first: a result's MLflow writes (~0.1 s) must not idle them
        for on_result, ref in done:
            on_result(_outcome(ref))


def _outcome(ref) -> list[dict] | str:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        lines = [ln for ln in str(e.cause if e.cause else e).strip().splitlines() if ln.strip()]
        return f"{type(e.cause).__name__}: {lines[-1] if lines else 'unknown error'}"
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
            ray.exceptions.ObjectLostError) as e:  # retries exhausted: this task fails, the sweep goes on
        return f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else 'lost'}"
