"""Protocol lines: shape, NaN, scalar conversion, and no interleaving across threads."""

from __future__ import annotations

import io
import json
import math
import threading
import time
from typing import TYPE_CHECKING

import benchkit
import pytest
from benchkit.protocol import Emitter, format_line

if TYPE_CHECKING:
    from conftest import Captured


def test_line_is_tagged_with_the_protocol_version_first() -> None:
    line = format_line("rate", {"value": 2.5, "units": "items/s", "task": "train"}, t=12.0)
    assert line.startswith('{"mbctl": 1, "event": "rate", "t": 12.0')
    assert json.loads(line) == {
        "mbctl": 1,
        "event": "rate",
        "t": 12.0,
        "value": 2.5,
        "units": "items/s",
        "task": "train",
    }


def test_timestamp_is_wall_clock() -> None:
    before = time.time()
    record = json.loads(format_line("progress", {"step": 1, "total": 2}))
    assert before <= record["t"] <= time.time()


def test_nan_and_infinity_are_representable() -> None:
    record = json.loads(format_line("loss", {"value": math.nan, "task": "train"}))
    assert math.isnan(record["value"])
    assert json.loads(format_line("loss", {"value": math.inf}))["value"] == math.inf


class _Scalar:
    """Stands for numpy/torch scalars: JSON cannot encode them, .item() gives the Python value."""

    def item(self) -> float:
        return 0.25


def test_framework_scalars_are_converted_and_other_objects_refused() -> None:
    assert json.loads(format_line("loss", {"value": _Scalar()}))["value"] == 0.25
    with pytest.raises(TypeError, match="object is not JSON serialisable"):
        format_line("loss", {"value": object()})


def test_emitter_writes_one_flushed_line_per_event_and_counts(captured: Captured) -> None:
    captured.emitter.emit("end", status="done")
    assert captured.lines() == [captured.lines()[0]]
    assert captured.events()[0]["status"] == "done"
    assert captured.emitter.counts == {"end": 1}


def test_module_emit_goes_to_the_current_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    benchkit.emit("error", message="boom", type="RuntimeError")
    record = json.loads(capsys.readouterr().out)
    assert (record["event"], record["message"]) == ("error", "boom")


class _SlowStream(io.StringIO):
    """Writes in two halves with a thread switch between: unlocked writers would interleave."""

    def write(self, s: str) -> int:
        half = len(s) // 2
        super().write(s[:half])
        time.sleep(0)
        return half + super().write(s[half:])


def test_concurrent_emitters_never_interleave_lines() -> None:
    stream = _SlowStream()
    emitter = Emitter(stream)

    def burst(worker: int) -> None:
        for i in range(200):
            emitter.emit("progress", step=i, total=worker)

    threads = [threading.Thread(target=burst, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1600
    assert all(json.loads(line)["event"] == "progress" for line in lines)
    assert emitter.counts == {"progress": 1600}
