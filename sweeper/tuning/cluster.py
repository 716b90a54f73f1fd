"""Ray itself: the address to join checked within seconds, an embedded Ray started (token auth on), and
the slots trials and builds ask for."""
from __future__ import annotations

import contextlib
import os
import socket
import threading
from dataclasses import dataclass

import ray

from ..config import GPUS_PER_TRIAL
from ..errors import SweeperError

ADDRESS_TIMEOUT_S = 5
KEEP_IDLE_WORKERS_MS = 3_600_000  # an embedded Ray's idle task workers live this long (Ray's default: 1 s)
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS


def _hostport(address: str) -> tuple[str, int]:
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise SweeperError(f"Ray address {address!r} is not auto or HOST:PORT")
    return host, int(port)


def _speaks_http2(host: str, port: int) -> str | None:
    """None if the port answers an HTTP/2 preface with a SETTINGS frame (as a Ray GCS, a gRPC server,
    does), else why not. Ray's own client would retry a silent or foreign server for minutes."""
    try:
        with socket.create_connection((host, port), timeout=ADDRESS_TIMEOUT_S) as s:
            s.sendall(_HTTP2_PREFACE)
            head = s.recv(9)
    except OSError as e:
        return e.strerror or str(e) or type(e).__name__
    return None if len(head) == 9 and head[3] == 4 else "it answers, but not as a Ray GCS (no gRPC)"


@contextlib.contextmanager
def _quiet_stderr():
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _gcs_answers(address: str) -> str | None:
    """None if a Ray GCS at `address` serves its session name within the timeout. The probe runs in a
    daemon thread because Ray's client blocks for ~40 s before giving up on its own."""
    outcome: dict = {}

    def probe() -> None:
        try:
            from ray._raylet import GcsClient

            client = GcsClient(address=address)
            outcome["session"] = client.internal_kv_get(b"session_name", namespace=b"session",
                                                        timeout=ADDRESS_TIMEOUT_S)
        except Exception as e:  # noqa: BLE001 - any failure means "not a usable GCS"
            outcome["error"] = str(e).splitlines()[0] if str(e) else type(e).__name__

    thread = threading.Thread(target=probe, daemon=True)
    with _quiet_stderr():  # Ray's C++ client logs its refusals to fd 2; the user gets our one line instead
        thread.start()
        thread.join(ADDRESS_TIMEOUT_S + 1)
    if "session" in outcome:
        return None
    return outcome.get("error", "no answer from its GCS")


def check_address(address: str) -> None:
    """One clear error within seconds unless a Ray GCS answers at HOST:PORT. A plain TCP connect is not
    enough: an open port that is not Ray made `ray.init` hang for over 5 minutes."""
    host, port = _hostport(address)
    why = _speaks_http2(host, port)
    if why is None and "://" not in address:  # ray:// is Ray Client's own protocol: TCP + HTTP/2 suffice
        why = _gcs_answers(f"{host}:{port}")
        if why and ("InvalidAuthToken" in why or "uthentication" in why):
            raise SweeperError(f"the Ray cluster at {address} refuses this driver without its token: set "
                               "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or ~/.ray/auth_token) to the cluster's token")
    if why:
        raise SweeperError(f"no Ray cluster answers at {address} within {ADDRESS_TIMEOUT_S} s ({why})")


def resolve_auto() -> str:
    """What `--address auto` joins: RAY_ADDRESS, else the cluster recorded in Ray's temp directory
    (`ray_current_cluster`, the last `ray start`), else the one Ray GCS running on this machine. Ray's own
    "auto" prefers any running GCS over the record, so with a stale record it would join whatever
    embedded Ray another process happens to run; the record wins here."""
    from ray._private.services import canonicalize_bootstrap_address, find_bootstrap_address, find_gcs_addresses

    env = os.environ.get("RAY_ADDRESS", "")
    recorded = find_bootstrap_address(None)
    if not env and recorded:
        return recorded
    if not env:
        running = set(find_gcs_addresses())
        if len(running) == 1:
            return running.pop()
        if len(running) > 1:
            raise SweeperError(f"--address auto: {len(running)} Ray clusters run on this machine and none is "
                               "recorded; name one with --address HOST:PORT")
        raise SweeperError("--address auto: no running Ray cluster is recorded on this machine")
    try:
        found = canonicalize_bootstrap_address(env)
    except (ConnectionError, ValueError) as e:
        raise SweeperError(f"--address auto: {str(e).splitlines()[0]}") from None
    if not found:
        raise SweeperError("--address auto: RAY_ADDRESS names no cluster")
    return found


