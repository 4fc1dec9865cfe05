"""Reading Slurm's answers (pure): ``scontrol show job -d -o`` and ``sacct`` lines → job state, Exit, nodes."""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from orchestrator.backends.base import Exit, Status

#: States after which a job has ended and its output file is complete (COMPLETING is not yet).
TERMINAL = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "OUT_OF_MEMORY",
        "NODE_FAIL",
        "PREEMPTED",
        "BOOT_FAIL",
        "DEADLINE",
    }
)

#: States of a job that waits for its allocation: its StartTime is only the scheduler's estimate.
QUEUED = frozenset({"PENDING", "CONFIGURING"})

_KEY = re.compile(r"\s+(?=[A-Za-z][\w/:.-]*=)")
_NODE_DETAIL = re.compile(r"\bNodes=(\S+) CPU_IDs=\S* Mem=\S* GRES=(\S*)")
_GPU = re.compile(r"gpu(?::([A-Za-z][^:(,]*))?:(\d+)(?:\(IDX:([^)]*)\))?")


@dataclass
class JobInfo:
    """The facts of one job mbctl reads: state, exit code and signal, reason, nodes and their GPUs."""

    state: str
    exit_code: int | None = None
    signal: int = 0
    reason: str | None = None
    node_list: str | None = None
    time_limit: str | None = None
    gres: dict[str, str] = field(default_factory=dict)
    #: ``StartTime`` as scontrol writes it: when the job started, or (queued) when it may
    start_time: str | None = None

    @property
    def over(self) -> bool:
        return self.state in TERMINAL

    @property
    def queued(self) -> bool:
        return self.state in QUEUED


def parse_fields(line: str) -> dict[str, str]:
    """``Key=Value`` pairs of one ``scontrol -o`` line (the first of a repeated key wins)."""
    fields: dict[str, str] = {}
    for part in _KEY.split(line.strip()):
        key, sep, value = part.partition("=")
        if sep and key not in fields:
            fields[key] = value.strip()
    return fields


def _exit_code(text: str | None) -> tuple[int | None, int]:
    """``3:0`` → (3, 0); ``0:15`` → (0, 15)."""
    code, _, sig = (text or "").partition(":")
    return (int(code) if code.isdigit() else None), (int(sig) if sig.isdigit() else 0)


def _none(value: str | None) -> str | None:
    return None if value in (None, "", "None", "(null)") else value


def parse_time(text: str | None) -> float | None:
    """``2026-11-29T18:42:57`` (scontrol's local time, SLURM_TIME_FORMAT=standard) → epoch
    seconds; None for ``Unknown``, ``None`` or anything else."""
    if text is None:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").timestamp()
    except ValueError:
        return None


def clock_start(start: float | None, *, queued_at: float, now: float, wall: float) -> float:
    """A job's start (epoch ``start``, None if unreadable) on the clock of ``now`` (monotonic;
    ``wall`` is ``time.time()`` at the same moment): never before it was last seen waiting,
    ``queued_at`` (StartTime is whole seconds; a booting node's may be reset), nor after ``now``
    (a controller's clock ahead of ours)."""
    if start is None:
        return now
    return max(queued_at, now - max(0.0, wall - start))


def parse_scontrol(text: str) -> JobInfo | None:
    """The job of ``scontrol show job -d -o ID``; None if the text holds no job."""
    line = next((ln for ln in text.splitlines() if ln.startswith("JobId=")), None)
    if line is None:
        return None
    fields = parse_fields(line)
    # a requeued or held job reads e.g. "PENDING" with a Reason; a state may carry flags after '+'
    state = fields.get("JobState", "UNKNOWN").split("+")[0]
    code, sig = _exit_code(fields.get("ExitCode"))
    return JobInfo(
        state=state,
        exit_code=code,
        signal=sig,
        reason=_none(fields.get("Reason")),
        node_list=_none(fields.get("NodeList")),
        time_limit=_none(fields.get("TimeLimit")),
        gres={nodes: gres for nodes, gres in _NODE_DETAIL.findall(line)},
        start_time=_none(fields.get("StartTime")),
    )


def parse_sacct(text: str) -> JobInfo | None:
    """The allocation line of ``sacct -X -n -P -o State,ExitCode,NodeList,Reason,Timelimit -j ID``."""
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < 5:
            continue
        # sacct writes "CANCELLED by 1000"
        state = parts[0].split()[0] if parts[0].strip() else "UNKNOWN"
        code, sig = _exit_code(parts[1])
        return JobInfo(
            state=state,
            exit_code=code,
            signal=sig,
            reason=_none(parts[3]),
            node_list=_none(parts[2]),
            time_limit=_none(parts[4]),
        )
    return None


def gpus_of(gres: str) -> dict[str, Any]:
    """``gpu:a100:2(IDX:0-1)`` → product, count and indices of the GPUs a job got on one node."""
    match = _GPU.search(gres)
    if match is None:
        return {"gpu_product": None, "gpu_count": 0, "gpu_indices": None}
    return {
        "gpu_product": match[1],
        "gpu_count": int(match[2]),
        "gpu_indices": match[3],
    }


def _signal_name(number: int) -> str:
    return signal.Signals(number).name if number in signal.valid_signals() else f"signal {number}"


def judge(info: JobInfo, *, cancelled: bool = False) -> Exit:
    """How a job that reached a terminal state ended, in mbctl's terms."""
    code = info.exit_code
    if info.signal:
        # the shell convention, as the docker backend records it: 128 + the signal
        code = 128 + info.signal
    why = f"Slurm {info.state}" + (f", {info.reason}" if info.reason else "")
    match info.state:
        case "COMPLETED":
            return Exit(0, Status.OK)
        case "CANCELLED":
            if cancelled:
                return Exit(code, Status.CANCELLED, f"cancelled by mbctl ({why})")
            return Exit(code, Status.CANCELLED, f"cancelled outside mbctl, e.g. scancel ({why})")
        case "TIMEOUT":
            limit = f" of {info.time_limit}" if info.time_limit else ""
            return Exit(code, Status.TIMEOUT, f"ran past its Slurm time limit{limit} ({why})")
        case "DEADLINE":
            return Exit(code, Status.TIMEOUT, f"reached its Slurm deadline ({why})")
        case "OUT_OF_MEMORY":
            return Exit(code, Status.OOM, f"killed for lack of memory ({why})")
        case "NODE_FAIL":
            where = f" of {info.node_list}" if info.node_list else ""
            return Exit(None, Status.ERROR, f"a node{where} failed ({why})")
        case "PREEMPTED":
            return Exit(code, Status.ERROR, f"preempted by another job ({why})")
        case "BOOT_FAIL":
            return Exit(None, Status.ERROR, f"its node failed to boot ({why})")
    if info.signal:
        return Exit(code, Status.FAILED, f"killed by {_signal_name(info.signal)} ({why})")
    return Exit(code, Status.FAILED, f"exited with code {code} ({why})")
