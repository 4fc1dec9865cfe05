"""The Slurm backend: one sbatch job per planned job, its output file tailed live, scancel to stop.

Slurm's own commands (sbatch, scontrol, scancel, sinfo, squeue, sacct) are the interface: they
are on every login node and speak for whatever version the site runs. The job's state comes
from ``scontrol`` while slurmctld remembers the job (``MinJobAge``), then from ``sacct`` where
the site keeps accounting.

A job is *queued* while Slurm has not started it (PENDING, CONFIGURING): its measurement clock
(``max_duration``, enforced by the runner) starts only when it runs (``running_since``), and a
job still queued after ``queue_timeout`` is cancelled and recorded as queued.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.backends.base import Exit, Handle, RunContext, Status, split_lines
from orchestrator.backends.docker import results_dir
from orchestrator.backends.slurm.script import NAME_PREFIX, batch_script, job_name
from orchestrator.backends.slurm.settings import SlurmSettings
from orchestrator.backends.slurm.state import (
    JobInfo,
    clock_start,
    gpus_of,
    judge,
    parse_sacct,
    parse_scontrol,
    parse_time,
)
from orchestrator.errors import BackendUnavailable, ConfigError, OrchestratorError
from orchestrator.plan import Job

#: Seconds any one Slurm command may take (a busy slurmctld answers slowly, not never).
COMMAND_TIMEOUT = 60.0
#: Seconds of failing scontrol/sacct calls after which a job is reported as lost.
LOST_GRACE = 120.0
#: Seconds between reads of an output file that has not grown.
TAIL_POLL = 0.2
#: Bytes read from an output file at once.
CHUNK = 1 << 16


def slurm(
    args: Sequence[str], *, timeout: float = COMMAND_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run one Slurm command; BackendUnavailable if it is not installed."""
    try:
        return subprocess.run(
            list(args),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
            # a user's SLURM_TIME_FORMAT (e.g. relative) would hide the StartTime mbctl reads
            env={**os.environ, "SLURM_TIME_FORMAT": "standard"},
        )
    except FileNotFoundError:
        raise BackendUnavailable(
            f"slurm: {args[0]} not found on PATH",
            hint="run mbctl on a login node of the cluster (with the Slurm client commands)",
        ) from None
    except subprocess.TimeoutExpired:
        raise BackendUnavailable(f"slurm: {args[0]} did not answer within {timeout:g}s") from None


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"


@dataclass
class _Tracked:
    """One submitted job: its Slurm id, files and what has been learnt about it."""

    job: Job
    job_id: str
    output: Path
    over: threading.Event = field(default_factory=threading.Event)
    cancelled: bool = False
    exit: Exit | None = None
    last_poll: float = 0.0
    failing_since: float | None = None
    info: JobInfo | None = None
    submitted: float = field(default_factory=time.monotonic)
    #: the last time (``time.monotonic``) the job was seen waiting: it cannot have started earlier
    queued_at: float = field(default_factory=time.monotonic)
    #: when the job started (``time.monotonic``); None while it waits
    running_at: float | None = None
    #: why Slurm kept it waiting, once it waited past ``queue_timeout`` and mbctl cancelled it
    expired: str | None = None


