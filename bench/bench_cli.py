"""Measures `mbctl --help` wall time (target ≤ 0.3 s: heavy imports stay lazy)."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def main(repeats: int = 10) -> float:
    exe = shutil.which("mbctl", path=str(Path(sys.executable).parent)) or "mbctl"
    subprocess.run([exe, "--help"], check=True, capture_output=True)  # warm the page cache
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([exe, "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(
        f"mbctl --help: median {median * 1000:.0f} ms, min {min(times) * 1000:.0f} ms over {repeats} runs (target <= 300 ms)"
    )
    return median


if __name__ == "__main__":
    main()
