"""The local backend: each job is a subprocess (own process group) of this Python or a chosen one.

Containment: a job's processes share its process group, and the group is killed when the
job ends, times out or is cancelled, so no grandchild outlives it (one that leaves the
group with setsid() is the exception a container backend does not have).
"""

from __future__ import annotations

import contextlib
import os
import selectors
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
    LineSplitter,
    Phase,
    RunContext,
    Status,
    StderrLine,
)
from orchestrator.config import definition_folder
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
        folder = definition_folder(ctx.benchmarks_root, job.definition)
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
            # apart: a progress bar on stderr must not glue onto the metrics lines of stdout
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # own process group: cancel reaches the workers a benchmark forks (DataLoader, DDP)
            start_new_session=True,
        )
        return Handle(job=job, native=proc)

    def stream(self, handle: Handle) -> Iterator[str]:
        """stdout lines as they come, stderr lines as StderrLine, until both pipes close."""
        proc: subprocess.Popen[bytes] = handle.native
        assert proc.stdout is not None
        pipes = [pipe for pipe in (proc.stdout, proc.stderr) if pipe is not None]
        splitters = {pipe.fileno(): LineSplitter() for pipe in pipes}
        err = proc.stderr.fileno() if proc.stderr is not None else None
        with selectors.DefaultSelector() as selector:
            for fd in splitters:
                selector.register(fd, selectors.EVENT_READ)
            while selector.get_map():
                for key, _ in selector.select():
                    fd = int(key.fd)
                    chunk = os.read(fd, 1 << 16)
                    if chunk:
                        lines = splitters[fd].feed(chunk)
                    else:
                        selector.unregister(fd)
                        lines = splitters[fd].close()
                    for line in lines:
                        yield StderrLine(line) if fd == err else line
        for pipe in pipes:
            pipe.close()

    def wait(self, handle: Handle, timeout: float | None) -> Exit | None:
        proc: subprocess.Popen[bytes] | NodeGroup = handle.native
        if isinstance(proc, NodeGroup):
            # over when every node is, or at the first that fails (which stops the others)
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return None
            _kill_group(proc.pid)
            return _exit(code, handle)
        if proc.returncode is None and not _exited(proc.pid, timeout):
            return None
        # the job is over when its main process is: what it left running in its group goes
        # too, killed while the unreaped leader still holds the group's id (no reuse possible)
        _kill_group(proc.pid)
        return _exit(proc.wait(), handle)

    def cancel(self, handle: Handle) -> None:
        """SIGTERM to the job's group, SIGKILL after GRACE seconds (at once with ``hurry`` set
        in ``handle.extra``, after a second Ctrl-C). The group is killed whatever happens,
        an interrupt during the grace included: a TERM-ignoring process never survives."""
        proc: subprocess.Popen[bytes] = handle.native
        handle.extra["cancelled"] = True
        try:
            running = proc.returncode is None and not _exited(proc.pid, 0)
            if running and not handle.extra.get("hurry"):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGTERM)
                _exited(proc.pid, GRACE)  # left unreaped: the group's id stays ours below
        finally:
            # the leader may be gone while workers it forked still hold the group
            _kill_group(proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=GRACE)


def _exited(pid: int, timeout: float | None) -> bool:
    """Whether child ``pid`` exited within ``timeout`` seconds, leaving it unreaped."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            flags = os.WEXITED | os.WNOWAIT | (0 if deadline is None else os.WNOHANG)
            if os.waitid(os.P_PID, pid, flags) is not None:
                return True
        except ChildProcessError:  # reaped already (by Popen.wait in cancel)
            return True
        if deadline is None:
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(0.02, left))


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


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
        # the nodes write stdout and stderr to the one pipe: torchrun's own chatter included
        self.stderr = None
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


def _exit(code: int, handle: Handle) -> Exit:
    """The Exit of a job whose process (or node group) ended with ``code``."""
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
            "killed by SIGKILL (out of memory?)" if status is Status.OOM else f"killed by {name}"
        )
        return Exit(code, status, reason)
    return Exit(code, Status.FAILED, f"exited with code {code}")