def check(address: str | None) -> str | None:
    """The address to join, resolved (`auto`) and probed: one clear error within seconds if no Ray
    answers there. None and "local" mean a new embedded Ray and need no check."""
    if address == "auto":
        found = resolve_auto()
        try:
            check_address(found)
        except SweeperError as e:
            raise SweeperError(f"--address auto found {found} in Ray's record of this machine's last cluster, "
                               f"but {e}") from None
        return found
    if address and address != "local":
        check_address(address)
    return address


def start(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None) -> bool:
    """Join `address` (a cluster, as resolved and probed by `check`) or start a new
    embedded Ray; True if this call started it. Without an address Ray is always new and local
    (`address="local"`): plain `ray.init()` would join whatever cluster the machine last recorded, or
    hang for minutes on a stale record. `address` must be one `check` returned: it is probed there, once,
    before the tracking store is created (probing it again here cost another GCS round trip)."""
    if ray.is_initialized():  # a caller (tests, a notebook) already runs Ray in this process: use it
        return False
    try:
        if address and address != "local":
            ray.init(address=address, logging_level="WARNING", log_to_driver=False)
        else:
            # Ray kills a task worker idle for 1 s while more workers exist than CPUs: every Tuner's trial actors
            # push the fresh-seed and base-model workers over that limit, so each phase started new processes
            # that imported torch and loaded the seeds' base models again. An embedded Ray keeps them (a
            # user's own RAY_idle_worker_killing_time_threshold_ms wins; a cluster's is set by `ray start`).
            os.environ.setdefault("RAY_idle_worker_killing_time_threshold_ms", str(KEEP_IDLE_WORKERS_MS))
            ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                     logging_level="WARNING", log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise SweeperError(f"cannot start or join Ray{f' at {address}' if address else ''}: "
                           f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return True


def describe() -> str:
    """Which Ray this process is using, for the first progress line."""
    s = slots()
    gcs = ray.get_runtime_context().gcs_address
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    return f"Ray at {gcs} ({nodes} node{'s' * (nodes != 1)}, {s.cpus} CPUs, {s.gpus:g} GPUs)"


def stop() -> None:
    ray.shutdown()


@dataclass
class Slots:
    cpus: int
    gpus: float
    gpus_per_trial: float = GPUS_PER_TRIAL  # several small trials share a GPU (admission only; Ray caps no memory)
    device: str = "auto"  # the experiment's: cuda asks for GPUs even before any is up; cpu/mps never do

    @property
    def gpu(self) -> bool:
        """Whether trials and builds ask Ray for GPUs. `auto` follows what the cluster shows now; `cuda`
        asks regardless, so an autoscaling cluster that starts without GPU workers gets them added."""
        return self.device.startswith("cuda") or (self.device == "auto" and self.gpus > 0)

    @property
    def concurrent(self) -> int:
        if not self.gpu:
            return max(1, self.cpus)
        if not self.gpus:  # none up yet: one GPU's worth until the autoscaler adds more (--max-concurrent for more)
            return max(1, int(1 / self.gpus_per_trial))
        return max(1, min(self.cpus, int(self.gpus / self.gpus_per_trial)))

    @property
    def resources(self) -> dict:
        return {"cpu": 1, "gpu": self.gpus_per_trial} if self.gpu else {"cpu": 1}

    @property
    def trial_task(self) -> dict:
        """Ray task options of a plain trial (references, fresh seeds)."""
        return {"num_gpus": self.gpus_per_trial} if self.gpu else {}

    @property
    def build_task(self) -> dict:
        """Base-model training and crafting take a whole GPU where one exists (they fill it)."""
        return {"num_gpus": min(1.0, self.gpus) if self.gpus else 1.0} if self.gpu else {}


def slots(gpus_per_trial: float = GPUS_PER_TRIAL, device: str = "auto") -> Slots:
    res = ray.cluster_resources()
    return Slots(int(res.get("CPU", 1)), float(res.get("GPU", 0)), gpus_per_trial, device)


def check_device(device: str, embedded: bool) -> None:
    """`device: cuda` on an embedded Ray without GPUs would leave every trial pending for ever: one line
    instead. A joined cluster may still add GPU workers (autoscaling), so there it is only waited for."""
    if embedded and device.startswith("cuda") and not ray.cluster_resources().get("GPU", 0):
        raise SweeperError(f"device: {device}, but this machine has no GPU that Ray can see; "
                           "use device: auto or cpu, or --address a cluster with GPU workers")


