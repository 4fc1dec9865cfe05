"""The local backend: each job is a subprocess (own process group) of this Python or a chosen one."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from orchestrator.backends.base import (
    Backend,
    Exit,
    Handle,
    Phase,
    RunContext,
    Status,
    split_lines,
)
from orchestrator.errors import BackendUnavailable, ConfigError
from orchestrator.plan import Job

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
    }


def script_for(definition: Path, phase: Phase) -> Path | None:
    """``main.py`` for a run, ``prepare.py`` (if the benchmark has one) for prepare."""
    script = definition / ("prepare.py" if phase is Phase.PREPARE else "main.py")
    return script if script.is_file() else None


class LocalBackend(Backend):
    """Runs benchmarks as processes of this machine, with the frameworks of ``python``.

    A job spanning N nodes runs as N processes on loopback, one per node (``nodes`` is how
    many ``--nodes`` allows), with the multi-node variables of ``node_environment``.
    """

    name = "local"

    def __init__(self, python: str | None = None, *, nodes: int = 1) -> None:
        self.python = python or sys.executable
        self.nodes = nodes

    def max_nodes(self) -> int:
        return self.nodes

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
        if job.nodes > 1 and ctx.phase is Phase.RUN:
            group = NodeGroup.start([self.python, script.name, *job.argv], folder, env, job.nodes)
            return Handle(job=job, native=group)
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


# --- one job over several nodes, emulated on loopback ----------------------------------------


def node_environment(nnodes: int, rank: int, master_addr: str, port: int) -> dict[str, str]:
    """The multi-node contract every backend follows (docs/multinode.md, benchkit.distributed)."""
    return {
        "MBCTL_NNODES": str(nnodes),
        "MBCTL_NODE_RANK": str(rank),
        "MBCTL_MASTER_ADDR": master_addr,
        "MBCTL_MASTER_PORT": str(port),
    }


def free_port() -> int:
    """A TCP port nobody listens on now (node 0's torchrun binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class NodeGroup:
    """The N node processes of one job, seen as one ``Popen``: one merged output pipe, one
    process group (``pid`` is node 0's, the group's id), one exit code.

    Writes of a line to a pipe are atomic up to PIPE_BUF, so the nodes' lines do not mix.
    A node that fails stops the others: they would otherwise wait for it until the deadline.
    """

    def __init__(self, procs: list[subprocess.Popen[bytes]], read_fd: int) -> None:
        self.procs = procs
        self.pid = procs[0].pid
        self.stdout = os.fdopen(read_fd, "rb", buffering=0)
        self.returncode: int | None = None

    @classmethod
    def start(cls, command: list[str], cwd: Path, env: Mapping[str, str], nnodes: int) -> NodeGroup:
        port = free_port()
        read_fd, write_fd = os.pipe()
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for rank in range(nnodes):
                procs.append(
                    subprocess.Popen(
                        command,
                        cwd=cwd,
                        env={**env, **node_environment(nnodes, rank, "127.0.0.1", port)},
                        stdin=subprocess.DEVNULL,
                        stdout=write_fd,
                        stderr=write_fd,
                        # one process group for the job, led by node 0 (a group can only be
                        # joined from its own session, so not a new session as single jobs get)
                        process_group=0 if rank == 0 else procs[0].pid,
                    )
                )
        except OSError:
            for proc in procs:
                proc.kill()
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        return cls(procs, read_fd)

    def poll(self) -> int | None:
        codes = [proc.poll() for proc in self.procs]
        failed = next((code for code in codes if code not in (None, 0)), None)
        if failed is not None:
            # SIGTERM first: torchrun agents pass it on to their workers (own sessions)
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, sig)
                ends = time.monotonic() + GRACE
                while any(p.poll() is None for p in self.procs) and time.monotonic() < ends:
                    time.sleep(0.05)
            self.returncode = failed
        elif all(code == 0 for code in codes):
            self.returncode = 0
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(str(self.procs[0].args), timeout or 0.0)
            time.sleep(0.05)
        assert self.returncode is not None
        return self.returncode
