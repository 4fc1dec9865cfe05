"""The Slurm backend against the real one-node cluster of tests/infra/slurm-up.sh (marker ``slurm``).

Scripted benchmarks (the standard library only, emitting at fixed rates) run as Slurm batch jobs
with the ``none`` runtime: every outcome, a timeout, Ctrl-C, prepare, and the job records.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from orchestrator import workflow
from orchestrator.backends.base import Phase
from orchestrator.backends.slurm import SlurmBackend, SlurmSettings
from orchestrator.errors import ConfigError
from orchestrator.results import RunDir, read_events
from orchestrator.runner import JobState

pytestmark = pytest.mark.slurm
ROOT = Path(__file__).resolve().parents[2]

SCRIPTS = {
    "good": """
        import json, os, sys, time
        def emit(event, **kw):
            print(json.dumps({"mbctl": 1, "event": event, "t": time.time(), **kw}), flush=True)
        emit("start", bench="good", argv=sys.argv[1:], versions={"python": "3"}, pid=os.getpid())
        print("plain output line")
        print("a line on stderr", file=sys.stderr, flush=True)
        with open(os.path.join(os.environ["MBCTL_RESULTS"], "out.txt"), "w") as out:
            out.write(os.environ["MBCTL_JOB_ID"])
        for i in range(5):
            emit("rate", value=100.0 + i, units="items/s", task="train")
        emit("end", status="done")
    """,
    "fails": """
        import json, time
        print(json.dumps({"mbctl": 1, "event": "rate", "t": time.time(), "value": 5.0, "units": "items/s", "task": "train"}), flush=True)
        raise SystemExit(3)
    """,
    "silent": """
        print("I never report a metric")
    """,
    "hangs": """
        import json, time
        print(json.dumps({"mbctl": 1, "event": "rate", "t": time.time(), "value": 1.0, "units": "items/s", "task": "train"}), flush=True)
        time.sleep(600)
    """,
}
PREPARE = """
    import os
    with open(os.path.join(os.environ["MBCTL_DATA"], "prepared.txt"), "w") as out:
        out.write("ready")
    print("dataset written")
"""


@pytest.fixture
def bench_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "benchmarks"
    for name, body in SCRIPTS.items():
        (root / name).mkdir(parents=True)
        (root / name / "main.py").write_text(textwrap.dedent(body))
    (root / "good" / "prepare.py").write_text(textwrap.dedent(PREPARE))
    (root / "benchkit").mkdir()
    (root / "suites").mkdir()
    suite = {
        "name": "scripted",
        "defaults": {"max_duration": 60},
        "benchmarks": {n: {"definition": n} for n in SCRIPTS},
    }
    # long enough for a loaded machine to start the job and print its first rate
    suite["benchmarks"]["hangs"]["max_duration"] = 10
    (root / "suites" / "scripted.yaml").write_text(json.dumps(suite))
    monkeypatch.setenv("MBCTL_BENCHMARKS", str(root))
    return root


def settings_file(tmp_path: Path, **fields: object) -> Path:
    path = tmp_path / "slurm.yaml"
    path.write_text(json.dumps({"poll_interval": 0.2, "python": sys.executable, **fields}))
    return path


def request(tmp_path: Path, **kw: object) -> workflow.Request:
    base: dict[str, object] = {
        "suite": "scripted",
        "vendor": "cpu",
        "backend": "slurm",
        "results": tmp_path / "runs",
        "data_dir": tmp_path / "data",
    }
    if "slurm_config" not in kw:
        base["slurm_config"] = settings_file(tmp_path)
    return workflow.Request(**{**base, **kw})  # type: ignore[arg-type]


def our_jobs(run_id: str) -> list[tuple[str, str]]:
    return SlurmBackend().leftovers(run_id)


def exit_event(run: RunDir, job: str) -> dict[str, object]:
    return read_events(run.events_path(job))[-1]


def test_every_outcome_through_slurm(bench_root: Path, tmp_path: Path) -> None:
    req = request(tmp_path)
    result = workflow.run(req, workflow.prepare(req))
    run = result.run
    statuses = {job: str(exit_event(run, job)["status"]) for job in run.job_ids()}
    assert statuses == {
        "good.0": "ok",
        "fails.0": "failed",
        "silent.0": "failed",
        "hangs.0": "timeout",
    }
    reasons = {s.job.id: s.reason or "" for s in result.outcome.states}
    assert reasons["fails.0"].startswith("exited with code 3 (Slurm FAILED, NonZeroExitCode)")
    assert "max_duration=10s" in reasons["hangs.0"]
    assert "without reporting any training rate" in reasons["silent.0"]

    good = read_events(run.events_path("good.0"))
    assert [e["event"] for e in good][:2] == ["config", "start"]
    assert [e["value"] for e in good if e["event"] == "rate"] == [100.0, 101.0, 102.0, 103.0, 104.0]
    log = run.log_path("good.0").read_text()
    assert "plain output line" in log and "a line on stderr" in log
    assert (run.path / "files" / "good.0" / "out.txt").read_text() == "good.0"
    # the node that ran each job, as the exit event records it
    host = socket.gethostname().split(".")[0]
    nodes = exit_event(run, "good.0")["nodes"]
    assert nodes == [{"name": host, "gpu_product": None, "gpu_count": 0, "gpu_indices": None}]
    assert exit_event(run, "fails.0")["return_code"] == 3
    # measurements taken before the failure and the timeout are kept
    assert [
        e["value"] for e in read_events(run.events_path("hangs.0")) if e["event"] == "rate"
    ] == [1.0]
    # the timed-out job was scancel'ed: nothing of the run is left in the queue
    assert our_jobs(run.run_id) == []
    meta = run.meta()
    assert meta["backend"] == "slurm"
    assert meta["nodes"] == {
        host: {
            "name": host,
            "gpu_product": None,
            "jobs": ["fails.0", "good.0", "hangs.0", "silent.0"],
        }
    }


class _InterruptOnFirstRate:
    """Presses Ctrl-C once the job has reported a rate: it is surely running in Slurm by then."""

    def __init__(self) -> None:
        self.sent = False

    def update(self, state: JobState) -> None:
        if state.measures and not self.sent:
            self.sent = True
            signal.raise_signal(signal.SIGINT)


def test_ctrl_c_scancels_the_running_job(bench_root: Path, tmp_path: Path) -> None:
    req = request(tmp_path, select=("hangs",), overrides=("hangs.max_duration=120",))
    prepared = workflow.prepare(req)
    result = workflow.run(req, prepared, progress=_InterruptOnFirstRate())
    assert result.outcome.interrupted
    run = result.run
    last = exit_event(run, "hangs.0")
    assert last["status"] == "cancelled"
    assert [
        e["value"] for e in read_events(run.events_path("hangs.0")) if e["event"] == "rate"
    ] == [1.0]
    assert our_jobs(run.run_id) == []
    # --resume runs what was cancelled again
    assert "hangs.0" not in run.completed_job_ids()


class _Statuses:
    """Every status the live view was shown, in order, without repeats."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def update(self, state: JobState) -> None:
        if not self.seen or self.seen[-1] != state.status:
            self.seen.append(state.status)


