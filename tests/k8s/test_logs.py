"""Following a pod's log (pure parts): timestamps, the resume cursor, unterminated last lines."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orchestrator.backends.kubernetes.backend import LogCursor, _lines, parse_timestamp

pytestmark = pytest.mark.k8s

T0 = 1_735_689_600 * 1_000_000_000  # 2025-01-01T00:00:00Z


def test_parse_timestamp_reads_rfc3339_nano_as_the_kubelet_writes_it() -> None:
    assert parse_timestamp("2025-01-01T00:00:00Z") == T0
    assert parse_timestamp("2025-01-01T00:00:00.5Z") == T0 + 500_000_000
    assert parse_timestamp("2025-01-01T00:00:00.123456789Z") == T0 + 123_456_789
    assert parse_timestamp("2025-01-01T01:00:00.000000001+01:00") == T0 + 1
    for junk in ("", "hello", "2025-13-01T00:00:00Z", "2025-01-01 00:00:00Z"):
        assert parse_timestamp(junk) is None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_cursor_skips_what_it_gave_out_even_among_lines_stamped_alike() -> None:
    cursor = LogCursor()
    first = [
        "2025-01-01T00:00:00.1Z a",
        "2025-01-01T00:00:00.2Z b",
        "2025-01-01T00:00:00.2Z c",
    ]
    assert list(cursor.feed(first)) == ["a", "b", "c"]
    cursor.resume()
    again = [*first, "2025-01-01T00:00:00.2Z d", "2025-01-01T00:00:00.3Z e"]
    assert list(cursor.feed(again)) == ["d", "e"]
    cursor.resume()
    assert list(cursor.feed(["2025-01-01T00:00:00.3Z e", "2025-01-01T00:00:00.3Z f"])) == ["f"]


def test_cursor_asks_for_the_time_since_the_last_line_arrived_plus_a_margin() -> None:
    clock = Clock()
    cursor = LogCursor(clock)
    assert cursor.since_seconds() is None
    cursor.accept("2030-01-01T00:00:00Z far in the node's future")
    clock.now += 3.2
    assert cursor.since_seconds() == 4 + 5


def test_cursor_keeps_the_untimestamped_pieces_of_a_long_line_with_their_head() -> None:
    cursor = LogCursor()
    assert list(cursor.feed(["2025-01-01T00:00:01Z head", "piece 2", "piece 3"])) == [
        "head",
        "piece 2",
        "piece 3",
    ]
    cursor.resume()
    repeated = ["2025-01-01T00:00:01Z head", "piece 2", "2025-01-01T00:00:02Z next", "more"]
    assert list(cursor.feed(repeated)) == ["next", "more"]
    assert list(LogCursor().feed(["no timestamps at all"])) == ["no timestamps at all"]


class Response:
    def __init__(self, *chunks: bytes, error: Exception | None = None) -> None:
        self.chunks = chunks
        self.error = error

    def stream(self, amt: int | None = None, decode_content: bool = False) -> Iterator[bytes]:
        yield from self.chunks
        if self.error is not None:
            raise self.error


def test_an_unterminated_last_line_waits_for_the_next_read_unless_the_log_is_complete() -> None:
    response = Response(b"one\ntw", b"o\nthr")
    assert list(_lines(response, keep_tail=False)) == ["one", "two"]
    assert list(_lines(response, keep_tail=True)) == ["one", "two", "thr"]


def test_a_broken_stream_raises_after_its_complete_lines() -> None:
    seen: list[str] = []
    with pytest.raises(ConnectionError):
        for line in _lines(Response(b"one\nhalf a li", error=ConnectionError()), keep_tail=False):
            seen.append(line)
    assert seen == ["one"]
