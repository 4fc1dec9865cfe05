"""Process containment: no descendant of a job outlives it, its timeout or any number of Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from orchestrator import workflow
from orchestrator.results import read_events

RATE = 'print(json.dumps({"mbctl": 1, "event": "rate", "value": 1.0, "units": "items/s", "task": "train"}), flush=True)'

# main → child → grandchild, each recording its pid; with IGNORE_TERM every one ignores SIGTERM
FAMILY = f"""
    import json, os, signal, subprocess, sys, time
    pids = os.environ["PIDS"]
    if os.environ.get("IGNORE_TERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    depth = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    if depth < 2:
        subprocess.Popen([sys.executable, __file__, str(depth + 1)])
    with open(os.path.join(pids, str(os.getpid())), "w"):
        pass
    if depth == 0:
        {RATE}
        time.sleep(float(os.environ.get("MAIN_SLEEP", "0")))
    else:
        time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split()[2] != "Z"
    except OSError:
        return False


def wait_for_pids(folder: Path, count: int) -> list[int]:
    deadline = time.monotonic() + 60
    while len(list(folder.iterdir())) < count:
        assert time.monotonic() < deadline, "the job never started its family"
        time.sleep(0.05)
    return [int(p.name) for p in folder.iterdir()]


def assert_all_gone(pids: list[int]) -> None:
    # SIGKILL is delivered asynchronously: allow the kernel a moment, never minutes
    deadline = time.monotonic() + 10
    while any(alive(p) for p in pids):
        assert time.monotonic() < deadline, f"survivors: {[p for p in pids if alive(p)]}"
        time.sleep(0.05)


@pytest.fixture
def family(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "benchmarks"
    (root / "family").mkdir(parents=True)
    (root / "family" / "main.py").write_text(textwrap.dedent(FAMILY))
    (root / "benchkit").mkdir()
    (root / "suites").mkdir()
    suite = {"name": "procs", "benchmarks": {"family": {"max_duration": 120}}}
    (root / "suites" / "procs.yaml").write_text(json.dumps(suite))
    monkeypatch.setenv("MBCTL_BENCHMARKS", str(root))
    pids = tmp_path / "pids"
    pids.mkdir()
    monkeypatch.setenv("PIDS", str(pids))
    return pids


def request(tmp_path: Path, *overrides: str) -> workflow.Request:
    return workflow.Request(
        suite="procs",
        vendor="cpu",
        backend="local",
        results=tmp_path / "runs",
        data_dir=tmp_path / "data",
        overrides=overrides,
    )


def test_grandchildren_die_when_the_job_ends(
    family: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAIN_SLEEP", "1")  # long enough for the grandchild to record itself
    req = request(tmp_path)
    result = workflow.run(req, workflow.prepare(req))
    pids = [int(p.name) for p in family.iterdir()]
    assert len(pids) == 3
    assert_all_gone(pids)
    assert [s.status for s in result.outcome.states] == ["ok"]


@pytest.mark.slow
def test_timeout_kills_term_ignoring_descendants(
    family: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IGNORE_TERM", "1")
    monkeypatch.setenv("MAIN_SLEEP", "600")
    req = request(tmp_path, "family.max_duration=3")
    result = workflow.run(req, workflow.prepare(req))
    assert [s.status for s in result.outcome.states] == ["timeout"]
    assert_all_gone([int(p.name) for p in family.iterdir()])


@pytest.mark.slow
@pytest.mark.parametrize("interrupts", [1, 2, 3])
def test_any_number_of_ctrl_c_leaves_nothing_running(
    family: Path, tmp_path: Path, interrupts: int
) -> None:
    """A real `mbctl run` gets SIGINT once, twice (during the SIGTERM grace) or three times."""
    env = {**os.environ, "IGNORE_TERM": "1", "MAIN_SLEEP": "600"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "run", "--suite", "procs", "--vendor", "cpu",
         "--backend", "local", "--results", str(tmp_path / "runs"), "--data", str(tmp_path / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    pids = wait_for_pids(family, 3)
    for _ in range(interrupts):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert_all_gone(pids)
    (run,) = [p for p in (tmp_path / "runs").iterdir() if not p.is_symlink()]  # not runs/latest
    events = read_events(run / "family.0.jsonl")
    assert events[-1]["event"] == "exit" and events[-1]["status"] == "cancelled"
    assert [e["value"] for e in events if e["event"] == "rate"] == [1.0]
