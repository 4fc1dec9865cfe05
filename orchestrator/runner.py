"""Executes a plan on a backend: jobs per benchmark in parallel, timeouts, Ctrl-C, live recording."""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator.backends.base import Backend, Exit, Handle, Phase, RunContext, Status, StderrLine
from orchestrator.errors import OrchestratorError
from orchestrator.metrics import MetricsParser
from orchestrator.plan import Job, Plan
from orchestrator.results import RunDir, job_status

#: How often the supervising loop checks deadlines and interrupts, in seconds.
TICK = 0.2


@dataclass
class JobState:
    """Live view of one job, read by the progress display."""

    job: Job
    started: float | None = None
    finished: float | None = None
    measures: int = 0
    target: int | None = None
    rate: float | None = None
    units: str | None = None
    status: str = "pending"
    reason: str | None = None
    warnings: int = 0
    rejected_rates: int = 0

    @property
    def elapsed(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.monotonic()) - self.started


class Progress(Protocol):
    """What the runner tells whoever displays it (the CLI's live view, or nothing in tests)."""

    def update(self, state: JobState) -> None: ...


class _NoProgress:
    def update(self, state: JobState) -> None:
        return None


@dataclass
class Outcome:
    """What ``execute`` did: the state of every job and whether the user interrupted it."""

    states: list[JobState] = field(default_factory=list)
    interrupted: bool = False
    versions: dict[str, str] = field(default_factory=dict)
    #: job id -> the ``device`` its start event reported (what it ran on: benchkit's device facts)
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def failed(self) -> list[JobState]:
        return [s for s in self.states if s.status != Status.OK]


class Interrupted(OrchestratorError):
    """The user pressed Ctrl-C (or sent SIGTERM); results measured so far are kept."""

    exit_code = 130


def _groups(jobs: Sequence[Job]) -> list[list[Job]]:
    """Jobs of one benchmark run together (one per device), benchmarks one after another."""
    return [list(g) for _, g in itertools.groupby(jobs, key=lambda j: j.bench)]


