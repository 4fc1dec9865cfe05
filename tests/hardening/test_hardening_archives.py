"""Archives as streams: zip bombs, runaway lines and oversized members refused under their caps."""

from __future__ import annotations

import io
import json
import resource
import zipfile
from pathlib import Path

import pytest

from orchestrator import limits
from orchestrator.archives import BoundedZip, bounded_lines
from orchestrator.errors import ResultsError
from orchestrator.results import read_events


def test_zip_bomb_is_refused_from_its_directory_without_unpacking(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("run/fp32.0.jsonl", "w", force_zip64=True) as member:
            line = b'{"event": "rate", "value": 1.0}' + b" " * 4000 + b"\n"
            for _ in range(20_000):  # 80 MB of one repeated line: a small archive
                member.write(line)
        zf.writestr("run/meta.json", "{}")
    assert bomb.stat().st_size < 2**20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with BoundedZip(bomb) as archive:
        assert archive.names() == ["run/fp32.0.jsonl", "run/meta.json"]
        assert archive.read("run/meta.json") == b"{}"
        with pytest.raises(ResultsError, match=r"more than 67108864 \(limits.MAX_MEMBER_BYTES\)"):
            list(archive.jsonl("run/fp32.0.jsonl"))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB


def test_compression_ratio_cap(tmp_path: Path) -> None:
    path = tmp_path / "ratio.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("zeros.jsonl", b"\n" * (8 * 2**20))  # 8 MB of newlines pack to ~8 kB
        zf.writestr("ok.jsonl", "".join(json.dumps({"i": i}) + "\n" for i in range(1000)))
    with BoundedZip(path) as archive:
        with pytest.raises(ResultsError, match=r"limits.MAX_COMPRESSION_RATIO.*zip bomb"):
            list(archive.jsonl("zeros.jsonl"))
        assert [e["i"] for e in archive.jsonl("ok.jsonl")] == list(range(1000))
        with pytest.raises(ResultsError, match=r"no member 'missing'"):
            archive.read("missing")


def test_oversized_metadata_member(tmp_path: Path) -> None:
    path = tmp_path / "meta.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("meta.json", b"0" * 2048)
    with BoundedZip(path) as archive, pytest.raises(ResultsError, match="more than 1024"):
        archive.read("meta.json", max_bytes=1024)


def test_runaway_lines_are_skipped_whole() -> None:
    text = "short\n" + "x" * 50 + "\nafter\n" + "y" * 11 + "\n" + "z" * 10 + "\nend"
    skipped: list[int] = []
    lines = list(bounded_lines(io.StringIO(text), max_line=10, skipped=skipped))
    assert lines == ["short\n", "after\n", "z" * 10 + "\n", "end"]
    assert skipped == [2, 4]


def test_results_events_skip_a_gigantic_line(tmp_path: Path) -> None:
    path = tmp_path / "job.jsonl"
    with open(path, "w") as f:
        f.write('{"event": "config"}\n')
        f.write('{"event": "rate", "pad": "' + "x" * (limits.MAX_LINE_CHARS + 10) + '"}\n')
        f.write('{"event": "exit"}\n')
    assert [e["event"] for e in read_events(path)] == ["config", "exit"]


def test_not_a_zip_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "x.zip"
    path.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ResultsError, match="cannot read"):
        BoundedZip(path)
