"""The GPU check: full-size precision suite and scored single-GPU benchmarks on one NVIDIA GPU.

Runs each benchmark with the local backend (``--python``: the interpreter that holds CUDA torch)
inside one time budget: a job's limit is the time left divided by the jobs left, so a job that
finishes early leaves its time to the next. Then prints each rate beside the Milabench report's
H100 figure (``references/h100-milabench-report.yaml``). ``--dry-run`` only prints the order;
``--vendor cpu --profile tiny`` runs the same path on a CPU, which is what the tests do.

Usage: ``python3 bench/gpu_check.py [--dry-run] [--budget SECONDS] [--python PY] [--only B ...]``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "references" / "h100-milabench-report.yaml"

#: Seconds the whole check may take (the issue's 9 minutes), of which prepare may use a share.
BUDGET = 540.0
PREPARE_SHARE = 0.2
#: No job gets less than this, however little is left: below it a full-size model cannot start.
MIN_JOB_SECONDS = 15.0
#: Measurements per job: enough for a mean and a spread, few enough for the budget.
MEASURES = 8


@dataclass(frozen=True)
class Item:
    """One benchmark of the check and the suite that defines it."""

    suite: str
    bench: str


def mbctl(*args: str) -> list[str]:
    """mbctl through this interpreter (the controller); ``--python`` only runs the jobs."""
    return [sys.executable, "-m", "orchestrator", *args]


def _env() -> dict[str, str]:
    paths = [str(ROOT), str(ROOT / "benchmarks" / "benchkit")]
    old = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, *([old] if old else [])])}


def suite_entries(suite: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        mbctl("list", "--suite", suite, "--format", "json"),
        check=True,
        capture_output=True,
        text=True,
        env=_env(),
    ).stdout
    entries: list[dict[str, Any]] = json.loads(out)["benchmarks"]
    return entries


def choose(only: list[str] | None = None) -> list[Item]:
    """The precision suite whole, then every scored single-GPU benchmark of ``standard``."""
    precision = [b["name"] for b in suite_entries("precision") if b["enabled"]]
    scored = [
        b["name"]
        for b in suite_entries("standard")
        if b["enabled"]
        and float(b["weight"]) > 0
        and b["plan"]["kind"] == "per_gpu"
        and b["name"] not in precision
    ]
    items = [Item("precision", b) for b in precision] + [Item("standard", b) for b in scored]
    return [i for i in items if only is None or i.bench in only]


def _target(opts: argparse.Namespace) -> list[str]:
    args = ["--profile", opts.profile, "--vendor", opts.vendor, "--backend", "local"]
    args += ["--python", opts.python, "--data", str(opts.data)]
    return args + ([] if opts.vendor == "cpu" else ["--devices", "1"])


def run_one(opts: argparse.Namespace, item: Item, limit: float) -> Path | None:
    """Run one benchmark with ``limit`` seconds; the run folder it made, if any."""
    before = set(opts.results.iterdir()) if opts.results.exists() else set()
    subprocess.run(
        mbctl(
            "run",
            "--suite",
            item.suite,
            "--select",
            item.bench,
            *_target(opts),
            "--results",
            str(opts.results),
            "--set",
            f"{item.bench}.max_duration={limit:.0f}",
            "--set",
            f"{item.bench}.argv.--measures={MEASURES}",
            "--format",
            "json",
        ),
        env=_env(),
        check=False,
        stdout=subprocess.DEVNULL,
    )
    made = sorted(set(opts.results.iterdir()) - before) if opts.results.exists() else []
    made = [p for p in made if not p.is_symlink()]  # runs/latest points at the newest run
    return made[-1] if made else None


def rates(run: Path) -> dict[str, dict[str, Any]]:
    """Benchmark name → its report row (perf, units, status) from ``mbctl report --format json``."""
    done = subprocess.run(
        mbctl("report", str(run), "--format", "json"),
        capture_output=True,
        text=True,
        env=_env(),
        check=False,
    )
    try:
        payload = json.loads(done.stdout)
    except json.JSONDecodeError:
        return {}
    rows = payload.get("benchmarks", [])
    return {row["name"]: row for row in rows if isinstance(row, dict) and "name" in row}


def table(results: dict[str, dict[str, Any]]) -> str:
    reference = yaml.safe_load(REFERENCE.read_text())["reference"]
    lines = [f"{'benchmark':28} {'status':10} {'rate':>14} {'H100 (report)':>14} {'ratio':>7} unit"]
    for bench, row in results.items():
        perf = row.get("perf")
        ref = reference.get(bench, {}).get("value")
        ok = isinstance(perf, int | float) and math.isfinite(perf)
        ratio = f"{perf / ref:7.2f}" if ok and ref else "      -"
        shown = f"{perf:14.4g}" if ok else f"{'-':>14}"
        ref_shown = f"{ref:14.1f}" if ref else f"{'-':>14}"
        status = str(row.get("status", "?"))
        lines.append(f"{bench:28} {status:10} {shown} {ref_shown} {ratio} {row.get('units', '')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print the order, run nothing")
    parser.add_argument("--budget", type=float, default=BUDGET, help="seconds for the whole check")
    parser.add_argument("--python", default="python3", help="interpreter with CUDA torch")
    parser.add_argument("--vendor", default="cuda")
    parser.add_argument("--profile", default="full")
    parser.add_argument("--only", nargs="*", help="these benchmarks only")
    parser.add_argument("--results", type=Path, default=ROOT / "runs" / "gpu-check")
    parser.add_argument(
        "--data", type=Path, default=Path(os.environ.get("MBCTL_DATA", "/tmp/mbctl-data"))
    )
    opts = parser.parse_args(argv)

    items = choose(opts.only)
    print(
        f"gpu check: {len(items)} benchmarks in {opts.budget:.0f} s ({opts.vendor}, {opts.profile})"
    )
    if opts.dry_run:
        for item in items:
            print(f"  {item.suite:10} {item.bench}")
        return 0

    start = time.monotonic()
    deadline = start + opts.budget
    for suite in dict.fromkeys(i.suite for i in items):
        selected = [arg for i in items if i.suite == suite for arg in ("--select", i.bench)]
        left = start + opts.budget * PREPARE_SHARE - time.monotonic()
        if left <= 0:
            break
        try:
            subprocess.run(
                mbctl("prepare", "--suite", suite, *selected, *_target(opts),
                      "--results", str(opts.results / ".prepare")),
                env=_env(), timeout=left, check=False, stdout=subprocess.DEVNULL,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            print(f"gpu check: prepare of {suite} ran out of its share of the budget")
    results: dict[str, dict[str, Any]] = {}
    for n, item in enumerate(items):
        limit = max(MIN_JOB_SECONDS, (deadline - time.monotonic()) / (len(items) - n))
        run = run_one(opts, item, limit)
        row = rates(run).get(item.bench) if run else None
        results[item.bench] = row or {"status": "no result"}
        print(
            f"  {item.bench}: {results[item.bench].get('status')} ({limit:.0f} s limit)", flush=True
        )
    print(table(results))
    print(f"gpu check: {time.monotonic() - start:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
