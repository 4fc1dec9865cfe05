"""A benchmark's lifetime: start/end events, errors as events and exit codes, prompt SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import TYPE_CHECKING

import benchkit
import pytest
from benchkit import GpuMonitor, TimedLoop, session, versions

if TYPE_CHECKING:
    from conftest import Captured

BENCHKIT = Path(__file__).resolve().parents[2] / "benchmarks" / "benchkit"


def test_versions_name_only_frameworks_already_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    found = versions()
    assert {"python", "platform", "benchkit"} <= set(found)
    assert "torch" not in found
    fake_torch = types.SimpleNamespace(
        __version__="2.9.0+rocm6.4", version=types.SimpleNamespace(cuda=None, hip="6.4.1")
    )
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    found = versions()
    assert (found["torch"], found["hip"]) == ("2.9.0+rocm6.4", "6.4.1")
    assert "cuda" not in found
    assert all(isinstance(v, str) for v in found.values())


def test_start_then_end_done_when_the_body_returns(captured: Captured) -> None:
    with session("demo", argv=["main.py", "--x"], telemetry=None, emitter=captured.emitter):
        pass
    start, end = captured.events()
    assert (start["event"], start["bench"], start["argv"]) == ("start", "demo", ["main.py", "--x"])
    assert start["pid"] == os.getpid() and start["versions"]["benchkit"] == benchkit.__version__
    assert (end["event"], end["status"]) == ("end", "done")


def test_no_second_end_after_the_loop_stopped_early(captured: Captured) -> None:
    with session("demo", telemetry=None, emitter=captured.emitter):
        for _ in TimedLoop(
            [1], batch_size=1, warmup=0, measures=1, every=1, emitter=captured.emitter
        ):
            pass
    assert captured.names() == ["start", "rate", "progress", "end"]
    assert captured.events("end")[0]["status"] == "early_stop"


def test_an_exception_becomes_an_error_event_and_exit_1(
    captured: Captured, capsys: pytest.CaptureFixture[str]
) -> None:
    with (
        pytest.raises(SystemExit) as stopped,
        session("demo", telemetry=None, emitter=captured.emitter),
    ):
        raise RuntimeError("CUDA out of memory")
    assert stopped.value.code == 1
    assert captured.names() == ["start", "error"]
    error = captured.events("error")[0]
    assert (error["message"], error["type"]) == ("CUDA out of memory", "RuntimeError")
    assert "Traceback" in capsys.readouterr().err


def test_ctrl_c_exits_130_without_an_error_event(captured: Captured) -> None:
    with (
        pytest.raises(SystemExit) as stopped,
        session("demo", telemetry=None, emitter=captured.emitter),
    ):
        raise KeyboardInterrupt
    assert stopped.value.code == 130
    assert captured.names() == ["start"]


def test_session_restores_the_sigterm_handler(captured: Captured) -> None:
    before = signal.getsignal(signal.SIGTERM)
    with session("demo", telemetry=None, emitter=captured.emitter):
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize(("local_rank", "sampled"), [(None, True), ("0", True), ("1", False)])
def test_telemetry_runs_on_local_rank_zero_and_stops_with_the_session(
    captured: Captured, monkeypatch: pytest.MonkeyPatch, local_rank: str | None, sampled: bool
) -> None:
    monitors: list[GpuMonitor] = []

    def fake_start(interval: float) -> GpuMonitor:
        monitor = GpuMonitor(lambda: {}, interval=interval, emitter=captured.emitter).start()
        monitors.append(monitor)
        return monitor

    if local_rank is None:
        monkeypatch.delenv("LOCAL_RANK", raising=False)
    else:
        monkeypatch.setenv("LOCAL_RANK", local_rank)
    monkeypatch.setattr("benchkit.lifecycle.start_telemetry", fake_start)
    with session("demo", telemetry=0.01, emitter=captured.emitter):
        pass
    assert len(monitors) == int(sampled)
    assert not any(m.running for m in monitors)


def test_main_parses_then_runs_the_body(
    captured: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = []
    monkeypatch.setattr("benchkit.protocol._default", captured.emitter)
    benchkit.main(seen.append, benchkit.arg_parser("demo"), ["--seed", "7"], telemetry=None)
    assert seen[0].seed == 7
    assert captured.events("start")[0]["argv"] == ["demo", "--seed", "7"]


def spawn(body: str) -> subprocess.Popen[str]:
    script = "import benchkit, time\n" + textwrap.dedent(body)
    env = {**os.environ, "PYTHONPATH": str(BENCHKIT)}
    return subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_a_crashing_benchmark_exits_non_zero_with_an_error_event() -> None:
    proc = spawn(
        """
        def train(args):
            raise ValueError("bad shape")

        benchkit.main(train, benchkit.arg_parser("crash"), [])
        """
    )
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["event"] for e in events] == ["start", "error"]
    assert events[1]["type"] == "ValueError" and "bad shape" in err


def test_sigterm_stops_a_running_benchmark_promptly() -> None:
    proc = spawn(
        """
        def train(args):
            for _ in benchkit.TimedLoop(range(9), batch_size=1, every=1000, measures=1000):
                time.sleep(0.01)

        benchkit.main(train, benchkit.arg_parser("sleepy"), [])
        """
    )
    assert proc.stdout is not None
    assert '"start"' in proc.stdout.readline()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=5)
    assert proc.returncode == 128 + signal.SIGTERM