def test_queue_time_does_not_count_against_max_duration(bench_root: Path, tmp_path: Path) -> None:
    # Slurm holds the job 15 s, past its 10 s max_duration: only its running time may count
    req = request(
        tmp_path,
        select=("good",),
        overrides=("good.max_duration=10",),
        slurm_config=settings_file(tmp_path, extra_sbatch=["--begin=now+15"]),
    )
    shown = _Statuses()
    result = workflow.run(req, workflow.prepare(req), progress=shown)
    last = exit_event(result.run, "good.0")
    assert (last["status"], last["return_code"]) == ("ok", 0), last
    # shown queued while Slurm held it (a short job may end before a poll sees it running)
    assert "queued" in shown.seen and shown.seen[-1] == "ok"
    assert shown.seen.index("queued") < len(shown.seen) - 1
    rates = [
        e["value"] for e in read_events(result.run.events_path("good.0")) if e["event"] == "rate"
    ]
    assert rates == [100.0, 101.0, 102.0, 103.0, 104.0]


def test_job_queued_past_queue_timeout_ends_queued(bench_root: Path, tmp_path: Path) -> None:
    # a held job never starts: after queue_timeout mbctl cancels it and records it as queued
    req = request(
        tmp_path,
        select=("good",),
        slurm_config=settings_file(tmp_path, extra_sbatch=["--hold"], queue_timeout=1),
    )
    shown = _Statuses()
    result = workflow.run(req, workflow.prepare(req), progress=shown)
    run = result.run
    last = exit_event(run, "good.0")
    assert last["status"] == "queued" and last["return_code"] is None
    assert str(last["reason"]).startswith("still queued after 1s (Slurm PENDING, JobHeldUser)")
    assert "queued" in shown.seen and "ok" not in shown.seen
    assert not [e for e in read_events(run.events_path("good.0")) if e["event"] == "start"]
    # scancel'ed, and `run --resume` runs it again
    assert our_jobs(run.run_id) == []
    assert "good.0" not in run.completed_job_ids()


def test_prepare_writes_the_shared_cache(bench_root: Path, tmp_path: Path) -> None:
    req = request(tmp_path, select=("good",))
    result = workflow.run(req, workflow.prepare(req, phase=Phase.PREPARE), phase=Phase.PREPARE)
    assert [s.status for s in result.outcome.states] == ["ok"]
    assert (tmp_path / "data" / "prepared.txt").read_text() == "ready"


def test_settings_data_dir_is_the_cache_unless_data_is_given(
    bench_root: Path, tmp_path: Path
) -> None:
    shared = tmp_path / "shared-cache"
    req = request(
        tmp_path,
        select=("good",),
        data_dir=None,
        slurm_config=settings_file(tmp_path, data_dir=str(shared)),
    )
    shared.mkdir()
    workflow.run(req, workflow.prepare(req, phase=Phase.PREPARE), phase=Phase.PREPARE)
    assert (shared / "prepared.txt").read_text() == "ready"


