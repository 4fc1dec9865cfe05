"""Bounded reading of result archives (zips of run folders) and of JSON-lines files.

A small archive can unpack to gigabytes (a zip bomb) and one line can be a gigabyte long;
everything here is read as a stream under limits.py's caps, checked on the archive's own
directory before a byte is decompressed: member count and size, compression ratio, line
length. ``report`` opens zips through ``BoundedZip``; ``results.read_events`` reads lines
through ``bounded_lines``.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final

from orchestrator import limits
from orchestrator.errors import ResultsError

#: Members of one archive: a run of a few hundred jobs holds a few hundred files.
MAX_MEMBERS: Final = 100_000
#: Bytes every member may unpack to beyond ratio × its packed size (tiny files compress badly).
_RATIO_SLACK: Final = 1 << 20
_CHUNK: Final = 1 << 16


def bounded_lines(
    stream: IO[str], *, max_line: int = limits.MAX_LINE_CHARS, skipped: list[int] | None = None
) -> Iterator[str]:
    """The lines of a text stream; a line longer than ``max_line`` characters is skipped
    without ever being held whole (its number appended to ``skipped``)."""
    number = 0
    while True:
        line = stream.readline(max_line + 1)
        if not line:
            return
        number += 1
        if len(line) <= max_line or line.endswith("\n"):
            yield line
            continue
        while line and not line.endswith("\n"):  # the rest of the runaway line, in pieces
            line = stream.readline(_CHUNK)
        if skipped is not None:
            skipped.append(number)


def iter_objects(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The JSON objects among ``lines``; garbage and a partial last line are skipped."""
    for line in lines:
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(obj, dict):
            yield obj


class BoundedZip:
    """A zip archive whose members are checked against the caps before they are read.

    ``names`` lists the regular files; ``read`` returns one member whole (for small JSON
    such as meta.json, capped at limits.MAX_METADATA_BYTES); ``jsonl`` streams one member's
    JSON objects. Every refusal is a ResultsError naming the archive, the member and the limit.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (OSError, zipfile.BadZipFile, EOFError) as exc:
            raise ResultsError(f"cannot read {self.path}: {exc}") from None
        infos = self._zip.infolist()
        if len(infos) > MAX_MEMBERS:
            self._zip.close()
            raise ResultsError(
                f"{self.path}: {len(infos)} members, more than {MAX_MEMBERS} (archives.MAX_MEMBERS)"
            )
        self._infos = {i.filename: i for i in infos if not i.is_dir()}

    def __enter__(self) -> BoundedZip:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()

    def names(self) -> list[str]:
        return sorted(self._infos)

    def _check(self, name: str, cap: int, cap_name: str) -> zipfile.ZipInfo:
        info = self._infos.get(name)
        if info is None:
            raise ResultsError(f"{self.path}: no member {name!r}")
        if info.file_size > cap:
            raise ResultsError(
                f"{self.path}: {name} unpacks to {info.file_size} bytes, more than {cap} ({cap_name})"
            )
        ratio_cap = info.compress_size * limits.MAX_COMPRESSION_RATIO + _RATIO_SLACK
        if info.file_size > ratio_cap:
            raise ResultsError(
                f"{self.path}: {name} unpacks to {info.file_size} bytes from {info.compress_size}, "
                f"a ratio above {limits.MAX_COMPRESSION_RATIO} (limits.MAX_COMPRESSION_RATIO): "
                "refusing a zip bomb"
            )
        # zipfile never yields more than the declared file_size, so the checks above hold
        return info

    def read(self, name: str, *, max_bytes: int = limits.MAX_METADATA_BYTES) -> bytes:
        info = self._check(name, max_bytes, "limits.MAX_METADATA_BYTES")
        with self._zip.open(info) as raw:
            return raw.read()

    def __contains__(self, name: object) -> bool:
        return name in self._infos

    def lines(self, name: str) -> Iterator[str]:
        """The text lines of one member, streamed; runaway lines are skipped."""
        info = self._check(name, limits.MAX_MEMBER_BYTES, "limits.MAX_MEMBER_BYTES")
        with self._zip.open(info) as raw:
            yield from bounded_lines(io.TextIOWrapper(raw, encoding="utf-8", errors="replace"))

    def jsonl(self, name: str) -> Iterator[dict[str, Any]]:
        """The JSON objects of one member, streamed; runaway lines are skipped."""
        yield from iter_objects(self.lines(name))

    def tail(self, name: str, size: int) -> bytes:
        """The last ``size`` bytes of one member (the end of a log)."""
        info = self._check(name, limits.MAX_MEMBER_BYTES, "limits.MAX_MEMBER_BYTES")
        with self._zip.open(info) as raw:
            raw.seek(max(0, info.file_size - size))
            return raw.read()
