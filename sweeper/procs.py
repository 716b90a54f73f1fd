"""Who owns a piece of work, and is that process still alive? Used to tell a sweep (or a half-built
cache entry) whose driver was killed from one that is still running."""
from __future__ import annotations

import os
import socket
from pathlib import Path


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), which tells a live process from a
    later one that reuses its pid; None where /proc is not available."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of proc(5), counted after the command name


def me() -> dict[str, str]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": str(pid), "started": _start_ticks(pid) or ""}


def alive(owner: dict[str, str]) -> bool | None:
    """True/False for a process on this host; None when it ran elsewhere (we cannot tell)."""
    if owner.get("host") != socket.gethostname() or not str(owner.get("pid", "")).isdigit():
        return None
    pid = int(owner["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    started = owner.get("started")
    return not started or _start_ticks(pid) in (None, started)
