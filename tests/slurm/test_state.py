"""Reading Slurm's answers: ``scontrol``/``sacct`` lines → state, Exit and node GPUs (no Slurm needed).

``data/scontrol-*.txt`` were captured from the test cluster (slurm-wlm 22.05, tests/infra/slurm-up.sh);
the GPU line is written in the same format from Slurm's documentation, as no GPU node runs here.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from orchestrator.backends.base import Status
from orchestrator.backends.slurm.state import (
    JobInfo,
    clock_start,
    gpus_of,
    judge,
    parse_fields,
    parse_sacct,
    parse_scontrol,
    parse_time,
)

DATA = Path(__file__).resolve().parent / "data"

GPU_LINE = (
    "JobId=4242 JobName=mbctl.run.resnet50.N2 UserId=bench(1000) GroupId=bench(1000) "
    "JobState=RUNNING Reason=None Dependency=(null) ExitCode=0:0 TimeLimit=00:40:00 "
    "Partition=gpu NodeList=gpu[01-02] BatchHost=gpu01 NumNodes=2 NumCPUs=32 "
    "TRES=cpu=32,node=2,billing=32,gres/gpu=16 JOB_GRES=gpu:a100:16 "
    "  Nodes=gpu[01-02] CPU_IDs=0-15 Mem=0 GRES=gpu:a100:8(IDX:0-7) "
    "MinCPUsNode=1 Command=/shared/runs/x/slurm/resnet50.N2.sbatch"
)


def captured(name: str) -> JobInfo:
    info = parse_scontrol((DATA / f"scontrol-{name}.txt").read_text())
    assert info is not None
    return info


def test_failed_job_keeps_its_exit_code() -> None:
    info = captured("failed")
    assert (info.state, info.exit_code, info.signal, info.node_list) == ("FAILED", 3, 0, "vm")
    assert info.over
    result = judge(info)
    assert (result.return_code, result.status) == (3, Status.FAILED)
    assert result.reason == "exited with code 3 (Slurm FAILED, NonZeroExitCode)"


def test_slurm_time_limit_is_a_timeout() -> None:
    info = captured("timeout")
    assert (info.state, info.reason, info.time_limit) == ("TIMEOUT", "TimeLimit", "00:01:00")
    result = judge(info)
    assert result.status is Status.TIMEOUT
    assert result.reason == "ran past its Slurm time limit of 00:01:00 (Slurm TIMEOUT, TimeLimit)"


def test_signal_is_recorded_as_128_plus_signal() -> None:
    result = judge(captured("signal"))
    assert (result.return_code, result.status) == (137, Status.FAILED)
    assert result.reason is not None and result.reason.startswith("killed by SIGKILL")


def test_cancelled_by_us_or_by_someone_else() -> None:
    info = captured("cancelled")
    assert judge(info, cancelled=True).reason == "cancelled by mbctl (Slurm CANCELLED)"
    other = judge(info)
    assert other.status is Status.CANCELLED and "outside mbctl" in (other.reason or "")


@pytest.mark.parametrize(
    ("state", "status", "words"),
    [
        ("COMPLETED", Status.OK, None),
        ("TIMEOUT", Status.TIMEOUT, "ran past its Slurm time limit of 00:40:00 (Slurm TIMEOUT"),
        ("OUT_OF_MEMORY", Status.OOM, "killed for lack of memory (Slurm OUT_OF_MEMORY"),
        ("NODE_FAIL", Status.ERROR, "a node of gpu[01-02] failed (Slurm NODE_FAIL"),
        ("PREEMPTED", Status.ERROR, "preempted by another job (Slurm PREEMPTED"),
        ("BOOT_FAIL", Status.ERROR, "failed to boot"),
        ("DEADLINE", Status.TIMEOUT, "deadline"),
    ],
)
def test_each_terminal_state_is_judged(state: str, status: Status, words: str | None) -> None:
    info = parse_scontrol(GPU_LINE.replace("JobState=RUNNING", f"JobState={state}"))
    assert info is not None and info.over
    result = judge(info)
    assert result.status is status
    if words is None:
        assert result.reason is None and result.return_code == 0
    else:
        assert words in (result.reason or "")


@pytest.mark.parametrize("state", ["PENDING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED"])
def test_living_states_are_not_over(state: str) -> None:
    info = parse_scontrol(GPU_LINE.replace("JobState=RUNNING", f"JobState={state}"))
    assert info is not None and not info.over


def test_a_held_job_is_queued_without_a_start() -> None:
    info = captured("pending")
    assert (info.state, info.reason, info.node_list) == ("PENDING", "JobHeldUser", None)
    assert info.queued and not info.over
    assert parse_time(info.start_time) is None


@pytest.mark.parametrize(
    ("state", "queued"),
    [("PENDING", True), ("CONFIGURING", True), ("RUNNING", False), ("COMPLETING", False)],
)
def test_only_waiting_states_are_queued(state: str, queued: bool) -> None:
    info = parse_scontrol(GPU_LINE.replace("JobState=RUNNING", f"JobState={state}"))
    assert info is not None and info.queued is queued


def test_start_time_is_local_time() -> None:
    info = captured("timeout")
    assert info.start_time == "2026-11-29T17:38:15"
    expected = datetime(2026, 11, 29, 17, 38, 15).timestamp()
    assert parse_time(info.start_time) == expected
    assert parse_time("Unknown") is None
    assert parse_time("None") is None


def test_start_on_the_monotonic_clock() -> None:
    # monotonic 500.0 is wall time 10_000.0
    at = {"queued_at": 480.0, "now": 500.0, "wall": 10_000.0}
    assert clock_start(9_990.0, **at) == 490.0
    # StartTime's whole seconds (or a reset boot) before the job was last seen waiting
    assert clock_start(9_950.0, **at) == 480.0
    # a controller's clock ahead of ours
    assert clock_start(10_003.0, **at) == 500.0
    assert clock_start(None, **at) == 500.0


def test_gpus_per_node_from_the_detail_line() -> None:
    info = parse_scontrol(GPU_LINE)
    assert info is not None
    assert info.gres == {"gpu[01-02]": "gpu:a100:8(IDX:0-7)"}
    assert gpus_of(info.gres["gpu[01-02]"]) == {
        "gpu_product": "a100",
        "gpu_count": 8,
        "gpu_indices": "0-7",
    }
    assert gpus_of("gpu:2(IDX:0,2)") == {"gpu_product": None, "gpu_count": 2, "gpu_indices": "0,2"}
    assert gpus_of("") == {"gpu_product": None, "gpu_count": 0, "gpu_indices": None}
    assert captured("failed").gres == {"vm": ""}


def test_fields_keep_values_with_colons_and_slashes() -> None:
    fields = parse_fields(GPU_LINE)
    assert fields["TRES"] == "cpu=32,node=2,billing=32,gres/gpu=16"
    assert fields["Command"] == "/shared/runs/x/slurm/resnet50.N2.sbatch"


def test_sacct_line_after_slurmctld_forgot_the_job() -> None:
    info = parse_sacct("CANCELLED by 1000|0:15|gpu01|None|00:40:00\n")
    assert info is not None
    assert (info.state, info.signal, info.node_list) == ("CANCELLED", 15, "gpu01")
    assert parse_sacct("") is None


def test_no_job_in_the_answer() -> None:
    assert parse_scontrol("slurm_load_jobs error: Invalid job id specified\n") is None
