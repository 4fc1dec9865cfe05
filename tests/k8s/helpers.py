"""Helpers of the Kubernetes tests: the test suite's plans, and driving a backend as the runner does."""

from __future__ import annotations

import json
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator import config
from orchestrator.backends.base import Exit, RunContext
from orchestrator.plan import Job, Plan, make_plan, parse_devices

HERE = Path(__file__).resolve().parent
SUITE = HERE / "data" / "suite.yaml"
DIGEST = "sha256:" + "0" * 64
VENDORS = ("cpu", "cuda", "rocm", "hpu", "xpu")


def plan_for(vendor: str, *, devices: str = "2", nodes: int = 2) -> Plan:
    """The test suite planned for ``vendor``: a per-GPU, an njobs and a two-node benchmark."""
    suite = config.load_suite(SUITE)
    images = {b.name: f"registry.example/mbctl/{b.definition}@{DIGEST}" for b in suite.benchmarks}
    chosen = parse_devices(devices) if vendor != "cpu" else ()
    return make_plan(suite, vendor=vendor, devices=chosen, nodes=nodes, images=images)


def preparation(plan: Plan) -> Plan:
    """The prepare plan, as if every benchmark folder had a prepare.py."""
    from orchestrator.workflow import preparation_plan

    with tempfile.TemporaryDirectory() as root:
        for job in plan.jobs:
            (Path(root) / job.definition).mkdir(exist_ok=True)
            (Path(root) / job.definition / "prepare.py").touch()
        return preparation_plan(plan, Path(root))


def job_of(plan: Plan, bench: str) -> Job:
    return next(j for j in plan.jobs if j.bench == bench)


@dataclass
class Ran:
    """A driven job: its output lines, the node records the backend added to them, its exit."""

    lines: list[str]
    exit: Exit
    nodes: list[dict[str, Any]]


def drive(
    backend: Any,
    job: Job,
    ctx: RunContext,
    *,
    timeout: float = 15.0,
    cancel_after: float | None = None,
) -> Ran:
    """Submit, read the stream in a thread and wait (cancelling first if asked), as the runner does."""
    handle = backend.submit(job, ctx)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(backend.stream(handle)), daemon=True)
    reader.start()
    result = backend.wait(handle, timeout=cancel_after if cancel_after is not None else timeout)
    if cancel_after is not None:
        assert result is None, f"the job ended before it could be cancelled: {result}"
        backend.cancel(handle)
        result = backend.wait(handle, timeout=timeout)
    assert result is not None, "the job did not end in time"
    reader.join(timeout=timeout)
    assert not reader.is_alive(), "the log stream did not end"
    nodes = [json.loads(line) for line in lines if '"kind": "node"' in line]
    output = [line for line in lines if '"kind": "node"' not in line]
    return Ran(output, result, nodes)
