"""The run directory: run ids, meta.json, per-job event/log files, summary.json, atomic writes."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import secrets
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Final

from orchestrator import limits
from orchestrator.archives import bounded_lines, iter_objects
from orchestrator.errors import ConfigError, ResultsError

if TYPE_CHECKING:
    from orchestrator.plan import Job

META_FILE: Final = "meta.json"
SUMMARY_FILE: Final = "summary.json"
EVENTS_SUFFIX: Final = ".jsonl"
LOG_SUFFIX: Final = ".log"
#: A job's standard error, kept apart from its stdout so progress bars never touch metrics.
STDERR_SUFFIX: Final = ".stderr.log"
#: The reason of a job whose results could not be written: the exit event says it, if it fits.
DISK_FULL: Final = "disk full"
EXIT_STATUSES: Final = frozenset({"ok", "failed", "timeout", "cancelled", "oom", "error", "queued"})
#: Exit statuses of jobs that never ran to an end: ``run --resume`` runs them again.
UNFINISHED: Final = frozenset({"cancelled", "queued"})

_SLUG_RE: Final = re.compile(r"[^a-z0-9]+")
_TAIL_BYTES: Final = 64 * 1024
_JOB_ID_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=-]*")


def disk_problem(exc: OSError) -> str:
    """What a failed write means for a user: ``disk full``, a read-only folder, or the OS's words."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DISK_FULL
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return exc.strerror or str(exc)


def job_status(
    status: str,
    return_code: int | None,
    reason: str | None,
    *,
    early_stop: bool,
    train_rates: int,
    nan_loss: bool,
    measuring: bool = True,
) -> tuple[str, str | None]:
    """The one status of a job, and why, that the CLI, summary.json and every report show.

    ``status`` is how the process ended (ok = exit 0, failed = another exit; timeout,
    cancelled, oom and error stand as they are). Milabench's rule decides the rest: a job
    that stopped early after its measurements succeeded whatever its exit code (voir stops
    a benchmark by killing it); one that exited 0 succeeded if it reported a training rate
    and no NaN loss. A prepare job (``measuring`` False) only has to exit 0.
    """
    if status not in ("ok", "failed") or not measuring or reason == DISK_FULL:
        return status, reason
    if early_stop:
        return "ok", None
    if status == "failed":
        return status, reason or (
            f"exited with code {return_code}" if return_code is not None else None
        )
    if train_rates == 0:
        return "failed", "exited 0 without reporting any training rate"
    if nan_loss:
        return "failed", "loss became NaN"
    return "ok", None


def data_folder(path: Path) -> Path:
    """``--data``, created if missing; ConfigError (one line) if it cannot be a folder here."""
    path = Path(path).resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(
            f"--data {path}: is a file, not a folder", hint="pass the dataset cache folder"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"--data {path}: cannot create it ({disk_problem(exc)})",
            hint="pass a folder this user may write",
        ) from None
    return path


