"""Faults of the results disk, for real: a 256 KiB tmpfs that fills up, and a read-only mount.

Mounting needs root (CI's container runs tests as root); elsewhere these tests skip, saying so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import workflow
from orchestrator.errors import ResultsError
from orchestrator.results import DISK_FULL, read_events

FILLER = """
    import json, sys, time
    def rate(v):
        print(json.dumps({"mbctl": 1, "event": "rate", "value": v, "units": "items/s", "task": "train"}), flush=True)
    for i in range(5):
        rate(10.0 + i)
    for i in range(2000):
        print("x" * 1000, flush=True)  # ordinary output: 2 MB into the job's log
    for i in range(5):
        rate(99.0)
    time.sleep(600)  # a runner that missed the fault would wait for max_duration
"""


def _mount(target: Path, options: str) -> bool:
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, f"mbctl-test-{uuid.uuid4().hex[:6]}", str(target)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "results"
    if os.geteuid() != 0 or not _mount(mount, "size=256k,mode=0755"):
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def filler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "benchmarks"
    (root / "filler").mkdir(parents=True)
    (root / "filler" / "main.py").write_text(textwrap.dedent(FILLER))
    (root / "benchkit").mkdir()
    (root / "suites").mkdir()
    suite = {"name": "disk", "benchmarks": {"filler": {"max_duration": 120}}}
    (root / "suites" / "disk.yaml").write_text(json.dumps(suite))
    monkeypatch.setenv("MBCTL_BENCHMARKS", str(root))
    return root


def test_disk_full_fails_the_job_keeps_measurements_and_summary_waits_for_space(
    tiny_fs: Path, filler: Path, tmp_path: Path
) -> None:
    from orchestrator import report

    req = workflow.Request(
        suite="disk", vendor="cpu", backend="local", results=tiny_fs, data_dir=tmp_path / "data"
    )
    result = workflow.run(req, workflow.prepare(req))
    (state,) = result.outcome.states
    assert (state.status, state.reason) == ("failed", DISK_FULL)
    rates = [
        e["value"] for e in read_events(result.run.events_path("filler.0")) if e["event"] == "rate"
    ]
    assert rates == [10.0, 11.0, 12.0, 13.0, 14.0]  # measured before the disk filled
    scored = report.to_json(report.report([result.run.path]))
    with pytest.raises(ResultsError, match=r"cannot write .*summary.json: disk full"):
        result.run.write_summary(scored)
    result.run.log_path("filler.0").unlink()  # space comes back
    result.run.write_summary(scored)
    assert json.loads((result.run.path / "summary.json").read_text())["benchmarks"]


def test_read_only_results_folder_is_one_line_error(filler: Path, tmp_path: Path) -> None:
    mount = tmp_path / "ro"
    if os.geteuid() != 0 or not _mount(mount, "size=64k,ro"):
        pytest.skip("mounting a tmpfs needs root")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "run", "--suite", "disk", "--vendor", "cpu",
             "--backend", "local", "--results", str(mount), "--data", str(tmp_path / "data")],
            capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error: " in line]
    assert len(errors) == 1 and "error: cannot create run directory" in errors[0]
    assert errors[0].endswith("Read-only file system")
    assert "Traceback" not in proc.stderr


def test_data_that_is_a_file_is_one_line_error(filler: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from orchestrator.cli.main import app

    afile = tmp_path / "afile"
    afile.write_text("")
    args = ["run", "--suite", "disk", "--vendor", "cpu", "--backend", "local"]
    result = CliRunner().invoke(
        app, [*args, "--data", str(afile), "--results", str(tmp_path / "r")]
    )
    assert result.exit_code == 2, result.output
    assert f"error: --data {afile}: is a file, not a folder" in result.output
    assert not (tmp_path / "r").exists()
