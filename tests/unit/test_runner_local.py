"""The local backend and the runner end to end, with small scripted benchmarks (no frameworks)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from orchestrator import workflow
from orchestrator.backends.base import split_lines
from orchestrator.results import RunDir, read_events

SCRIPTS = {
    "good": """
        import json, os, sys, time
        def emit(event, **kw):
            print(json.dumps({"mbctl": 1, "event": event, "t": time.time(), **kw}), flush=True)
        device = {"vendor": os.environ["MBCTL_VENDOR"], "type": "cpu", "count": 1}
        emit("start", bench="good", argv=sys.argv[1:], versions={"python": "3"}, pid=1, device=device)
        print("plain output line")
        for i in range(6):
            emit("rate", value=100.0 + i, units="items/s", task="train")
            emit("loss", value=1.0 / (i + 1), task="train")
        emit("end", status="early_stop")
    """,
    "fails": """
        import json, time
        print(json.dumps({"mbctl": 1, "event": "rate", "t": time.time(), "value": 5.0, "units": "items/s", "task": "train"}), flush=True)
        raise SystemExit(3)
    """,
    "garbage": """
        import json, sys, time
        sys.stdout.buffer.write(b"\\xff\\xfe binary \\x00 junk\\n")
        print('{"mbctl": 1, "event": "rate", "value": "fast"}')
        print('{"mbctl": 1, "event": ')
        print("x" * 3_000_000)
        print(json.dumps({"mbctl": 1, "event": "rate", "t": time.time(), "value": 7.0, "units": "items/s", "task": "train"}))
    """,
    "silent": """
        print("I never report a metric")
    """,
    "hangs": """
        import json, time
        print(json.dumps({"mbctl": 1, "event": "rate", "t": time.time(), "value": 1.0, "units": "items/s", "task": "train"}), flush=True)
        time.sleep(600)
    """,
    "nan": """
        import json, time
        print(json.dumps({"mbctl": 1, "event": "rate", "t": time.time(), "value": 1.0, "units": "items/s", "task": "train"}))
        print('{"mbctl": 1, "event": "loss", "t": 1.0, "value": NaN, "task": "train"}')
    """,
}


@pytest.fixture
def bench_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "benchmarks"
    for name, body in SCRIPTS.items():
        (root / name).mkdir(parents=True)
        (root / name / "main.py").write_text(textwrap.dedent(body))
    (root / "benchkit").mkdir()
    (root / "suites").mkdir()
    suite = {
        "name": "scripted",
        "defaults": {"max_duration": 30},
        "benchmarks": {n: {"definition": n} for n in SCRIPTS},
    }
    suite["benchmarks"]["hangs"]["max_duration"] = 2
    (root / "suites" / "scripted.yaml").write_text(json.dumps(suite))
    monkeypatch.setenv("MBCTL_BENCHMARKS", str(root))
    return root


def request(tmp_path: Path, **kw: object) -> workflow.Request:
    base: dict[str, object] = {
        "suite": "scripted",
        "vendor": "cpu",
        "backend": "local",
        "results": tmp_path / "runs",
        "data_dir": tmp_path / "data",
    }
    return workflow.Request(**{**base, **kw})  # type: ignore[arg-type]


def statuses(run: RunDir) -> dict[str, str]:
    return {job: read_events(run.events_path(job))[-1]["status"] for job in run.job_ids()}


def test_every_outcome_is_recorded(bench_root: Path, tmp_path: Path) -> None:
    req = request(tmp_path)
    result = workflow.run(req, workflow.prepare(req))
    run = result.run
    assert statuses(run) == {
        "good.0": "ok",
        "fails.0": "failed",
        "garbage.0": "ok",
        "silent.0": "failed",
        "hangs.0": "timeout",
        "nan.0": "failed",
    }
    reasons = {s.job.id: s.reason for s in result.outcome.states}
    assert reasons["fails.0"] == "exited with code 3"
    assert "max_duration=2s" in (reasons["hangs.0"] or "")
    assert "without reporting any training rate" in (reasons["silent.0"] or "")
    assert reasons["nan.0"] == "loss became NaN"

    good = read_events(run.events_path("good.0"))
    assert [e["event"] for e in good][:2] == ["config", "start"]
    assert [e["value"] for e in good if e["event"] == "rate"] == [
        100.0,
        101.0,
        102.0,
        103.0,
        104.0,
        105.0,
    ]
    assert "plain output line" in run.log_path("good.0").read_text()
    # measurements taken before the failure are kept
    assert [
        e["value"] for e in read_events(run.events_path("fails.0")) if e["event"] == "rate"
    ] == [5.0]
    assert [
        e["value"] for e in read_events(run.events_path("hangs.0")) if e["event"] == "rate"
    ] == [1.0]
    garbage = [e for e in read_events(run.events_path("garbage.0")) if e["event"] == "rate"]
    assert [e["value"] for e in garbage] == [7.0]
    state = next(s for s in result.outcome.states if s.job.id == "garbage.0")
    assert state.warnings >= 2
    meta = run.meta()
    assert meta["suite"]["name"] == "scripted" and meta["vendor"] == "cpu"
    assert meta["system"]["software"]["python"] == "3"  # from the start event of the job
    # the planned vendor reached the job, and what it ran on reached meta.json
    assert meta["devices"] == {"good.0": {"vendor": "cpu", "type": "cpu", "count": 1}}


def test_resume_runs_only_missing_jobs(bench_root: Path, tmp_path: Path) -> None:
    req = request(tmp_path, select=("good",))
    first = workflow.run(req, workflow.prepare(req)).run
    (first.path / "good.0.jsonl").write_text(
        '{"event": "config", "t": 1, "job": {}}\n'
    )  # as if killed
    again = request(tmp_path, select=("good", "silent"), resume=first.path)
    outcome = workflow.run(again, workflow.prepare(again)).outcome
    assert sorted(s.job.id for s in outcome.states) == ["good.0", "silent.0"]
    assert statuses(first)["good.0"] == "ok"
    third = workflow.run(again, workflow.prepare(again)).outcome
    assert third.states == []


def test_ctrl_c_cancels_running_jobs_and_keeps_results(bench_root: Path, tmp_path: Path) -> None:
    req = request(tmp_path, select=("hangs",), overrides=("hangs.max_duration=60",))
    prepared = workflow.prepare(req)
    timer = threading.Timer(1.5, lambda: signal.raise_signal(signal.SIGINT))
    timer.start()
    started = time.monotonic()
    result = workflow.run(req, prepared)
    assert time.monotonic() - started < 15
    assert result.outcome.interrupted
    assert statuses(result.run) == {"hangs.0": "cancelled"}
    assert [
        e["value"] for e in read_events(result.run.events_path("hangs.0")) if e["event"] == "rate"
    ] == [1.0]
    assert result.run.completed_job_ids() == set()


def test_cancel_kills_the_whole_process_group(tmp_path: Path) -> None:
    """A benchmark's forked workers (DataLoader, DDP) die with it."""
    from orchestrator.backends.base import Phase, RunContext
    from orchestrator.backends.local import LocalBackend
    from orchestrator.plan import Job, PlanKind

    root = tmp_path / "b"
    (root / "forker").mkdir(parents=True)
    pidfile = tmp_path / "child.pid"
    (root / "forker" / "main.py").write_text(
        f"import subprocess, sys, time\np = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\ntime.sleep(600)\n"
    )
    backend = LocalBackend()
    job = Job(
        id="forker.0",
        bench="forker",
        tag="0",
        definition="forker",
        vendor="cpu",
        plan=PlanKind.PER_GPU,
        max_duration=60,
    )
    ctx = RunContext(
        run_id="r", run_dir=tmp_path, data_dir=tmp_path, benchmarks_root=root, phase=Phase.RUN
    )
    handle = backend.submit(job, ctx)
    deadline = time.monotonic() + 20
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child = int(pidfile.read_text())
    backend.cancel(handle)
    assert backend.wait(handle, timeout=5) is not None
    deadline = time.monotonic() + 10
    while _alive(child):
        assert time.monotonic() < deadline, "forked worker survived cancel"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_split_lines_cuts_runaway_lines_and_keeps_partial_tail() -> None:
    chunks = [b"ab", b"c\nde", b"f" * 10, b"\r\nlast"]
    assert list(split_lines(chunks, max_line=8)) == ["abc", "deffffff", "ffff", "last"]
    assert list(split_lines([b"\xff\n"])) == ["\ufffd"]


