"""bench/gpu_check.py: what it runs on a GPU, and the same path end to end on a CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.catalogue.conftest import ROOT

SCRIPT = ROOT / "bench" / "gpu_check.py"


def _mbctl_list(suite: str) -> list[dict[str, object]]:
    out = subprocess.run(
        [sys.executable, "-m", "orchestrator", "list", "--suite", suite, "--format", "json"],
        check=True, capture_output=True, text=True, cwd=ROOT,
    ).stdout  # fmt: skip
    benchmarks: list[dict[str, object]] = json.loads(out)["benchmarks"]
    return benchmarks


def test_the_check_covers_the_precision_suite_and_every_scored_single_gpu_benchmark() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run"], check=True, capture_output=True, text=True
    )
    listed = {tuple(line.split()) for line in done.stdout.splitlines()[1:]}
    precision = {("precision", b["name"]) for b in _mbctl_list("precision")}
    scored = {
        ("standard", b["name"])
        for b in _mbctl_list("standard")
        if float(str(b["weight"])) > 0
        and b["plan"] == {"kind": "per_gpu", "n": 1}
        and b["enabled"]
        and ("precision", b["name"]) not in precision
    }
    assert listed == precision | scored
    assert "540 s (cuda, full)" in done.stdout.splitlines()[0]


@pytest.mark.slow
def test_the_check_runs_and_prints_each_rate_beside_the_h100_figure(
    bench_python: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'benchmarks' / 'benchkit'}"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--vendor", "cpu", "--profile", "tiny", "--python",
         str(bench_python), "--only", "fp32", "--budget", "120", "--results", str(tmp_path / "runs"),
         "--data", str(tmp_path / "data")],
        check=True, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    row = next(line.split() for line in done.stdout.splitlines() if line.startswith("fp32 "))
    assert row[1] == "ok"
    assert float(row[2]) > 0
    assert row[3] == "52.0"  # the report's H100 fp32 TFLOPS, from references/
    assert row[-1] == "TFLOPS"