def test_unknown_partition_stops_before_anything_runs(bench_root: Path, tmp_path: Path) -> None:
    req = request(tmp_path, slurm_config=settings_file(tmp_path, partition="nosuchpart"))
    with pytest.raises(ConfigError, match="no partition 'nosuchpart'"):
        workflow.run(req, workflow.prepare(req))


def test_max_nodes_counts_the_partition() -> None:
    assert SlurmBackend().max_nodes() == 1
    assert SlurmBackend(SlurmSettings(partition="cpu")).max_nodes() == 1


@pytest.mark.slow
def test_cli_smoke_suite_end_to_end(tmp_path: Path) -> None:
    """`mbctl run --backend slurm --suite smoke` with the benchmark venv as runtime none."""
    root = ROOT
    bench_python = root / ".venv-bench" / "bin" / "python"
    if not bench_python.exists():
        pytest.skip("no .venv-bench (make bench-venv)")
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "run",
            "--backend",
            "slurm",
            "--suite",
            "smoke",
            "--vendor",
            "cpu",
            "--python",
            str(bench_python),
            "--slurm-config",
            str(settings_file(tmp_path, python=str(bench_python))),
            "--results",
            str(tmp_path / "runs"),
            "--data",
            str(tmp_path / "data"),
            # a loaded CI machine must not turn a slow job into a failure: the rates are not judged
            "--set",
            "*.max_duration=900",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=root,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run_path,) = [p for p in (tmp_path / "runs").iterdir() if p.name != "latest"]
    run = RunDir.open(run_path)
    jobs = ["convnet.0", "fp32.0", "jax-mlp.0"]
    # the same run folder as the docker backend's, plus the scripts and raw output Slurm kept
    assert sorted(p.name for p in run_path.iterdir()) == sorted(
        ["meta.json", "summary.json", "files", "slurm"]
        + [f"{j}.jsonl" for j in jobs]
        + [f"{j}.log" for j in jobs]
    )
    assert sorted(p.name for p in (run_path / "files").iterdir()) == jobs
    for job in jobs:
        last = exit_event(run, job)
        assert last["status"] == "ok" and last["return_code"] == 0
        assert set(last) >= {"event", "t", "return_code", "status", "reason", "image", "nodes"}
        rates = [e for e in read_events(run.events_path(job)) if e["event"] == "rate"]
        assert len(rates) >= 20
    summary = json.loads((run_path / "summary.json").read_text())
    assert summary
    report = json.loads(done.stdout)
    assert report
    assert time.monotonic() - started < 900


def test_cli_ctrl_c_cancels_the_slurm_job(bench_root: Path, tmp_path: Path) -> None:
    """SIGINT to a real `mbctl run --backend slurm` once its job reports: exit 130, job scancel'ed."""
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "run",
            "--backend",
            "slurm",
            "--slurm-config",
            str(settings_file(tmp_path)),
            "--suite",
            "scripted",
            "--select",
            "hangs",
            "--set",
            "hangs.max_duration=120",
            "--vendor",
            "cpu",
            "--results",
            str(runs),
            "--data",
            str(tmp_path / "data"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = list(runs.glob("*/hangs.0.jsonl"))
            if found and '"event": "rate"' in found[0].read_text():
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "error: interrupted; results measured so far are kept" in err
    assert "Traceback" not in err
    (run_path,) = [p for p in runs.iterdir() if p.name != "latest"]
    run = RunDir.open(run_path)
    assert exit_event(run, "hangs.0")["status"] == "cancelled"
    assert our_jobs(run.run_id) == []


class _NodeDownOnFirstRate:
    """Takes the node down under the running job, as a hardware failure would."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.done = False

    def update(self, state: JobState) -> None:
        if state.measures and not self.done:
            self.done = True
            subprocess.run(
                ["scontrol", "update", f"nodename={self.node}", "state=down", "reason=mbctl-test"],
                check=True,
                timeout=30,
            )


def test_node_failure_is_recorded(bench_root: Path, tmp_path: Path) -> None:
    host = socket.gethostname().split(".")[0]
    req = request(tmp_path, select=("hangs",), overrides=("hangs.max_duration=120",))
    try:
        result = workflow.run(req, workflow.prepare(req), progress=_NodeDownOnFirstRate(host))
    finally:
        subprocess.run(
            ["scontrol", "update", f"nodename={host}", "state=resume"], timeout=30, check=False
        )
        subprocess.run(["bash", str(ROOT / "tests" / "infra" / "slurm-up.sh")], timeout=120)
    last = exit_event(result.run, "hangs.0")
    assert last["status"] == "error"
    assert str(last["reason"]).startswith(f"a node of {host} failed (Slurm NODE_FAIL, NodeDown)")
    assert last["nodes"] == [
        {"name": host, "gpu_product": None, "gpu_count": 0, "gpu_indices": None}
    ]
