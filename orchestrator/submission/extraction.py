"""Safe extraction of a bundle: every member checked and size-capped before anything is written."""

from __future__ import annotations

import gzip
import re
import shutil
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

from pydantic import ValidationError

from orchestrator import limits
from orchestrator.errors import ResultsError
from orchestrator.results import META_FILE, SUMMARY_FILE
from orchestrator.submission.bundle import (
    IMAGES,
    LOCK,
    MANIFEST,
    RUN,
    SIGNATURE,
    SUITE,
    Manifest,
    _member_problem,
)

#: Guards against archive bombs: far above any real run, far below a full disk.
MAX_MEMBERS: Final = 100_000
MAX_BYTES: Final = 16 * 2**30
#: Members parsed whole as JSON or YAML; each is refused past limits.MAX_METADATA_BYTES.
_METADATA: Final = (MANIFEST, IMAGES, LOCK, f"{RUN}/{META_FILE}", f"{RUN}/{SUMMARY_FILE}")


@dataclass(frozen=True)
class Bundle:
    """An extracted bundle: its folder, manifest and the regular files its archive held."""

    source: Path
    root: Path
    manifest: Manifest
    files: tuple[str, ...]

    @property
    def run_dir(self) -> Path:
        return self.root / RUN

    @property
    def suite_file(self) -> Path:
        return self.root / self.manifest.suite

    @property
    def lock_file(self) -> Path:
        return self.root / LOCK

    @property
    def signature(self) -> Path | None:
        path = self.root / SIGNATURE
        return path if SIGNATURE in self.files else None


def default_workdir(bundle: Path) -> Path:
    """Where ``rerun`` extracts ``bundle`` unless told: beside it, named without .tar.gz."""
    name = re.sub(r"(\.tar\.gz|\.tgz)$", "", bundle.name)
    return bundle.with_name(name if name != bundle.name else f"{name}.extracted")


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"symbolic link to {member.linkname!r}"
    if member.islnk():
        return f"hard link to {member.linkname!r}"
    return "device, FIFO or other special file"


def _check_members(bundle: Path, members: list[tarfile.TarInfo]) -> str:
    """The bundle's one top folder; ResultsError on anything a bundle never holds."""
    if not members:
        raise ResultsError(f"{bundle}: the archive is empty")
    if len(members) > MAX_MEMBERS:
        raise ResultsError(f"{bundle}: {len(members)} members, more than a bundle ever holds")
    roots: set[str] = set()
    seen: set[str] = set()
    total = 0
    for member in members:
        name = member.name
        problem = _member_problem(name)
        if problem:
            raise ResultsError(f"{bundle}: member {name!r} {problem}: refusing to extract")
        if not (member.isfile() or member.isdir()):
            raise ResultsError(
                f"{bundle}: member {name!r} is a {_kind(member)}: a bundle holds regular files only"
            )
        parts = PurePosixPath(name).parts
        roots.add(parts[0])
        if member.isfile():
            if len(parts) < 2:
                raise ResultsError(f"{bundle}: member {name!r} is not inside the bundle's folder")
            if name in seen:
                raise ResultsError(f"{bundle}: member {name!r} appears twice")
            seen.add(name)
            total += member.size
            inner = "/".join(parts[1:])
            # every file is read (and most parsed) later: its size is capped before it is written
            cap = (
                limits.MAX_METADATA_BYTES
                if inner in _METADATA or parts[1] == SUITE
                else limits.MAX_MEMBER_BYTES
            )
            if member.size > cap:
                raise ResultsError(
                    f"{bundle}: member {name!r} holds {member.size} bytes, more than {cap} "
                    f"({'limits.MAX_METADATA_BYTES' if cap == limits.MAX_METADATA_BYTES else 'limits.MAX_MEMBER_BYTES'})"
                )
    if len(roots) != 1:
        raise ResultsError(f"{bundle}: members lie in several folders ({', '.join(sorted(roots))})")
    if total > MAX_BYTES:
        raise ResultsError(f"{bundle}: {total} bytes uncompressed, more than a bundle ever holds")
    return roots.pop()


def _check_stream(bundle: Path) -> None:
    """Read the whole gzip stream once, refusing a bomb by its size or compression ratio
    before tarfile parses anything."""
    packed = bundle.stat().st_size
    budget = packed * limits.MAX_COMPRESSION_RATIO + 2**20
    total = 0
    with gzip.open(bundle, "rb") as stream:
        while chunk := stream.read(1 << 20):
            total += len(chunk)
            if total > MAX_BYTES:
                raise ResultsError(
                    f"{bundle}: more than {MAX_BYTES} bytes uncompressed, more than a bundle ever holds"
                )
            if total > budget:
                raise ResultsError(
                    f"{bundle}: unpacks to more than {budget} bytes from {packed} "
                    f"(limits.MAX_COMPRESSION_RATIO {limits.MAX_COMPRESSION_RATIO}): refusing a bomb"
                )


def _clear(dest: Path, *, created: bool) -> None:
    if created:
        shutil.rmtree(dest, ignore_errors=True)
        return
    for child in dest.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def extract(bundle: Path, dest: Path) -> Bundle:
    """Extract ``bundle`` into ``dest`` (new or empty) and read its manifest.

    Every member is checked before anything is written (regular files in one folder, canonical
    relative names, no links or devices, no duplicates, a size cap), then tarfile's ``data``
    filter extracts them. Anything unreadable or unsafe is a one-line ResultsError, and then
    ``dest`` is left as it was found.
    """
    bundle, dest = Path(bundle), Path(dest)
    if not bundle.is_file():
        raise ResultsError(f"no such bundle: {bundle}")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ResultsError(f"{dest} exists and is not an empty folder: extract into a new one")
    created = not dest.exists()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResultsError(f"cannot create {dest}: {exc.strerror or exc}") from exc
    try:
        try:
            # tarfile stops at the end-of-archive blocks and never checks gzip's CRC: read the
            # whole stream first so a corrupted bundle is refused before anything is written
            _check_stream(bundle)
            with tarfile.open(bundle, "r:gz") as tar:
                members = tar.getmembers()  # reads to the end: truncation shows here, not midway
                top = _check_members(bundle, members)
                tar.extractall(dest, members=members, filter="data")
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise ResultsError(
                f"{bundle}: not a readable submission bundle ({exc or type(exc).__name__})"
            ) from None
        root = dest / top
        manifest = _read_manifest(bundle, root / MANIFEST)
        files = sorted(m.name[len(top) + 1 :] for m in members if m.isfile())
    except BaseException:
        _clear(dest, created=created)
        raise
    return Bundle(bundle, root, manifest, tuple(files))


def _read_manifest(bundle: Path, path: Path) -> Manifest:
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise ResultsError(f"{bundle}: no {MANIFEST}: not an mbctl submission bundle") from None
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ResultsError(
            f"{bundle}: {MANIFEST} is not a valid manifest ({where}: {first['msg']})"
        ) from None