class SlurmBackend:
    """Runs each job as a Slurm batch job and reads its output file as it grows."""

    name = "slurm"

    def __init__(
        self,
        settings: SlurmSettings | None = None,
        *,
        python: str | None = None,
        data_dir: Path | None = None,
    ) -> None:
        settings = settings or SlurmSettings()
        if python is not None:
            settings = settings.model_copy(update={"python": python})
        if os.sep in settings.python:
            # jobs start in their benchmark's folder: a relative interpreter is relative to here
            settings = settings.model_copy(update={"python": str(Path(settings.python).absolute())})
        self.settings = settings
        #: --data given on the command line wins over the settings file's shared cache
        self.data_dir = data_dir

    # --- protocol -------------------------------------------------------------------------

    def check(self) -> None:
        ping = slurm(["scontrol", "ping"])
        if ping.returncode != 0 or "UP" not in ping.stdout:
            raise BackendUnavailable(
                f"slurm: slurmctld does not answer ({_first_line(ping.stdout + ping.stderr)})",
                hint="check `scontrol ping` on this node (tests: bash tests/infra/slurm-up.sh)",
            )
        partition = self.settings.partition
        if partition is not None:
            found = slurm(["scontrol", "show", "partition", partition, "-o"])
            if found.returncode != 0 or not found.stdout.startswith("PartitionName="):
                raise ConfigError(
                    f"slurm: no partition {partition!r} on this cluster",
                    hint="set 'partition' in --slurm-config to one `sinfo -s` lists",
                )

    def max_nodes(self) -> int:
        """Nodes of the partition jobs go to (the default one without a setting) that can run jobs."""
        args = ["sinfo", "--noheader", "--responding", "-o", "%P %D %t"]
        if self.settings.partition:
            args += ["-p", self.settings.partition]
        found = slurm(args)
        if found.returncode != 0:
            raise BackendUnavailable(f"slurm: sinfo failed ({_first_line(found.stderr)})")
        total = 0
        for line in found.stdout.splitlines():
            name, count, state = [*line.split(), "", "", ""][:3]
            default = name.endswith("*")
            if (self.settings.partition or default) and count.isdigit():
                if state.rstrip("*~#!%$@^-") in ("down", "drain", "drng", "fail", "maint"):
                    continue
                total += int(count)
        return max(total, 1)

    def job_data_dir(self, ctx: RunContext) -> Path:
        return self.data_dir or self.settings.data_dir or ctx.data_dir

    def submit(self, job: Job, ctx: RunContext) -> Handle:
        folder = ctx.run_dir / "slurm"
        folder.mkdir(parents=True, exist_ok=True)
        results_dir(ctx, job).mkdir(parents=True, exist_ok=True)
        output = folder / f"{job.id}.out"
        script = folder / f"{job.id}.sbatch"
        text = batch_script(
            job, ctx, self.settings, output=str(output), data_dir=self.job_data_dir(ctx)
        )
        script.write_text(text, encoding="utf-8")
        # a resumed job writes afresh: what an earlier attempt printed is not this one's output
        output.unlink(missing_ok=True)
        done = slurm(["sbatch", "--parsable", str(script)])
        if done.returncode != 0:
            why = _first_line(done.stderr)
            if any(w in why for w in ("Invalid account", "Invalid qos", "Invalid partition")):
                raise ConfigError(f"slurm refused {job.id}: {why}", hint="fix --slurm-config")
            raise OrchestratorError(f"slurm refused {job.id}: {why}", hint=f"script: {script}")
        job_id = done.stdout.strip().split(";")[0]
        return Handle(job=job, native=_Tracked(job=job, job_id=job_id, output=output))

    def running_since(self, handle: Handle) -> float | None:
        """When the job started (``time.monotonic``), None while Slurm keeps it queued.

        The runner starts the job's measurement clock then, not at submission.
        """
        tracked: _Tracked = handle.native
        return tracked.running_at

    def stream(self, handle: Handle) -> Iterator[str]:
        tracked: _Tracked = handle.native
        yield from split_lines(self._tail(tracked))

    def _tail(self, tracked: _Tracked) -> Iterator[bytes]:
        """The output file's bytes as they are written, until the job is over and all is read."""
        position = 0
        while True:
            ended = tracked.over.is_set()
            try:
                # reopened on each read: on NFS a fresh open is what shows another host's writes
                with open(tracked.output, "rb") as f:
                    f.seek(position)
                    while chunk := f.read(CHUNK):
                        position += len(chunk)
                        yield chunk
            except FileNotFoundError:
                pass  # pending: the file appears when the job starts
            if ended:
                return
            tracked.over.wait(TAIL_POLL)

    def wait(self, handle: Handle, timeout: float | None) -> Exit | None:
        tracked: _Tracked = handle.native
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            now = time.monotonic()
            if tracked.exit is None and now - tracked.last_poll >= self.settings.poll_interval:
                tracked.last_poll = now
                self._advance(tracked)
            if tracked.exit is not None:
                return tracked.exit
            if deadline is not None and now >= deadline:
                return None
            wake = tracked.last_poll + self.settings.poll_interval
            time.sleep(max(0.0, min(wake, deadline if deadline is not None else wake) - now))

    def cancel(self, handle: Handle) -> None:
        tracked: _Tracked = handle.native
        if tracked.exit is not None:
            return
        tracked.cancelled = True
        # scancel sends SIGTERM to every step, then SIGKILL after the cluster's KillWait
        with contextlib.suppress(BackendUnavailable):
            slurm(["scancel", tracked.job_id])

    # --- state ----------------------------------------------------------------------------

    def _advance(self, tracked: _Tracked) -> None:
        asked = time.monotonic()
        try:
            info = self._info(tracked.job_id)
            tracked.failing_since = None
        except BackendUnavailable as exc:
            tracked.failing_since = tracked.failing_since or time.monotonic()
            if time.monotonic() - tracked.failing_since >= LOST_GRACE:
                self._finish(tracked, Exit(None, Status.ERROR, f"lost the job's state: {exc}"))
            return
        if info is None:
            self._finish(
                tracked,
                Exit(
                    None,
                    Status.ERROR,
                    f"Slurm job {tracked.job_id} is unknown to slurmctld and sacct",
                ),
            )
            return
        tracked.info = info
        if info.queued:
            tracked.queued_at = asked
            self._queued(tracked, info)
        elif tracked.running_at is None and info.node_list is not None:
            tracked.running_at = clock_start(
                parse_time(info.start_time),
                queued_at=tracked.queued_at,
                now=time.monotonic(),
                wall=time.time(),
            )
        if not info.over:
            return
        if tracked.expired is not None and info.node_list is None and not tracked.cancelled:
            # cancelled by mbctl before it got any node: it never ran
            waited = f"still queued after {self.settings.queue_timeout:g}s ({tracked.expired})"
            self._finish(tracked, Exit(None, Status.QUEUED, waited))
            return
        by_us = tracked.cancelled or tracked.expired is not None
        self._finish(tracked, judge(info, cancelled=by_us))

    def _queued(self, tracked: _Tracked, info: JobInfo) -> None:
        """A waiting job: cancelled once it has waited ``queue_timeout`` (on each poll until
        Slurm reports it ended, in case an scancel was lost)."""
        if time.monotonic() - tracked.submitted < self.settings.queue_timeout:
            return
        tracked.expired = f"Slurm {info.state}" + (f", {info.reason}" if info.reason else "")
        with contextlib.suppress(BackendUnavailable):
            slurm(["scancel", tracked.job_id])

    def _finish(self, tracked: _Tracked, result: Exit) -> None:
        result.nodes = self._nodes(tracked.info)
        result.reason = (
            f"{result.reason}; Slurm job {tracked.job_id}" if result.reason else result.reason
        )
        tracked.exit = result
        tracked.over.set()

    def _info(self, job_id: str) -> JobInfo | None:
        """The job's state from slurmctld, else from accounting; None if neither knows it."""
        shown = slurm(["scontrol", "show", "job", "-d", "-o", job_id])
        if shown.returncode == 0:
            info = parse_scontrol(shown.stdout)
            if info is not None:
                return info
        elif "Invalid job id" not in shown.stderr:
            raise BackendUnavailable(f"slurm: scontrol failed ({_first_line(shown.stderr)})")
        # slurmctld has forgotten the job (MinJobAge passed): ask accounting, where there is one
        fields = "State,ExitCode,NodeList,Reason,Timelimit"
        acct = slurm(["sacct", "-X", "-n", "-P", "-o", fields, "-j", job_id])
        return parse_sacct(acct.stdout) if acct.returncode == 0 else None

    def _nodes(self, info: JobInfo | None) -> list[dict[str, Any]] | None:
        """Each node the job ran on, with the GPUs it got there."""
        if info is None or info.node_list is None:
            return None
        per_node: dict[str, dict[str, Any]] = {}
        for expr, gres in info.gres.items() or {info.node_list: ""}.items():
            for name in self._hostnames(expr):
                per_node[name] = {"name": name, **gpus_of(gres)}
        return list(per_node.values())

    def _hostnames(self, expr: str) -> list[str]:
        """``node[01-03]`` → its names (scontrol knows the site's hostlist syntax)."""
        try:
            found = slurm(["scontrol", "show", "hostnames", expr])
        except BackendUnavailable:
            return [expr]
        names = found.stdout.split()
        return names if found.returncode == 0 and names else [expr]

    # --- clean-up -------------------------------------------------------------------------

    def leftovers(self, run_id: str | None = None) -> list[tuple[str, str]]:
        """``(slurm id, name)`` of this user's queued or running mbctl jobs (of ``run_id``)."""
        found = slurm(["squeue", "--noheader", "--me", "-o", "%i %j"])
        prefix = NAME_PREFIX if run_id is None else job_name(run_id, "")
        jobs = []
        for line in found.stdout.splitlines():
            job_id, _, name = line.strip().partition(" ")
            if name.startswith(prefix):
                jobs.append((job_id, name))
        return jobs

    def cleanup_run(self, run_id: str) -> None:
        """Cancel whatever jobs of ``run_id`` are still queued or running (a crashed controller's)."""
        with contextlib.suppress(BackendUnavailable):
            stale = [job_id for job_id, _ in self.leftovers(run_id)]
            if stale:
                slurm(["scancel", *stale])
