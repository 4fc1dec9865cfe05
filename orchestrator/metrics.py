"""The metrics protocol parser: one stdout line in, one normalised event (or nothing) out."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from typing import Any, Final, TypeGuard

PROTOCOL_VERSION: Final = 1
MAX_LINE_LENGTH: Final = 1 << 20
MAX_WARNING_MESSAGES: Final = 20
#: Largest rate accepted: a petaflop machine reports 1e15 FLOP/s; sums of a few 1e308 overflow
#: to inf, which no score can hold.
MAX_RATE: Final = 1e18

_TAG: Final = '{"mbctl"'
_VOIR: Final = '{"event"'
_TAGGED_RE: Final = re.compile(r'\{\s*"(mbctl|event)"\s*:')
#: voir's smuggled data (voir.smuggle): ESC [ + UTF-8 hex written with 0-9:;<=>? + z.
_SMUGGLE_START: Final = "\x1b["
_SMUGGLED_RE: Final = re.compile(r"\x1b\[([0-9:;<=>?]*)z")
_UNHEX: Final = str.maketrans(":;<=>?", "abcdef")
#: An ESC [ still open at the end of a line (the line was cut): it may end in the next one.
_OPEN_CODE_RE: Final = re.compile(r"\x1b(\[[0-9:;<=>?]*)?$")

# The decoder's own scanner skips json.loads' per-call checks, a third of a rate line's cost;
# typeshed does not declare the attribute that JSONDecoder.__init__ sets.
_SCAN: Final[Callable[[str, int], tuple[Any, int]]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]

_TASKS: Final = frozenset({"train", "eval", "infer"})
_END_STATUSES: Final = frozenset({"done", "early_stop"})

Event = dict[str, Any]


def _is_number(value: object) -> TypeGuard[int | float]:
    t = type(value)
    return t is float or t is int


def _is_finite(value: object) -> TypeGuard[int | float]:
    if type(value) is float:
        return math.isfinite(value)
    return type(value) is int


def _check_start(ev: Event) -> str | None:
    if "bench" in ev and type(ev["bench"]) is not str:
        return "start.bench must be a string"
    argv = ev.get("argv")
    if argv is not None and not (type(argv) is list and all(type(a) is str for a in argv)):
        return "start.argv must be a list of strings"
    versions = ev.get("versions")
    if versions is not None and not (
        type(versions) is dict and all(type(v) is str for v in versions.values())
    ):
        return "start.versions must be an object of strings"
    if "pid" in ev and type(ev["pid"]) is not int:
        return "start.pid must be an integer"
    if "device" in ev and type(ev["device"]) is not dict:
        return "start.device must be an object"
    return None


def _check_rate(ev: Event) -> str | None:
    value = ev.get("value")
    if not _is_finite(value) or not 0 <= value <= MAX_RATE:
        return f"rate.value must be a finite number in [0, {MAX_RATE:g}]"
    if type(ev.get("units")) is not str:
        return "rate.units must be a string"
    if ev.get("task") not in _TASKS:
        return "rate.task must be one of train, eval, infer"
    if "step" in ev and type(ev["step"]) is not int:
        return "rate.step must be an integer"
    return None


def _check_loss(ev: Event) -> str | None:
    if not _is_number(ev.get("value")):
        return "loss.value must be a number"
    if "task" in ev and type(ev["task"]) is not str:
        return "loss.task must be a string"
    return None


def _check_device(sample: object) -> bool:
    if type(sample) is not dict:
        return False
    memory = sample.get("memory")
    if memory is not None and not (
        type(memory) is list and len(memory) == 2 and all(_is_number(m) for m in memory)
    ):
        return False
    return all(
        sample.get(key) is None or _is_number(sample[key])
        for key in ("load", "temperature", "power")
    )


def _check_gpu(ev: Event) -> str | None:
    devices = ev.get("devices")
    if type(devices) is not dict or not all(_check_device(s) for s in devices.values()):
        return (
            "gpu.devices must map device ids to {memory: [used, total], load, temperature, power}"
        )
    return None


def _check_progress(ev: Event) -> str | None:
    if type(ev.get("step")) is not int or type(ev.get("total")) is not int:
        return "progress.step and progress.total must be integers"
    return None


def _check_end(ev: Event) -> str | None:
    if ev.get("status") not in _END_STATUSES:
        return "end.status must be done or early_stop"
    return None


def _check_error(ev: Event) -> str | None:
    if type(ev.get("message")) is not str:
        return "error.message must be a string"
    if "type" in ev and type(ev["type"]) is not str:
        return "error.type must be a string"
    return None


def _check_meta(ev: Event) -> str | None:
    if type(ev.get("kind")) is not str:
        return "meta.kind must be a string"
    return None


_CHECKS: Final[dict[str, Callable[[Event], str | None]]] = {
    "rate": _check_rate,
    "gpu": _check_gpu,
    "loss": _check_loss,
    "progress": _check_progress,
    "start": _check_start,
    "end": _check_end,
    "error": _check_error,
    "meta": _check_meta,
}


class MetricsParser:
    """Streaming parser of one job's output; ``feed`` never raises.

    ``feed`` returns the stored shape of a protocol event (``{"event", "t", ...}``, without
    the ``mbctl`` key) or ``None`` for a line the caller keeps in the job's log: ordinary
    output, and malformed tagged lines, which are also counted in ``warnings``.
    Milabench/voir lines (``{"event": ..., "data": ..., "pipe": ...}``) are normalised
    into the same events (see docs/protocol.md).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        max_line_length: int = MAX_LINE_LENGTH,
        max_messages: int = MAX_WARNING_MESSAGES,
    ) -> None:
        self._clock = clock
        self._max_line_length = max_line_length
        self._max_messages = max_messages
        self.lines = 0
        self.events = 0
        self.warnings = 0
        #: rate events refused for a non-finite, negative or non-numeric value (also warnings)
        self.rejected_rates = 0
        self.messages: list[str] = []
        self._smuggled = ""  # decoded voir data not yet ended by a newline
        self._open_code = ""  # a smuggling sequence cut at the end of the previous line

    def parse(self, line: str) -> tuple[list[Event], str | None]:
        """Every event carried by one line of output, and the text of it to keep in the job's
        log (None when nothing is left): plain protocol lines, protocol lines after
        carriage-return noise (a progress bar on the same terminal line), and data that
        voir smuggles as escape sequences anywhere in the output."""
        if _SMUGGLE_START not in line and "\x1b" not in line[-1:] and not self._open_code:
            event = self.feed(line)
            return ([event], None) if event is not None else ([], line)
        events: list[Event] = []
        rest = self._unsmuggle(line, events)
        if rest.strip():
            event = self.feed(rest)
            if event is not None:
                return [*events, event], None
            return events, rest
        return events, None

    def _unsmuggle(self, line: str, events: list[Event]) -> str:
        """Decode voir's sequences of ``line`` into ``events``; return the line without them."""
        line, self._open_code = self._open_code + line, ""
        cut = _OPEN_CODE_RE.search(line)
        if cut is not None:
            line, self._open_code = line[: cut.start()], line[cut.start() :]
            if len(self._open_code) > self._max_line_length:
                self._open_code = ""
                self._warn("smuggled sequence longer than the line limit: dropped")
        parts: list[str] = []
        last = 0
        for match in _SMUGGLED_RE.finditer(line):
            parts.append(line[last : match.start()])
            last = match.end()
            try:
                self._smuggled += bytes.fromhex(match[1].translate(_UNHEX)).decode("utf-8")
            except ValueError:
                self._warn("smuggled sequence is not hex-encoded UTF-8")
                continue
            *complete, self._smuggled = self._smuggled.split("\n")
            for data in complete:
                event = self._smuggled_line(data)
                if event is not None:
                    events.append(event)
            if len(self._smuggled) > self._max_line_length:
                self._smuggled = ""
                self._warn(f"smuggled line longer than {self._max_line_length} characters")
        parts.append(line[last:])
        return "".join(parts)

    def feed(self, line: str) -> Event | None:
        """Parse one line of output (trailing newline allowed)."""
        self.lines += 1
        try:
            if line.startswith(_TAG):
                return self._native(line)
            if line.startswith(_VOIR):
                return self._voir(line)
            stripped = line.lstrip()
            match = _TAGGED_RE.match(stripped) if stripped[:1] == "{" else None
            if match is None:
                # a progress bar redrawn with \r on a shared terminal line glues onto what
                # follows it: the protocol line starts after the noise
                stripped = _after_noise(line)
                match = _TAGGED_RE.match(stripped)
                if match is None:
                    return None
            return self._native(stripped) if match[1] == "mbctl" else self._voir(stripped)
        except Exception as exc:  # the parser must survive any input; report, never raise
            self._warn(f"unexpected {type(exc).__name__} while parsing")
            return None

    def _smuggled_line(self, data: str) -> Event | None:
        """One decoded line: a whole voir event (voir's overseer writes those), or a bare data
        object (benchmate's ``setupvoir`` prints ``{"task", "rate", ...}`` and leaves the
        wrapping to Milabench's runner, as mbctl does here)."""
        self.lines -= 1  # feed counts lines of output; this one is inside one
        if _TAGGED_RE.match(data.lstrip()):
            return self.feed(data)
        self.lines += 1
        try:
            obj = self._load(data.strip())
        except (ValueError, RecursionError):
            self._warn("smuggled line is not JSON")
            return None
        if type(obj) is not dict:
            self._warn("smuggled line is not a JSON object")
            return None
        when = obj.get("time", obj.get("t"))
        ev = self._voir_data(obj, float(when) if _is_finite(when) else self._clock())
        if ev is not None:
            self.events += 1
        return ev

    def _warn(self, message: str) -> None:
        self.warnings += 1
        if len(self.messages) < self._max_messages:
            self.messages.append(f"line {self.lines}: {message}")

    def _load(self, line: str) -> object:
        if len(line) > self._max_line_length:
            raise ValueError(f"line longer than {self._max_line_length} characters")
        try:
            obj, end = _SCAN(line, 0)
        except StopIteration:
            raise ValueError("no JSON value") from None
        if end != len(line) and line[end:].strip():
            raise ValueError(f"extra data at column {end + 1}")
        return obj

    def _native(self, line: str) -> Event | None:
        try:
            ev = self._load(line)
        except (ValueError, RecursionError) as exc:
            self._warn(f"tagged line is not valid JSON ({_short(exc)})")
            return None
        if type(ev) is not dict:
            self._warn("tagged line is not a JSON object")
            return None
        version = ev.pop("mbctl", None)
        if version != PROTOCOL_VERSION or type(version) is not int:
            self._warn(f"unsupported protocol version {_short(version)}")
            return None
        name = ev.get("event")
        check = _CHECKS.get(name) if type(name) is str else None
        if check is None:
            self._warn(f"unknown event {_short(name)}")
            return None
        error = check(ev)
        if error is not None:
            if name == "rate":
                self.rejected_rates += 1
            self._warn(error)
            return None
        t = ev.get("t")
        if t is None:
            ev = {"event": name, "t": self._clock(), **ev}
        elif not _is_finite(t):
            self._warn("t must be a finite number of seconds")
            return None
        self.events += 1
        return ev

    def _voir(self, line: str) -> Event | None:
        try:
            obj = self._load(line)
        except (ValueError, RecursionError):
            return None
        if type(obj) is not dict or type(obj.get("event")) is not str or "data" not in obj:
            return None
        name: str = obj["event"]
        data = obj["data"]
        when = data.get("time") if type(data) is dict else None
        t = float(when) if _is_finite(when) else self._clock()
        ev = self._voir_event(name, data, t)
        if ev is not None:
            self.events += 1
        return ev

    def _voir_event(self, name: str, data: Any, t: float) -> Event | None:
        if name == "data":
            if type(data) is not dict:
                self._warn("voir data event without an object")
                return None
            return self._voir_data(data, t)
        if name == "line":
            return None
        if name == "stop":
            return {"event": "end", "t": t, "status": "early_stop"}
        if name == "start":
            command = data.get("command") if type(data) is dict else None
            ev: Event = {"event": "start", "t": t}
            if type(command) is list and all(type(c) is str for c in command):
                ev["argv"] = command
            return ev
        if name == "end":
            rc = data.get("return_code") if type(data) is dict else None
            if rc is not None and type(rc) is not int:
                self._warn("voir end.return_code must be an integer")
                return None
            return {
                "event": "end",
                "t": t,
                "status": "done" if rc == 0 else "failed",
                "return_code": rc,
            }
        if name == "error":
            if type(data) is not dict:
                return {"event": "error", "t": t, "message": str(data), "type": "error"}
            return {
                "event": "error",
                "t": t,
                "message": str(data.get("message", "")),
                "type": str(data.get("type", "error")),
            }
        return {"event": "meta", "t": t, "kind": name, "data": data}

    def _voir_data(self, data: dict[str, Any], t: float) -> Event | None:
        task = data.get("task")
        if task is not None and type(task) is not str:
            self._warn("voir data.task must be a string")
            return None
        if "rate" in data:
            value = data["rate"]
            units = data.get("units", "")
            if not _is_finite(value) or not 0 <= value <= MAX_RATE or type(units) is not str:
                self.rejected_rates += 1
                self._warn(
                    f"voir rate must be a finite number in [0, {MAX_RATE:g}] with string units"
                )
                return None
            return {"event": "rate", "t": t, "value": value, "units": units, "task": task}
        if "loss" in data:
            if not _is_number(data["loss"]):
                self._warn("voir loss must be a number")
                return None
            return {"event": "loss", "t": t, "value": data["loss"], "task": task}
        if "gpudata" in data:
            ev = {"event": "gpu", "t": t, "devices": data["gpudata"]}
            error = _check_gpu(ev)
            if error is not None:
                self._warn(f"voir {error}")
                return None
            return ev
        progress = data.get("progress")
        if task == "early_stop" and progress is not None:
            if not (
                type(progress) is list
                and len(progress) == 2
                and all(type(p) is int for p in progress)
            ):
                self._warn("voir progress must be [step, total] integers")
                return None
            return {"event": "progress", "t": t, "step": progress[0], "total": progress[1]}
        return {"event": "meta", "t": t, "kind": "data", "data": data}


def _after_noise(line: str) -> str:
    """The tagged object after the last carriage return of ``line`` (JSON text holds none),
    or "" when there is no carriage return or no tag after it."""
    cr = line.rfind("\r")
    if cr < 0:
        return ""
    match = _TAGGED_RE.search(line, cr + 1)
    return line[match.start() :] if match is not None else ""


def _short(value: object, limit: int = 60) -> str:
    text = repr(value) if not isinstance(value, Exception) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