def new_run_id(suite_name: str, *, now: datetime | None = None) -> str:
    """A sortable, unique run id: ``<UTC yyyymmdd-HHMMSS>-<suite slug>-<4 hex>``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    slug = _SLUG_RE.sub("-", suite_name.lower()).strip("-")[:40].strip("-") or "run"
    return f"{stamp}-{slug}-{secrets.token_hex(2)}"


def _strict(obj: Any) -> Any:
    """``obj`` with non-finite floats replaced by None, so that it is standard JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_strict(v) for v in obj]
    return obj


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise ResultsError(f"cannot write {path}: {disk_problem(exc)}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ResultsError(
            f"cannot write {path}: {disk_problem(exc)}",
            hint="free space or choose another --results folder; what was measured so far stays",
        ) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented, standard JSON (NaN/Infinity become null), atomically."""
    text = json.dumps(_strict(obj), indent=2, allow_nan=False, default=str, ensure_ascii=False)
    atomic_write_text(path, text + "\n")


def read_events(path: Path) -> list[dict[str, Any]]:
    """All events of one job's ``.jsonl`` file, tolerating a run killed mid-write."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return list(iter_objects(bounded_lines(f)))
    except OSError as exc:
        raise ResultsError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _last_event(path: Path) -> dict[str, Any] | None:
    """The last complete, valid event of a ``.jsonl`` file, reading only its tail."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        start = max(0, size - _TAIL_BYTES)
        while True:
            f.seek(start)
            lines = f.read().split(b"\n")
            lines.pop()  # unterminated (partial) line or the empty string after the last "\n"
            if start > 0:
                lines.pop(0)  # may start mid-line
            for raw in reversed(lines):
                for ev in iter_objects([raw.decode("utf-8", errors="replace")]):
                    return ev
            if start == 0:
                return None
            start = 0


class RunDir:
    """``runs/<run-id>/``: ``meta.json``, ``<job.id>.jsonl``, ``<job.id>.log``, ``summary.json``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    @property
    def run_id(self) -> str:
        return self.path.name

    @classmethod
    def create(cls, root: Path, meta: dict[str, Any], run_id: str | None = None) -> RunDir:
        """Create ``root/<run_id>`` and write its ``meta.json`` (``run_id`` and ``created`` added)."""
        suite = meta.get("suite")
        run_id = run_id or new_run_id(
            str(suite.get("name", "run")) if isinstance(suite, dict) else "run"
        )
        path = Path(root) / run_id
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.mkdir()
        except FileExistsError:
            raise ResultsError(f"run directory already exists: {path}") from None
        except OSError as exc:
            raise ResultsError(f"cannot create run directory {path}: {exc.strerror}") from exc
        created = datetime.now(UTC).isoformat(timespec="seconds")
        atomic_write_json(path / META_FILE, {"run_id": run_id, "created": created, **meta})
        return cls(path)

    @classmethod
    def open(cls, path: Path) -> RunDir:
        """An existing run directory; ResultsError if ``path`` is not one."""
        run = cls(Path(path))
        run.meta()
        return run

    def meta(self) -> dict[str, Any]:
        meta_path = self.path / META_FILE
        try:
            with open(meta_path, "rb") as f:
                raw = f.read(limits.MAX_METADATA_BYTES + 1)
            if len(raw) > limits.MAX_METADATA_BYTES:
                raise ResultsError(
                    f"{meta_path}: larger than {limits.MAX_METADATA_BYTES} bytes "
                    "(limits.MAX_METADATA_BYTES)"
                )
            meta = json.loads(raw.decode("utf-8", errors="replace"))
        except FileNotFoundError:
            raise ResultsError(f"not a run directory: {self.path} (no {META_FILE})") from None
        except OSError as exc:
            raise ResultsError(f"cannot read {meta_path}: {exc.strerror}") from exc
        except ValueError as exc:
            raise ResultsError(f"{meta_path} is not valid JSON: {exc}") from exc
        if not isinstance(meta, dict):
            raise ResultsError(f"{meta_path} does not hold a JSON object")
        return meta

    def update_meta(self, **fields: Any) -> None:
        """Merge ``fields`` into ``meta.json`` (top level), atomically."""
        with self._lock:
            atomic_write_json(self.path / META_FILE, {**self.meta(), **fields})

    def events_path(self, job_id: str) -> Path:
        return self.path / f"{job_id}{EVENTS_SUFFIX}"

    def log_path(self, job_id: str) -> Path:
        return self.path / f"{job_id}{LOG_SUFFIX}"

    def stderr_path(self, job_id: str) -> Path:
        return self.path / f"{job_id}{STDERR_SUFFIX}"

    def job_ids(self) -> list[str]:
        """Ids of the jobs that have an events file, sorted."""
        return sorted(p.name[: -len(EVENTS_SUFFIX)] for p in self.path.glob(f"*{EVENTS_SUFFIX}"))

    def recorder(self, job: Job) -> JobRecorder:
        """Start recording ``job``, replacing any files a previous attempt left."""
        return JobRecorder(self, job)

    def completed_job_ids(self) -> set[str]:
        """Jobs whose events end with an ``exit`` event whose status is not ``UNFINISHED``."""
        done = set()
        for job_id in self.job_ids():
            try:
                last = _last_event(self.events_path(job_id))
            except OSError as exc:
                raise ResultsError(f"cannot read {self.events_path(job_id)}: {exc}") from exc
            if last and last.get("event") == "exit" and last.get("status") not in UNFINISHED:
                done.add(job_id)
        return done

    def write_summary(self, obj: Any) -> None:
        atomic_write_json(self.path / SUMMARY_FILE, obj)


