"""Each benchmark run for real at tiny size, as the orchestrator launches it; its output checked."""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
BENCHKIT = BENCHMARKS / "benchkit"
TINY = ["--warmup", "1", "--measures", "3", "--every", "2", "--device", "cpu"]

# id: (folder, framework module, extra argv, units, reports loss)
CASES: dict[str, tuple[str, str, list[str], str, bool]] = {
    "matmul-fp32": ("matmul", "torch", ["--dtype", "fp32", "--size", "64"], "TFLOPS", False),
    "matmul-bf16": ("matmul", "torch", ["--dtype", "bf16", "--size", "32"], "TFLOPS", False),
    "convnet": ("convnet", "torch", ["--batch-size", "4", "--width", "4"], "items/s", True),
    "jaxmlp": ("jaxmlp", "jax", ["--batch-size", "16", "--hidden", "16"], "items/s", True),
}


@functools.cache
def run(case: str, tmp: Path) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    folder, _, argv, _, _ = CASES[case]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(BENCHKIT), os.environ.get("PYTHONPATH", "")]),
        "MBCTL_DATA": str(tmp),
        "MBCTL_JOB_ID": f"{case}.0",
    }
    proc = subprocess.run(
        [sys.executable, "main.py", *TINY, *argv],
        cwd=BENCHMARKS / folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"mbctl"')]
    return proc, events


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    pytest.importorskip(CASES[name][1])
    return name


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.mark.slow
def test_benchmark_speaks_the_protocol(case: str, cache: Path) -> None:
    folder, _, _, units, reports_loss = CASES[case]
    proc, events = run(case, cache)
    assert proc.returncode == 0, proc.stderr
    names = [e["event"] for e in events]
    assert names[0] == "start" and names[-1] == "end"
    start = events[0]
    assert start["bench"] == folder and start["pid"] > 0 and "python" in start["versions"]
    rates = [e for e in events if e["event"] == "rate"]
    assert len(rates) == 3
    assert all(r["value"] > 0 and r["units"] == units and r["task"] == "train" for r in rates)
    assert [(e["step"], e["total"]) for e in events if e["event"] == "progress"] == [
        (1, 3),
        (2, 3),
        (3, 3),
    ]
    assert events[-1]["status"] == "early_stop"
    losses = [e["value"] for e in events if e["event"] == "loss"]
    if reports_loss:
        assert len(losses) == 4 and all(math.isfinite(v) for v in losses)  # warm-up + 3
    else:
        assert losses == []


@pytest.mark.slow
def test_benchmark_output_passes_the_orchestrator_parser(case: str, cache: Path) -> None:
    metrics = pytest.importorskip("orchestrator.metrics")
    proc, _ = run(case, cache)
    parser = metrics.MetricsParser()
    parsed = [ev for line in proc.stdout.splitlines() if (ev := parser.feed(line)) is not None]
    assert parser.warnings == 0, parser.messages
    assert parsed and parsed[-1] == {"event": "end", "t": parsed[-1]["t"], "status": "early_stop"}


def test_every_benchmark_folder_is_complete() -> None:
    yaml = pytest.importorskip("yaml")
    for folder in ("matmul", "convnet", "jaxmlp"):
        path = BENCHMARKS / folder
        assert (path / "main.py").is_file() and (path / "requirements.txt").is_file()
        meta = yaml.safe_load((path / "bench.yaml").read_text())
        assert meta["name"] == folder and meta["status"] == "ready"
        assert {"description", "domain", "framework", "unit", "weight"} <= set(meta)


def test_smoke_suite_names_existing_benchmarks_with_their_units() -> None:
    yaml = pytest.importorskip("yaml")
    suite = yaml.safe_load((BENCHMARKS / "suites" / "smoke.yaml").read_text())
    assert suite["name"] == "smoke" and set(suite["benchmarks"]) == {"fp32", "convnet", "jax-mlp"}
    for name, bench in suite["benchmarks"].items():
        meta = yaml.safe_load((BENCHMARKS / bench["definition"] / "bench.yaml").read_text())
        assert bench["unit"] == meta["unit"], name
        assert bench["tags"] and bench["weight"] > 0
        assert all(str(flag).startswith("--") for flag in bench["argv"]), name
