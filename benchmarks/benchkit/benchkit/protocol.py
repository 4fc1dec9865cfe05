"""Writing metrics-protocol v1 lines to stdout, one JSON object per line, from any thread."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, TextIO

PROTOCOL_VERSION = 1


def _to_builtin(value: Any) -> Any:
    # numpy and framework scalars (np.float32, 0-d tensors) expose .item(); anything else is a bug.
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def format_line(event: str, fields: dict[str, Any], *, t: float | None = None) -> str:
    """One protocol line (no newline); ``mbctl`` is the first key so readers can tag-match it."""
    record = {"mbctl": PROTOCOL_VERSION, "event": event, "t": time.time() if t is None else t}
    record.update(fields)
    # NaN/Infinity are valid protocol values (a diverged loss must be reported, not crash).
    return json.dumps(record, allow_nan=True, default=_to_builtin)


class Emitter:
    """Serialises protocol lines onto one stream; remembers which events went out."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def emit(self, event: str, **fields: Any) -> None:
        line = format_line(event, fields)
        # The stream is looked up per call so redirections of sys.stdout (tests, tee) are honoured.
        stream = self._stream if self._stream is not None else sys.stdout
        with self._lock:
            stream.write(line + "\n")
            stream.flush()
            self.counts[event] = self.counts.get(event, 0) + 1


_default = Emitter()


def emit(event: str, **fields: Any) -> None:
    """Print one protocol event to stdout, e.g. ``emit("rate", value=12.5, units="items/s", task="train")``."""
    _default.emit(event, **fields)


def default_emitter() -> Emitter:
    return _default