def test_cli_reports_interrupt_with_exit_130(bench_root: Path, tmp_path: Path) -> None:
    """A real `mbctl run` process gets SIGINT: exit 130, one-line message, results kept."""
    env = {**os.environ, "MBCTL_BENCHMARKS": str(bench_root)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "run",
            "--suite",
            "scripted",
            "--select",
            "hangs",
            "--set",
            "hangs.max_duration=60",
            "--vendor",
            "cpu",
            "--backend",
            "local",
            "--results",
            str(tmp_path / "runs"),
            "--data",
            str(tmp_path / "data"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "error: interrupted; results measured so far are kept" in err
    assert "Traceback" not in err


def test_prepare_runs_prepare_py_once_per_definition(bench_root: Path, tmp_path: Path) -> None:
    (bench_root / "good" / "prepare.py").write_text(
        "import os, pathlib\n"
        "out = pathlib.Path(os.environ['MBCTL_DATA']) / 'good'\n"
        "out.mkdir(parents=True, exist_ok=True)\n"
        "(out / 'ready').write_text(os.environ['MBCTL_PHASE'])\n"
    )
    from orchestrator.backends.base import Phase

    req = request(tmp_path)
    prepared = workflow.prepare(req, phase=Phase.PREPARE)
    assert [j.id for j in prepared.plan.jobs] == ["good.0"]  # only definitions with a prepare.py
    result = workflow.run(req, prepared, phase=Phase.PREPARE)
    assert statuses(result.run) == {"good.0": "ok"}  # no rate is expected from a prepare job
    assert (tmp_path / "data" / "good" / "ready").read_text() == "prepare"


def test_relative_interpreter_is_resolved_before_jobs_change_folder(
    bench_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv_python = Path(sys.executable)
    monkeypatch.chdir(venv_python.parent.parent)
    relative = str(Path(venv_python.parent.name) / venv_python.name)  # e.g. bin/python
    req = request(tmp_path, select=("good",), python=relative)
    result = workflow.run(req, workflow.prepare(req))
    assert statuses(result.run) == {"good.0": "ok"}
    from orchestrator.errors import BackendUnavailable

    with pytest.raises(BackendUnavailable, match="interpreter no/such/python does not exist"):
        workflow.run(request(tmp_path, python="no/such/python"), workflow.prepare(req))
