"""mbctl: container-per-benchmark orchestrator for AI accelerator benchmarks."""

from __future__ import annotations

# the single source of the version (pyproject reads it): importlib.metadata costs ~30 ms at start-up
__version__ = "0.1.0"
