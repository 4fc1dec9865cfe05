"""Measures the local backend's overhead per job: a runner job vs. the same script run bare (target ≤ 0.5 s)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from orchestrator.backends.base import Phase, RunContext
from orchestrator.backends.local import LocalBackend
from orchestrator.plan import Job, Plan, PlanKind
from orchestrator.results import RunDir
from orchestrator.runner import execute

SCRIPT = """
import json, time
for i in range(5):
    print(json.dumps({"mbctl": 1, "event": "rate", "t": time.time(), "value": 1.0, "units": "items/s", "task": "train"}))
"""


def main(repeats: int = 10) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "benchmarks"
        (root / "noop").mkdir(parents=True)
        (root / "noop" / "main.py").write_text(SCRIPT)
        bare, managed = [], []
        for i in range(repeats):
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "main.py"], cwd=root / "noop", check=True, capture_output=True
            )
            bare.append(time.perf_counter() - start)

            job = Job(
                id=f"noop.{i}",
                bench="noop",
                tag=str(i),
                definition="noop",
                vendor="cpu",
                plan=PlanKind.NJOBS,
                max_duration=60,
            )
            plan = Plan(suite="bench", vendor="cpu", devices=(), nodes=1, jobs=(job,))
            run = RunDir.create(
                Path(tmp) / "runs", {"suite": {"name": "bench", "benchmarks": []}}, run_id=f"r{i}"
            )
            ctx = RunContext(
                run_id=f"r{i}",
                run_dir=run.path,
                data_dir=Path(tmp),
                benchmarks_root=root,
                phase=Phase.RUN,
            )
            start = time.perf_counter()
            outcome = execute(plan, LocalBackend(), run, ctx)
            managed.append(time.perf_counter() - start)
            assert outcome.states[0].status == "ok", json.dumps(outcome.states[0].reason)
    overhead = statistics.median(managed) - statistics.median(bare)
    print(
        f"local backend: bare {statistics.median(bare) * 1000:.0f} ms, through the runner "
        f"{statistics.median(managed) * 1000:.0f} ms -> overhead {overhead * 1000:.0f} ms per job (target <= 500 ms)"
    )
    return overhead


if __name__ == "__main__":
    main()
