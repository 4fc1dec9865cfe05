"""Every ready benchmark of the standard and precision suites, prepared and run at tiny size on CPU.

The real path: ``workflow.prepare``/``workflow.run`` with the local backend and the benchmark
environment's interpreter, a fresh dataset cache and results folder. One module-scoped run per
phase keeps the whole catalogue within minutes on two cores.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator import config, workflow
from orchestrator.backends.base import Phase
from orchestrator.results import read_events

# The module-scoped run happens inside the first test: it gets the whole catalogue's time.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

#: The precision suite repeats two main-suite benchmarks; run them once.
SUITES = {"standard": (), "precision": ("bert-tf32-fp16", "convnext_large-tf32-fp16")}


@dataclass
class Phases:
    prepare: list[workflow.RunResult]
    reprepare: list[workflow.RunResult]
    run: list[workflow.RunResult]
    seconds: dict[str, float]


def _request(suite: str, exclude: tuple[str, ...], python: Path, tmp: Path) -> workflow.Request:
    return workflow.Request(
        suite=str(config.benchmarks_root() / "suites" / f"{suite}.yaml"),
        profile="tiny",
        vendor="cpu",
        backend="local",
        exclude=exclude,
        results=tmp / "runs",
        data_dir=tmp / "data",
        python=str(python),
    )


def _phase(requests: list[workflow.Request], phase: Phase) -> list[workflow.RunResult]:
    return [workflow.run(r, workflow.prepare(r, phase=phase), phase=phase) for r in requests]


@pytest.fixture(scope="module")
def catalogue(bench_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Phases]:
    tmp = tmp_path_factory.mktemp("catalogue")
    requests = [_request(s, ex, bench_python, tmp) for s, ex in SUITES.items()]
    seconds = {}
    start = time.monotonic()
    prepared = _phase(requests, Phase.PREPARE)
    seconds["prepare"] = time.monotonic() - start
    start = time.monotonic()
    reprepared = _phase(requests, Phase.PREPARE)
    seconds["reprepare"] = time.monotonic() - start
    start = time.monotonic()
    ran = _phase(requests, Phase.RUN)
    seconds["run"] = time.monotonic() - start
    print(f"\ntiny catalogue wall time: {seconds}")
    yield Phases(prepared, reprepared, ran, seconds)


def _states(results: list[workflow.RunResult]) -> dict[str, object]:
    return {s.job.bench: s for r in results for s in r.outcome.states}


def _ready_names() -> set[str]:
    names: set[str] = set()
    for suite, exclude in SUITES.items():
        loaded = config.load_suite(config.benchmarks_root() / "suites" / f"{suite}.yaml")
        # {nodes: N} benchmarks need --nodes: test_catalogue_nodes.py runs them over two nodes
        names |= {b.name for b in loaded.benchmarks if b.status == "ready" and b.plan.n == 1} - set(
            exclude
        )
    return names


def test_prepare_succeeds_and_is_idempotent(catalogue: Phases) -> None:
    for phase in (catalogue.prepare, catalogue.reprepare):
        states = _states(phase)
        assert states, "no benchmark has a prepare.py"
        failed = {b: s.reason for b, s in states.items() if s.status != "ok"}
        assert not failed
    # The second prepare finds every dataset by its content hash and generates nothing.
    slow = {
        b: round(s.elapsed, 2) for b, s in _states(catalogue.reprepare).items() if s.elapsed >= 2.0
    }
    assert not slow


def test_every_ready_benchmark_runs_at_tiny_size(catalogue: Phases) -> None:
    states = _states(catalogue.run)
    assert set(states) == _ready_names()
    problems = {}
    for result in catalogue.run:
        for state in result.outcome.states:
            events = read_events(result.run.events_path(state.job.id))
            rates = [e for e in events if e["event"] == "rate" and e.get("task") == "train"]
            ends = [e for e in events if e["event"] == "end"]
            losses = [e["value"] for e in events if e["event"] == "loss"]
            starts = [e for e in events if e["event"] == "start"]
            if state.status != "ok":
                problems[state.job.bench] = f"{state.status}: {state.reason}"
            elif len(rates) < 5 or not all(r["value"] > 0 for r in rates):
                problems[state.job.bench] = f"{len(rates)} positive train rates"
            elif [e["status"] for e in ends] != ["early_stop"]:
                problems[state.job.bench] = f"end events {ends}"
            elif len(starts) != 1:  # DDP ranks other than 0 stay silent
                problems[state.job.bench] = f"{len(starts)} start events"
            elif not all(math.isfinite(v) for v in losses):
                problems[state.job.bench] = f"non-finite loss in {losses}"
    assert not problems


def test_tiny_catalogue_fits_in_ten_minutes(catalogue: Phases) -> None:
    total = catalogue.seconds["prepare"] + catalogue.seconds["run"]
    # Measured at about half of this on the 2-core CI machine; the margin absorbs its neighbours.
    assert total < 900, catalogue.seconds
