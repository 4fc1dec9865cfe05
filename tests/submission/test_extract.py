"""Unreadable and hostile archives: one-line errors, and nothing written outside the chosen folder."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from orchestrator import limits, submission
from orchestrator.errors import ResultsError

MANIFEST = {
    "format": "mbctl-submission",
    "version": 1,
    "mbctl": "0.1.0",
    "run_id": "r",
    "suite": "suite/s.yaml",
    "files": {},
}


def member(name: str, data: bytes = b"x", **attrs: object) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


def tar_gz(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def manifest(**changes: object) -> tuple[tarfile.TarInfo, bytes]:
    return member("r/MANIFEST.json", json.dumps({**MANIFEST, **changes}).encode())


@pytest.fixture
def box(tmp_path: Path) -> Path:
    """An empty folder; the bundle is extracted into box/dest and nothing else may appear."""
    path = tmp_path / "box"
    path.mkdir()
    return path


def refused(bundle: Path, box: Path, match: str) -> None:
    with pytest.raises(ResultsError, match=match) as caught:
        submission.extract(bundle, box / "dest")
    assert "\n" not in str(caught.value)
    assert list(box.iterdir()) == [], "extraction left files behind"


def test_a_minimal_bundle_extracts(tmp_path: Path, box: Path) -> None:
    bundle = tar_gz(tmp_path / "ok.tar.gz", [manifest(), member("r/run/meta.json", b"{}")])
    extracted = submission.extract(bundle, box / "dest")
    assert extracted.root == box / "dest" / "r"
    assert extracted.files == ("MANIFEST.json", "run/meta.json")
    assert extracted.signature is None


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"just some text, not an archive\n", "Not a gzipped file"),
        (b"", "empty file|Not a gzipped file"),
    ],
)
def test_not_an_archive(tmp_path: Path, box: Path, content: bytes, why: str) -> None:
    path = tmp_path / "notes.tar.gz"
    path.write_bytes(content)
    refused(path, box, f"not a readable submission bundle \\(({why})")


def test_a_zip_or_an_uncompressed_tar_is_not_a_bundle(tmp_path: Path, box: Path) -> None:
    with zipfile.ZipFile(tmp_path / "b.zip", "w") as zf:
        zf.writestr("r/MANIFEST.json", "{}")
    refused(tmp_path / "b.zip", box, "Not a gzipped file")
    with tarfile.open(tmp_path / "b.tar", "w") as tar:
        info, data = manifest()
        tar.addfile(info, io.BytesIO(data))
    refused(tmp_path / "b.tar", box, "Not a gzipped file")


def test_truncated_and_corrupt_gzip(bundle: Path, tmp_path: Path, box: Path) -> None:
    raw = bundle.read_bytes()
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(raw[: len(raw) // 2])
    refused(truncated, box, "not a readable submission bundle")

    # a wrong CRC in the gzip trailer: every byte decompresses, only the check fails
    bad_crc = bytearray(raw)
    bad_crc[-8] ^= 0xFF
    (tmp_path / "crc.tar.gz").write_bytes(bytes(bad_crc))
    refused(tmp_path / "crc.tar.gz", box, "not a readable submission bundle")

    # garbage in the middle of the stream: the whole stream is checked before extraction
    corrupt = bytearray(raw)
    for i in range(len(raw) // 3, len(raw) // 3 + 64):
        corrupt[i] ^= 0xFF
    (tmp_path / "corrupt.tar.gz").write_bytes(bytes(corrupt))
    refused(tmp_path / "corrupt.tar.gz", box, "not a readable submission bundle")


def test_missing_bundle_and_busy_destination(bundle: Path, tmp_path: Path, box: Path) -> None:
    with pytest.raises(ResultsError, match="no such bundle"):
        submission.extract(tmp_path / "nope.tar.gz", box / "dest")
    (box / "dest").mkdir()
    (box / "dest" / "mine.txt").write_text("keep me")
    with pytest.raises(ResultsError, match="is not an empty folder"):
        submission.extract(bundle, box / "dest")
    assert (box / "dest" / "mine.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    ("evil", "why"),
    [
        (member("r/../../evil"), "not a canonical path"),
        (member("../evil"), "not a canonical path"),
        (member("/tmp/mbctl-evil"), "not a relative POSIX path"),
        (member("r/./x"), "not a canonical path"),
        (member("r\\..\\..\\evil"), "not a relative POSIX path"),
        (member("r/link", b"", type=tarfile.SYMTYPE, linkname="../../.."), "symbolic link"),
        (member("r/link", b"", type=tarfile.SYMTYPE, linkname="/etc"), "symbolic link"),
        (member("r/hard", b"", type=tarfile.LNKTYPE, linkname="/etc/passwd"), "hard link"),
        (member("r/fifo", b"", type=tarfile.FIFOTYPE), "special file"),
        (member("r/dev", b"", type=tarfile.CHRTYPE, devmajor=1, devminor=3), "special file"),
        (member("other/x"), "several folders"),
        (member("loose"), "not inside the bundle's folder"),
        (member("r/MANIFEST.json"), "appears twice"),
    ],
)
def test_hostile_members_are_refused_before_anything_is_written(
    tmp_path: Path, box: Path, evil: tuple[tarfile.TarInfo, bytes], why: str
) -> None:
    bundle = tar_gz(tmp_path / "evil.tar.gz", [manifest(), evil])
    refused(bundle, box, why)
    assert not Path("/tmp/mbctl-evil").exists()


def test_a_link_then_a_file_through_it_is_refused(tmp_path: Path, box: Path) -> None:
    bundle = tar_gz(
        tmp_path / "evil.tar.gz",
        [
            manifest(),
            member("r/run", b"", type=tarfile.SYMTYPE, linkname=str(box)),
            member("r/run/evil", b"pwned"),
        ],
    )
    refused(bundle, box, "symbolic link")


def test_manifest_problems(tmp_path: Path, box: Path) -> None:
    bundle = tar_gz(tmp_path / "a.tar.gz", [member("r/run/meta.json", b"{}")])
    refused(bundle, box, "no MANIFEST.json: not an mbctl submission bundle")
    bundle = tar_gz(tmp_path / "b.tar.gz", [member("r/MANIFEST.json", b"not json")])
    refused(bundle, box, "MANIFEST.json is not a valid manifest")
    bundle = tar_gz(tmp_path / "c.tar.gz", [manifest(suite="../../../etc/passwd")])
    refused(bundle, box, "suite: .*not a canonical path")
    bundle = tar_gz(
        tmp_path / "d.tar.gz", [manifest(files={"/etc/passwd": {"sha256": "0" * 64, "size": 1}})]
    )
    refused(bundle, box, "not a relative POSIX path")


def test_size_cap(tmp_path: Path, box: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(submission.extraction, "MAX_BYTES", 100)
    bundle = tar_gz(tmp_path / "big.tar.gz", [manifest(), member("r/big", b"0" * 200)])
    refused(bundle, box, "more than a bundle ever holds")


def test_extracting_into_an_existing_empty_folder_leaves_it_empty_on_failure(
    tmp_path: Path,
) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    bundle = tar_gz(tmp_path / "a.tar.gz", [member("r/run/meta.json", b"{}")])
    with pytest.raises(ResultsError):
        submission.extract(bundle, dest)
    assert dest.is_dir() and list(dest.iterdir()) == []


def test_each_member_is_capped_before_it_is_written(
    tmp_path: Path, box: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "MAX_METADATA_BYTES", 120)
    monkeypatch.setattr(limits, "MAX_MEMBER_BYTES", 128)
    meta = member("r/run/meta.json", b"{" + b" " * 200 + b"}")
    refused(
        tar_gz(tmp_path / "meta.tar.gz", [manifest(), meta]),
        box,
        r"r/run/meta.json' holds 202 bytes, more than 120 \(limits.MAX_METADATA_BYTES\)",
    )
    suite = member("r/suite/s.yaml", b"#" * 200)
    refused(tar_gz(tmp_path / "suite.tar.gz", [manifest(), suite]), box, "MAX_METADATA_BYTES")
    events = member("r/run/a.0.jsonl", b"{}\n" * 50)  # 150 bytes: capped by the other limit
    refused(
        tar_gz(tmp_path / "events.tar.gz", [manifest(), events]),
        box,
        r"150 bytes, more than 128 \(limits.MAX_MEMBER_BYTES\)",
    )


def test_gzip_bomb_is_refused_by_its_ratio(tmp_path: Path, box: Path) -> None:
    bomb = tar_gz(
        tmp_path / "bomb.tar.gz", [manifest(), member("r/run/a.0.jsonl", b"\n" * (40 << 20))]
    )
    assert bomb.stat().st_size < 200_000
    refused(bomb, box, r"limits.MAX_COMPRESSION_RATIO .*refusing a bomb")
