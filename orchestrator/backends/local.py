"""The local backend: each job is a subprocess (own process group) of this Python or a chosen one."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from orchestrator.backends.base import Exit, Handle, Phase, RunContext, Status, split_lines
from orchestrator.errors import BackendUnavailable, ConfigError
from orchestrator.plan import Job
from orchestrator.vendors import VENDOR_ENV

#: Seconds a job gets between SIGTERM and SIGKILL when cancelled.
GRACE = 5.0


def job_environment(job: Job, ctx: RunContext) -> dict[str, str]:
    """Variables every job sees, in any backend: where data and results go, who it is."""
    return {
        **job.env,
        "MBCTL_RUN_ID": ctx.run_id,
        "MBCTL_JOB_ID": job.id,
        "MBCTL_PHASE": ctx.phase.value,
        "PYTHONUNBUFFERED": "1",
        # the planned vendor: benchkit takes the device from it, never from a fallback
        VENDOR_ENV: job.vendor,
    }


def script_for(definition: Path, phase: Phase) -> Path | None:
    """``main.py`` for a run, ``prepare.py`` (if the benchmark has one) for prepare."""
    script = definition / ("prepare.py" if phase is Phase.PREPARE else "main.py")
    return script if script.is_file() else None


class LocalBackend:
    """Runs benchmarks as processes of this machine, with the frameworks of ``python``."""

    name = "local"

    def __init__(self, python: str | None = None) -> None:
        self.python = python or sys.executable

    def check(self) -> None:
        # jobs start in their benchmark's folder: a relative or bare interpreter must be resolved here
        found = shutil.which(self.python) if os.sep not in self.python else self.python
        if found is None or not Path(found).exists():
            raise BackendUnavailable(f"local backend: interpreter {self.python} does not exist")
        self.python = str(Path(found).absolute())

    def submit(self, job: Job, ctx: RunContext) -> Handle:
        folder = ctx.benchmarks_root / job.definition
        script = script_for(folder, ctx.phase)
        if script is None:
            raise ConfigError(
                f"benchmark {job.bench}: {folder / ('main.py' if ctx.phase is Phase.RUN else 'prepare.py')} does not exist",
                hint="check its 'definition' in the suite",
            )
        harness = str(ctx.benchmarks_root / "benchkit")
        path = os.pathsep.join(p for p in (harness, os.environ.get("PYTHONPATH")) if p)
        env = {
            **os.environ,
            **job_environment(job, ctx),
            "MBCTL_DATA": str(ctx.data_dir),
            "MBCTL_RESULTS": str(ctx.run_dir),
            "PYTHONPATH": path,
        }
        proc = subprocess.Popen(
            [self.python, script.name, *job.argv],
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # own process group: cancel reaches the workers a benchmark forks (DataLoader, DDP)
            start_new_session=True,
        )
        return Handle(job=job, native=proc)

    def stream(self, handle: Handle) -> Iterator[str]:
        proc: subprocess.Popen[bytes] = handle.native
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        yield from split_lines(iter(lambda: os.read(fd, 1 << 16), b""))
        proc.stdout.close()

    def wait(self, handle: Handle, timeout: float | None) -> Exit | None:
        proc: subprocess.Popen[bytes] = handle.native
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        if code == 0:
            return Exit(0, Status.OK)
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            status = (
                Status.OOM
                if -code == signal.SIGKILL and not handle.extra.get("cancelled")
                else Status.FAILED
            )
            reason = (
                "killed by SIGKILL (out of memory?)"
                if status is Status.OOM
                else f"killed by {name}"
            )
            return Exit(code, status, reason)
        return Exit(code, Status.FAILED, f"exited with code {code}")

    def cancel(self, handle: Handle) -> None:
        proc: subprocess.Popen[bytes] = handle.native
        handle.extra["cancelled"] = True
        if proc.poll() is not None:
            # the leader is gone; workers it forked may still hold the group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            return
        for sig, grace in ((signal.SIGTERM, GRACE), (signal.SIGKILL, None)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue
