"""Why a job failed, in terms a reader can act on: timeout, OOM, signal, import error, NaN, or
the last error line of its log."""

from __future__ import annotations

import re
import signal
from typing import Final

from orchestrator.report.model import Failure, JobResult

_OOM: Final = re.compile(
    r"out of memory|OutOfMemoryError|OOM[- ]?kill|RESOURCE_EXHAUSTED|"
    r"Cannot allocate memory|MemoryError",
    re.IGNORECASE,
)
_IMPORT: Final = re.compile(r"\b(ModuleNotFoundError|ImportError)\b.*")
_ERROR: Final = re.compile(
    r"\b\w*(Error|Exception)\b|\berror\b|\bFATAL\b|\bfatal\b|Traceback|Killed|Aborted"
)
_NOISE: Final = re.compile(r"^\s*(Traceback \(most recent call last\):|File \"|\^+$|~+$)")
#: A SIGKILL exit (128 + 9) with no other explanation is what the kernel's OOM killer leaves.
_SIGKILL_CODES: Final = frozenset({-9, 137})


def last_error_line(lines: list[str]) -> str | None:
    """The last line that reads as an error (a traceback's final line, not its frames)."""
    for line in reversed(lines):
        text = line.strip()
        if text and not _NOISE.match(text) and _ERROR.search(text):
            return text[:300]
    return None


def _signal_name(code: int) -> str | None:
    number = -code if code < 0 else code - 128 if 128 < code < 160 else None
    if number is None:
        return None
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def classify(job: JobResult) -> Failure:
    """The cause of a job's failure, from its exit record and the end of its log."""
    lines = job.log_tail
    error = last_error_line(lines)
    status, code = job.status, job.return_code
    if status == "timeout":
        return Failure("timeout", job.reason or "exceeded its time limit")
    if status == "cancelled":  # stopped by mbctl (Ctrl-C): `run --resume` runs it again
        return Failure("cancelled", job.reason or "cancelled before it ended")
    if status == "queued":  # never admitted or placed in its queue_timeout
        return Failure("queued", job.reason or "queued until its queue_timeout")
    oom = next((line.strip()[:300] for line in reversed(lines) if _OOM.search(line)), None)
    if status == "oom" or oom:
        return Failure("oom", oom or job.reason or "out of memory")
    imports = next(
        (m.group(0)[:300] for line in reversed(lines) if (m := _IMPORT.search(line))), None
    )
    if imports:
        return Failure("import", imports)
    if code is not None and (name := _signal_name(code)):
        hint = " (likely the OOM killer)" if code in _SIGKILL_CODES else ""
        return Failure("signal", f"killed by {name}{hint}" + (f"; {error}" if error else ""))
    if job.nan_loss:
        return Failure("nan", "NaN loss")
    if status == "incomplete" or (code is None and status not in ("ok", None)):
        return Failure("incomplete", error or job.reason or "did not finish")
    if code is None and status is None:
        return Failure("incomplete", error or "did not finish")
    if code == 0 and not job.rates:
        return Failure("no-rate", error or "exited 0 without a training rate")
    return Failure("exit", error or job.reason or f"exit code {code}")
