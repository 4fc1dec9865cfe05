"""The backend protocol (check, submit, stream, wait, cancel), its registry and shared helpers."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from orchestrator.errors import ConfigError
from orchestrator.plan import Job

#: Longest line kept whole; longer output is cut so one runaway print cannot exhaust memory.
MAX_LINE = 1 << 20


class Phase(StrEnum):
    PREPARE = "prepare"
    RUN = "run"


class Status(StrEnum):
    """How a job ended, as recorded in its ``exit`` event."""

    OK = "ok"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    OOM = "oom"
    ERROR = "error"
    #: never ran: still waiting for admission, a node or its image when the queue budget ran out
    QUEUED = "queued"


class StderrLine(str):
    """A line a job wrote to standard error: logged apart, never parsed as metrics.

    Backends that can tell the streams apart (local) yield these; the others yield plain
    strings for both, and the metrics parser copes with the mixture."""

    __slots__ = ()


@dataclass(frozen=True)
class RunContext:
    """What every job of one run shares: ids, folders, the phase."""

    run_id: str
    run_dir: Path
    data_dir: Path
    benchmarks_root: Path
    phase: Phase = Phase.RUN


@dataclass
class Exit:
    """A finished job as the backend saw it; ``status`` may be refined by the runner."""

    return_code: int | None
    status: Status
    reason: str | None = None
    image: dict[str, Any] | None = None
    #: the nodes that ran the job, for backends that know them: [{"name", "gpu_product", "gpu_count", ...}]
    nodes: list[dict[str, Any]] | None = None


@dataclass
class Handle:
    """A submitted job; backends keep their own state in ``native``."""

    job: Job
    native: Any
    extra: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    """Where jobs execute. Implementations: local (subprocess), docker, kubernetes."""

    name: str

    def check(self) -> None:
        """Raise BackendUnavailable with a one-line reason if jobs cannot start."""

    def submit(self, job: Job, ctx: RunContext) -> Handle:
        """Start ``job``; return at once."""

    def stream(self, handle: Handle) -> Iterator[str]:
        """The job's output lines (stdout and stderr merged), live, until it ends."""

    def wait(self, handle: Handle, timeout: float | None) -> Exit | None:
        """The job's exit, or None if it is still running after ``timeout`` seconds."""

    def cancel(self, handle: Handle) -> None:
        """Stop the job and everything it started; safe to call twice or after exit."""

    def max_nodes(self) -> int:
        """How many nodes one job can span here: a ``{nodes: N}`` benchmark is planned when
        N is at most this, skipped otherwise. 1 (this machine) unless a backend knows better:
        local and docker place what ``--nodes`` asks for on this host (processes, containers),
        cluster backends count the nodes they can schedule. Backends that subclass this
        protocol inherit the default."""
        return 1


BACKENDS = {
    "local": "orchestrator.backends.local:LocalBackend",
    "docker": "orchestrator.backends.docker:DockerBackend",
    "kubernetes": "orchestrator.backends.kubernetes:KubernetesBackend",
    "slurm": "orchestrator.backends.slurm:SlurmBackend",
}


def backend_class(name: str) -> type[Any]:
    """The backend class registered as ``name``; imported lazily (docker/kubernetes are heavy)."""
    target = BACKENDS.get(name)
    if target is None:
        raise ConfigError(f"no such backend: {name!r}", hint="choose from " + ", ".join(BACKENDS))
    module, _, attr = target.partition(":")
    cls: type[Any] = getattr(importlib.import_module(module), attr)
    return cls


class LineSplitter:
    """Raw output chunks in, text lines out, one stream at a time; a line over ``max_line``
    bytes is cut there."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self.pending = bytearray()

    def feed(self, chunk: bytes) -> Iterator[str]:
        pending = self.pending
        pending += chunk
        start = 0
        while True:
            end = pending.find(b"\n", start)
            if end < 0:
                break
            yield _decode(pending[start:end])
            start = end + 1
        del pending[:start]
        while len(pending) > self.max_line:
            yield _decode(pending[: self.max_line])
            del pending[: self.max_line]

    def close(self) -> Iterator[str]:
        if self.pending:
            yield _decode(self.pending)
            self.pending.clear()


def split_lines(chunks: Iterable[bytes], max_line: int = MAX_LINE) -> Iterator[str]:
    """Turn raw output chunks into text lines; a line over ``max_line`` bytes is cut there."""
    splitter = LineSplitter(max_line)
    for chunk in chunks:
        yield from splitter.feed(chunk)
    yield from splitter.close()


def _decode(raw: bytes | bytearray) -> str:
    return bytes(raw).decode("utf-8", errors="replace").rstrip("\r")
