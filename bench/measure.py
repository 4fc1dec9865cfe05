"""Runs a command several times and reports its median wall time, CPU time (user + system) and
peak memory (max RSS), read from the child's own rusage."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Figures:
    wall: float
    cpu: float
    rss_mb: float

    def line(self, what: str, *, wall: float, rss_mb: float | None = None) -> str:
        target = f"target <= {wall * 1000:.0f} ms" + (f", <= {rss_mb:.0f} MB" if rss_mb else "")
        return (
            f"{what}: median wall {self.wall * 1000:.0f} ms, cpu {self.cpu * 1000:.0f} ms, "
            f"max RSS {self.rss_mb:.1f} MB ({target}; on a loaded machine wall > cpu)"
        )


def measure(argv: Sequence[str], repeats: int = 7) -> Figures:
    """Median over ``repeats`` runs after one warm-up (page cache, .pyc files).

    Bytecode is written and used as an installed mbctl would: PYTHONDONTWRITEBYTECODE (set
    in some CI and dev shells) would make every run compile every module again.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(argv, check=True, capture_output=True, env=env)
    walls, cpus, rss = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        child = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        _, status, usage = os.wait4(child.pid, 0)
        walls.append(time.perf_counter() - start)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} exited {child.returncode}")
        cpus.append(usage.ru_utime + usage.ru_stime)
        rss.append(usage.ru_maxrss / 1024)
    return Figures(statistics.median(walls), statistics.median(cpus), statistics.median(rss))
