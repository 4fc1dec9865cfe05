"""The catalogue tests: where the benchmark environment is, and skipping (not in CI) without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"
BENCH_PYTHON = ROOT / ".venv-bench" / "bin" / "python"


@pytest.fixture(scope="session")
def bench_python() -> Path:
    """The interpreter of ``make bench-venv``; CI builds it, so there its absence is a failure."""
    if not BENCH_PYTHON.exists():
        message = f"{BENCH_PYTHON} is missing: run `make bench-venv`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return BENCH_PYTHON
