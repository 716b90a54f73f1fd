"""Worker processes and CPU of one sweep with Ray's default idle-worker killing (a task worker idle for 1 s is
killed while more workers exist than CPUs) against sweeper's embedded default (idle task workers kept), side
by side in one run.

    python benchmarks/worker_reuse.py [--profile tiny] [--repeats 1] [sweeper run arguments ...]

Each configuration runs `sweeper run` in a subprocess with its own work directory and RAY_TMPDIR; a sampler
reads /proc every 0.2 s and sums, over every process descended from that sweep's driver, its CPU time (the
last value seen, so a process that lives less than 0.2 s is missed), counts the Ray worker processes that
ever started, and notes the wall time. Prints one line per run and the ratios of the means.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HZ = os.sysconf("SC_CLK_TCK")
CONFIGS = {"ray default (1 s)": "1000", "kept (sweeper's default)": None}


def _stat(pid: str) -> tuple[int, float, float, str] | None:
    """(ppid, cpu seconds, start time, name) of a process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
        name = Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ").strip() or raw[raw.index("(") + 1:raw.rindex(")")]
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / HZ, int(fields[19]) / HZ, name


def run(extra: list[str], idle_ms: str | None) -> dict:
    wd = Path(tempfile.mkdtemp(prefix="wr-"))
    ray_tmp = tempfile.mkdtemp(prefix="rt-", dir="/tmp")
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled"),
           "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_idle_worker_killing_time_threshold_ms", None)
    if idle_ms is not None:
        env["RAY_idle_worker_killing_time_threshold_ms"] = idle_ms
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "sweeper.cli", "run", "--workdir", str(wd / "work"), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
    seen: dict[tuple[str, float], tuple[float, str]] = {}
    while proc.poll() is None:
        stats = {pid: s for pid in os.listdir("/proc") if pid.isdigit() and (s := _stat(pid))}
        family, grew = {str(proc.pid)}, True
        while grew:
            more = {pid for pid, s in stats.items() if str(s[0]) in family} - family
            family |= more
            grew = bool(more)
        for pid in family & stats.keys():
            _, cpu, started, name = stats[pid]
            seen[(pid, started)] = (cpu, name)
        time.sleep(0.2)
    wall = time.perf_counter() - start
    err = proc.stderr.read()
    subprocess.run(["pkill", "-9", "-f", ray_tmp], check=False)
    shutil.rmtree(wd, ignore_errors=True)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    if proc.returncode != 0:
        raise SystemExit(f"sweeper run failed ({proc.returncode}): {err[-500:]}")
    workers = [n for _, n in seen.values() if n.startswith("ray::") and "Agent" not in n]
    return {"wall": wall, "cpu": sum(c for c, _ in seen.values()), "workers": len(workers)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1)
    args, extra = ap.parse_known_args()
    extra = extra or ["--profile", "tiny"]
    results: dict[str, list[dict]] = {name: [] for name in CONFIGS}
    for _ in range(args.repeats):  # interleaved, so a slower hour of the machine hits both alike
        for name, idle_ms in CONFIGS.items():
            r = run(extra, idle_ms)
            results[name].append(r)
            print(f"{name:26s} wall {r['wall']:6.1f} s  cpu {r['cpu']:6.1f} s  worker processes {r['workers']}",
                  flush=True)
    mean = {n: {k: sum(r[k] for r in rs) / len(rs) for k in ("wall", "cpu", "workers")} for n, rs in results.items()}
    before, after = mean["ray default (1 s)"], mean["kept (sweeper's default)"]
    print(f"kept / default: wall {after['wall'] / before['wall']:.2f}, cpu {after['cpu'] / before['cpu']:.2f}, "
          f"worker processes {after['workers']:.1f} vs {before['workers']:.1f} "
          f"({args.repeats} run(s) each, `sweeper run {' '.join(extra)}`)")


if __name__ == "__main__":
    main()
