"""The `-nodes` benchmarks of the standard suite at tiny size, as two torchrun agents on loopback.

The real path: ``workflow.prepare``/``workflow.run`` with ``--nodes 2`` on the local backend,
which starts one process per node with the MBCTL_* multi-node variables; benchkit turns them into
torchrun's static rendezvous (``--nnodes 2 --node-rank r``), one gloo worker per node. A node
that never joined would leave the other waiting in the rendezvous until the job's deadline.
The other new benchmarks (2 workers of one node, single device) run in test_catalogue_tiny.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from orchestrator import config, workflow
from orchestrator.backends.base import Phase
from orchestrator.plan import PlanKind
from orchestrator.results import read_events

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _multinode() -> tuple[str, ...]:
    suite = config.load_suite(config.benchmarks_root() / "suites" / "standard.yaml")
    return tuple(b.name for b in suite.benchmarks if b.plan.kind is PlanKind.NODES)


def test_nodes_benchmarks_run_over_two_nodes_with_static_rendezvous(
    bench_python: Path, tmp_path: Path
) -> None:
    names = _multinode()
    assert set(names) == {"llm-lora-ddp-nodes", "llm-full-mp-nodes", "diffusion-nodes"}
    req = workflow.Request(
        suite="standard",
        profile="tiny",
        vendor="cpu",
        backend="local",
        select=names,
        nodes=2,
        results=tmp_path / "runs",
        data_dir=tmp_path / "data",
        python=str(bench_python),
    )
    prepared = workflow.run(req, workflow.prepare(req, phase=Phase.PREPARE), phase=Phase.PREPARE)
    assert not prepared.outcome.failed
    result = workflow.run(req, workflow.prepare(req))
    problems = {}
    for state in result.outcome.states:
        assert state.job.nodes == 2 and state.job.id.endswith(".N2")
        events = read_events(result.run.events_path(state.job.id))
        rates = [e["value"] for e in events if e["event"] == "rate" and e.get("task") == "train"]
        losses = [e["value"] for e in events if e["event"] == "loss"]
        starts = [e for e in events if e["event"] == "start"]
        if state.status != "ok":
            problems[state.job.bench] = f"{state.status}: {state.reason}"
        elif len(rates) != 5 or min(rates) <= 0:
            problems[state.job.bench] = f"rates {rates}"
        elif len(starts) != 1:  # only global rank 0 speaks, whatever its node
            problems[state.job.bench] = f"{len(starts)} start events"
        elif not all(math.isfinite(v) for v in losses):
            problems[state.job.bench] = f"losses {losses}"
    assert {s.job.bench for s in result.outcome.states} == set(names)
    assert not problems