class _Supervisor:
    """Runs one job: submit, pump lines into the recorder, enforce the deadline, record the exit."""

    def __init__(
        self,
        backend: Backend,
        ctx: RunContext,
        run: RunDir,
        state: JobState,
        progress: Progress,
        wake: threading.Event,
    ) -> None:
        self.backend, self.ctx, self.run, self.state, self.progress = (
            backend,
            ctx,
            run,
            state,
            progress,
        )
        self.wake = wake
        self.handle: Handle | None = None
        self.reader: threading.Thread | None = None
        self.recorder = run.recorder(state.job)
        self.versions: dict[str, str] = {}
        self.device: dict[str, Any] | None = None
        self.saw_nan = False
        self.early_stop = False

    def start(self) -> None:
        job = self.state.job
        self.state.started = time.monotonic()
        self.state.status = "running"
        self.progress.update(self.state)
        self.handle = self.backend.submit(job, self.ctx)
        reader = threading.Thread(target=self._pump, name=f"mbctl-read-{job.id}", daemon=True)
        reader.start()
        self.reader = reader

    def _pump(self) -> None:
        assert self.handle is not None
        parser = MetricsParser()
        recorder = self.recorder
        for line in self.backend.stream(self.handle):
            if isinstance(line, StderrLine):
                recorder.stderr(line)
                continue
            events, rest = parser.parse(line)
            if rest is not None:
                recorder.log(rest)
            for event in events:
                recorder.event(event)
                self._observe(event)
            if events:
                self.state.warnings = parser.warnings
                self.state.rejected_rates = parser.rejected_rates
            if recorder.fault is not None:
                self.wake.set()  # the supervisor stops a job whose results cannot be written
        self.state.warnings = parser.warnings
        self.state.rejected_rates = parser.rejected_rates
        # end of output almost always means the job exited: let the supervisor look now
        self.wake.set()

    def _observe(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "rate" and event.get("task", "train") == "train":
            self.state.measures += 1
            self.state.rate = event.get("value")
            self.state.units = event.get("units")
        elif kind == "progress":
            self.state.target = event.get("total")
        elif kind == "end" and event.get("status") == "early_stop":
            self.early_stop = True
        elif (
            kind == "loss" and isinstance(event.get("value"), float) and math.isnan(event["value"])
        ):
            self.saw_nan = True
        elif kind == "start":
            if isinstance(event.get("versions"), dict):
                self.versions.update({str(k): str(v) for k, v in event["versions"].items()})
            if isinstance(event.get("device"), dict):
                self.device = event["device"]
        else:
            return
        self.progress.update(self.state)

    def poll(self) -> Exit | None:
        """Non-blocking check; enforces ``max_duration``."""
        assert self.handle is not None
        # once the output has ended the process is exiting: block briefly instead of spinning
        reading = self.reader is not None and self.reader.is_alive()
        done = self.backend.wait(self.handle, timeout=0 if reading else TICK)
        if done is not None:
            return done
        if self.recorder.fault is not None:
            self.backend.cancel(self.handle)
            final = self.backend.wait(self.handle, timeout=None)
            return Exit(
                final.return_code if final else None,
                Status.FAILED,
                self.recorder.fault,
                final.image if final else None,
            )
        if not self._running():
            return None
        if self.state.elapsed > self.state.job.max_duration:
            self.backend.cancel(self.handle)
            final = self.backend.wait(self.handle, timeout=None)
            return Exit(
                final.return_code if final else None,
                Status.TIMEOUT,
                f"ran past max_duration={self.state.job.max_duration:g}s and was killed",
                final.image if final else None,
                final.nodes if final else None,
            )
        return None

    def _running(self) -> bool:
        """Whether the job runs; a backend that queues jobs (``running_since``) starts its clock
        only when it does, and enforces the queue's own budget itself."""
        since = getattr(self.backend, "running_since", None)
        if since is None:
            return True
        started: float | None = since(self.handle)
        status = "queued" if started is None else "running"
        if status != self.state.status:
            self.state.status = status
            if started is not None:
                self.state.started = started
            self.progress.update(self.state)
        return started is not None

    def cancel(self) -> Exit:
        if self.handle is None:  # interrupted inside submit: nothing of ours is running
            return Exit(None, Status.CANCELLED, "interrupted before it started")
        self.backend.cancel(self.handle)
        final = self.backend.wait(self.handle, timeout=None)
        return Exit(
            final.return_code if final else None,
            Status.CANCELLED,
            "interrupted by the user",
            final.image if final else None,
            final.nodes if final else None,
        )

    def finish(self, result: Exit) -> None:
        if self.reader is not None:
            self.reader.join(timeout=10)
        reason = result.reason
        if self.recorder.fault is not None and result.status in (Status.OK, Status.FAILED):
            reason = self.recorder.fault
            result = Exit(result.return_code, Status.FAILED, reason, result.image, result.nodes)
        # one rule, shared with the reports: a prepare job only has to exit 0
        status, reason = job_status(
            result.status.value,
            result.return_code,
            reason,
            early_stop=self.early_stop,
            train_rates=self.state.measures,
            nan_loss=self.saw_nan,
            measuring=self.ctx.phase is Phase.RUN,
        )
        self.recorder.finish(
            result.return_code,
            status,
            reason,
            result.image,
            counts={"warnings": self.state.warnings, "rejected_rates": self.state.rejected_rates},
            nodes=result.nodes,
        )
        self.state.finished = time.monotonic()
        self.state.status = status
        self.state.reason = reason
        self.progress.update(self.state)


def _stop_all(running: list[_Supervisor]) -> None:
    """Cancel every running job; each further Ctrl-C drops the grace period of those left
    (the backends kill what they started whatever happens, so nothing outlives mbctl)."""
    left = list(running)
    while left:
        try:
            while left:
                if not left[0].recorder.finished:
                    left[0].finish(left[0].cancel())
                left.pop(0)
        except KeyboardInterrupt:
            for sup in left:
                if sup.handle is not None:
                    sup.handle.extra["hurry"] = True


def execute(
    plan: Plan,
    backend: Backend,
    run: RunDir,
    ctx: RunContext,
    *,
    skip: set[str] | None = None,
    progress: Progress | None = None,
) -> Outcome:
    """Run every job of ``plan`` not in ``skip``; a KeyboardInterrupt cancels the running ones.

    Results are recorded as they arrive, so whatever happens the run folder stays readable.
    """
    progress = progress or _NoProgress()
    outcome = Outcome()
    jobs = [j for j in plan.jobs if j.id not in (skip or set())]
    for job in jobs:
        outcome.states.append(JobState(job))
    states = {s.job.id: s for s in outcome.states}
    for s in outcome.states:
        progress.update(s)
    for group in _groups(jobs):
        running: list[_Supervisor] = []
        wake = threading.Event()
        try:
            for job in group:
                sup = _Supervisor(backend, ctx, run, states[job.id], progress, wake)
                running.append(sup)
                try:
                    sup.start()
                except (OrchestratorError, OSError) as exc:
                    running.remove(sup)
                    sup.recorder.finish(None, Status.ERROR.value, str(exc))
                    sup.state.status, sup.state.reason = Status.ERROR.value, str(exc)
                    progress.update(sup.state)
            while running:
                for sup in list(running):
                    result = sup.poll()
                    if result is not None:
                        sup.finish(result)
                        outcome.versions.update(sup.versions)
                        if sup.device is not None:
                            outcome.devices[sup.state.job.id] = sup.device
                        running.remove(sup)
                if running:
                    wake.wait(TICK)
                    wake.clear()
        except KeyboardInterrupt:
            _stop_all(running)
            for job in jobs:
                if states[job.id].status == "pending":
                    states[job.id].status = Status.CANCELLED.value
                    progress.update(states[job.id])
            outcome.interrupted = True
            return outcome
    return outcome
