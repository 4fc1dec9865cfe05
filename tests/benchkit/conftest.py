"""Shared fixtures of the benchkit tests: the harness on sys.path, an in-memory emitter."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHKIT = ROOT / "benchmarks" / "benchkit"

# Benchmarks find the harness through PYTHONPATH (or a pip install in images); so do the tests.
if str(BENCHKIT) not in sys.path:
    sys.path.insert(0, str(BENCHKIT))

from benchkit.protocol import Emitter  # noqa: E402


class Captured:
    """An emitter writing into memory, with the events read back as dicts."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.emitter = Emitter(self.stream)

    def lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        parsed = [json.loads(line) for line in self.lines()]
        return [e for e in parsed if name is None or e["event"] == name]

    def names(self) -> list[str]:
        return [e["event"] for e in self.events()]


@pytest.fixture
def captured() -> Captured:
    return Captured()