class JobRecorder:
    """Appends one job's events (a JSON line each, flushed) and untagged output as it arrives.

    Writes the ``config`` event on creation and the ``exit`` event in ``finish``; safe to
    use from the thread that reads the job's output and the one that finishes it. As a
    context manager, an exception escaping the block is recorded as the job's exit
    (``cancelled`` for KeyboardInterrupt or task cancellation, ``error`` for an Exception);
    leaving it without ``finish`` leaves the job incomplete, so ``--resume`` re-runs it.
    """

    def __init__(self, run: RunDir, job: Job) -> None:
        if not _JOB_ID_RE.fullmatch(job.id):
            raise ResultsError(f"job id {job.id!r} cannot name a result file")
        self.job = job
        self._run = run
        self._lock = threading.Lock()
        self._events: IO[str] | None = None
        self._log: IO[str] | None = None
        self._stderr: IO[str] | None = None
        #: why results stopped being written (``disk full``, ...); None while all is well
        self.fault: str | None = None
        #: writes dropped after the fault
        self.dropped = 0
        # Both stay open for the job's lifetime and are closed by finish()/__exit__.
        try:
            self._events = open(run.events_path(job.id), "w", encoding="utf-8")  # noqa: SIM115
            self._log = open(  # noqa: SIM115
                run.log_path(job.id), "w", encoding="utf-8", errors="backslashreplace"
            )
        except OSError as exc:
            self._close()
            raise ResultsError(f"cannot write results of job {job.id}: {exc.strerror}") from exc
        self.event({"event": "config", "t": time.time(), "job": job.describe()})

    @property
    def finished(self) -> bool:
        return self._events is None

    def _write(self, stream: IO[str] | None, text: str) -> None:
        if stream is None:
            raise ResultsError(f"job {self.job.id} is already finished")
        if self.fault is not None:
            self.dropped += 1
            return
        try:
            stream.write(text)
            stream.flush()
        except OSError as exc:
            # what was flushed before stays readable; the runner ends the job on the fault
            self.fault = disk_problem(exc)
            self.dropped += 1

    def event(self, ev: dict[str, Any]) -> None:
        """Append one event (``t`` is added when missing) and flush it."""
        if "t" not in ev:
            ev = {"event": ev.get("event"), "t": time.time(), **ev}
        text = json.dumps(ev, default=str) + "\n"
        with self._lock:
            self._write(self._events, text)

    def log(self, line: str) -> None:
        """Append one line of untagged output and flush it."""
        with self._lock:
            self._write(self._log, line.rstrip("\r\n") + "\n")

    def stderr(self, line: str) -> None:
        """Append one line of the job's standard error (its own file, opened on first use)."""
        with self._lock:
            if self._stderr is None and self._events is not None and self.fault is None:
                try:
                    self._stderr = open(  # noqa: SIM115 - closed by finish()/__exit__
                        self._run.stderr_path(self.job.id),
                        "w",
                        encoding="utf-8",
                        errors="backslashreplace",
                    )
                except OSError as exc:
                    self.fault = disk_problem(exc)
            self._write(self._stderr or self._log, line.rstrip("\r\n") + "\n")

    def finish(
        self,
        return_code: int | None,
        status: str,
        reason: str | None = None,
        image: dict[str, Any] | None = None,
        *,
        counts: dict[str, int] | None = None,
        nodes: list[dict[str, Any]] | None = None,
    ) -> None:
        """Write the ``exit`` event, sync it to disk and close the files. ``counts`` (malformed
        protocol lines, refused rates...) are added to it when not zero; ``nodes`` (the nodes
        that ran the job) only where the backend knows them."""
        if status not in EXIT_STATUSES:
            raise ValueError(f"exit status {status!r} is not one of {sorted(EXIT_STATUSES)}")
        ev: dict[str, Any] = {
            "event": "exit",
            "t": time.time(),
            "return_code": return_code,
            "status": status,
            "reason": reason,
            "image": image,
            **{k: v for k, v in (counts or {}).items() if v},
        }
        if nodes is not None:
            ev["nodes"] = nodes
        text = json.dumps(ev, default=str) + "\n"
        with self._lock:
            if self._events is None:
                raise ResultsError(f"job {self.job.id} is already finished")
            if self.fault is not None:
                # the exit event is what --resume and reports read: try it even on a full disk
                self.fault, fault = None, self.fault
                self._write(self._events, text)
                self.fault = self.fault or fault
            else:
                self._write(self._events, text)
            with contextlib.suppress(OSError):
                os.fsync(self._events.fileno())
            self._close()

    def _close(self) -> None:
        for stream in (self._events, self._log, self._stderr):
            if stream is not None:
                # a full disk fails the last flush too: what could be written is written
                with contextlib.suppress(OSError):
                    stream.close()
        self._events = self._log = self._stderr = None

    def __enter__(self) -> JobRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.finished:
            return
        if exc is None:
            with self._lock:
                self._close()
        elif not isinstance(exc, Exception):  # KeyboardInterrupt, asyncio.CancelledError, ...
            self.finish(None, "cancelled", reason=type(exc).__name__)
        else:
            self.finish(None, "error", reason=f"{type(exc).__name__}: {exc}")
