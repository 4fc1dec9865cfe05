"""`make bench`: every speed target of the project, measured and printed (never asserted in tests)."""

from __future__ import annotations

import runpy
from pathlib import Path

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    for script in (
        "bench_cli.py",
        "bench_report.py",
        "bench_parser.py",
        "bench_local_overhead.py",
        "bench_harness.py",
    ):
        runpy.run_path(str(HERE / script), run_name="__main__")
