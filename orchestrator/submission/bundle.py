"""The bundle format: manifest, reproducible packing of a run, SSH signatures.

A bundle is one gzip tar holding a single folder (named after the run)::

    <run-id>/MANIFEST.json        format, mbctl version, run id, SHA-256 and size of every other file
    <run-id>/MANIFEST.json.sig    optional SSH signature of the manifest (ssh-keygen -Y sign)
    <run-id>/run/                 meta.json, summary.json, <job>.jsonl, <job>.log: the run as recorded
    <run-id>/suite/<file>.yaml    the suite file the run used, with the files it includes
    <run-id>/images.lock.yaml     the images lock the vendor ran with
    <run-id>/images.json          the image each job really ran, from the jobs' ``exit`` events

The same run always packs to the same bytes (sorted members, zero mtimes and owners, no gzip
name or time), so a bundle's SHA-256 can be published and re-checked. Signing the manifest
signs everything, since it pins every other file's hash.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator import __version__, config, report, safeyaml
from orchestrator.errors import ConfigError, OrchestratorError, ResultsError
from orchestrator.results import META_FILE, SUMMARY_FILE, RunDir, read_events
from orchestrator.telemetry import TELEMETRY_FILE

FORMAT: Final = "mbctl-submission"
#: ssh-keygen signature namespace: a signature made for anything else never verifies here.
NAMESPACE: Final = "mbctl-submission"
MANIFEST: Final = "MANIFEST.json"
SIGNATURE: Final = "MANIFEST.json.sig"
RUN: Final = "run"
SUITE: Final = "suite"
LOCK: Final = "images.lock.yaml"
IMAGES: Final = "images.json"

_ROOT_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=-]*")
_RUN_FILE_SUFFIXES: Final = (".jsonl", ".log")


class VerificationFailed(OrchestratorError):
    """A bundle was read but at least one of its checks failed."""

    exit_code = 1


# --- the manifest --------------------------------------------------------------------------


def _member_problem(name: str) -> str | None:
    """Why ``name`` cannot be a path inside a bundle, or None: relative, canonical, no ``..``."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or "\\" in name:
        return "is not a relative POSIX path"
    if ".." in path.parts or str(path) != name.rstrip("/"):
        return "is not a canonical path inside the bundle"
    return None


def _safe_member(name: str) -> str:
    problem = _member_problem(name)
    if problem:
        raise ValueError(f"{name!r} {problem}")
    return name


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileEntry(_Model):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class Manifest(_Model):
    """``MANIFEST.json``: what the bundle is and the hash of each of its other files."""

    format: Literal["mbctl-submission"] = FORMAT
    version: Literal[1] = 1
    mbctl: str = Field(description="version of mbctl that packed the bundle")
    run_id: str
    suite: str = Field(description="bundle path of the suite file the run used")
    files: dict[str, FileEntry]

    @field_validator("suite")
    @classmethod
    def _suite_path(cls, value: str) -> str:
        return _safe_member(value)

    @field_validator("files")
    @classmethod
    def _file_paths(cls, value: dict[str, FileEntry]) -> dict[str, FileEntry]:
        for name in value:
            _safe_member(name)
        return value

    def dump(self) -> bytes:
        return (json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n").encode()


def file_entry(path: Path) -> FileEntry:
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return FileEntry(sha256=digest, size=path.stat().st_size)


def _files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def hash_files(root: Path) -> dict[str, FileEntry]:
    """The manifest's ``files``: every file under ``root`` but the manifest and its signature."""
    return {
        name: file_entry(root / name)
        for name in _files_under(root)
        if name not in (MANIFEST, SIGNATURE)
    }


# --- packing -------------------------------------------------------------------------------


def write_archive(root: Path, output: Path) -> None:
    """Pack the files under ``root`` into ``output`` (a gzip tar whose one folder is
    ``root.name``), byte for byte reproducibly; the file appears atomically."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp")
    try:
        with (
            os.fdopen(fd, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for name in _files_under(root):
                path = root / name
                info = tarfile.TarInfo(f"{root.name}/{name}")
                info.size = path.stat().st_size
                info.mode = 0o644
                info.mtime = 0
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with open(path, "rb") as f:
                    tar.addfile(info, f)
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _suite_files(suite_file: Path) -> dict[str, Path]:
    """The suite file and every file it includes, keyed by path relative to the suite's folder."""
    top = suite_file.resolve()
    folder = top.parent
    found: dict[str, Path] = {}
    pending = [top]
    while pending:
        path = pending.pop()
        if not path.is_relative_to(folder):
            raise ResultsError(
                f"suite include {path} lies outside {folder}: a bundle carries the suite's folder only"
            )
        name = path.relative_to(folder).as_posix()
        if name in found:
            continue
        found[name] = path
        text = safeyaml.read_text(path)
        try:
            safeyaml.check(text, path)
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"cannot read suite file {path}: {exc}") from None
        includes = data.get("include") if isinstance(data, dict) else None
        if isinstance(includes, str):
            includes = [includes]
        if isinstance(includes, list):
            pending += [(path.parent / str(inc)).resolve() for inc in includes]
    return found


def _suite_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    suite = meta.get("suite")
    if not isinstance(suite, dict):
        raise ResultsError("meta.json has no suite section: not a run of `mbctl run`")
    return suite


def _words(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def load_run_suite(path: Path, meta: Mapping[str, Any]) -> tuple[config.Suite, config.Suite]:
    """The suite at ``path`` resolved as the run resolved it: (every benchmark, the selected ones)."""
    info = _suite_meta(meta)
    profile = info.get("profile")
    full = config.load_suite(
        path,
        overrides=_words(info.get("overrides")),
        profile=profile if isinstance(profile, str) else None,
    )
    selected = config.select_benchmarks(
        full, select=_words(info.get("select")), exclude=_words(info.get("exclude"))
    )
    return full, selected


def _job_records(run: RunDir) -> dict[str, tuple[dict[str, Any] | None, dict[str, Any] | None]]:
    """Per job: the planned job (``config`` event) and the image it ran (``exit`` event)."""
    records: dict[str, tuple[dict[str, Any] | None, dict[str, Any] | None]] = {}
    for job_id in run.job_ids():
        job = image = None
        for ev in read_events(run.events_path(job_id)):
            if ev.get("event") == "config" and isinstance(ev.get("job"), dict):
                job = ev["job"]
            elif ev.get("event") == "exit":
                image = ev.get("image") if isinstance(ev.get("image"), dict) else None
        records[job_id] = (job, image)
    return records


def _root_name(run_id: str) -> str:
    return run_id if _ROOT_RE.fullmatch(run_id) else "submission"


@dataclass(frozen=True)
class Submitted:
    """What ``create`` wrote."""

    path: Path
    manifest: Manifest
    sha256: str
    signed: bool


def _stage_run(rundir: RunDir, target: Path) -> None:
    """Copy what mbctl recorded (a benchmark may leave other files in its run folder)."""
    recorded = [
        path
        for path in sorted(rundir.path.iterdir())
        if path.is_file()
        and (path.name in (META_FILE, SUMMARY_FILE) or path.suffix in _RUN_FILE_SUFFIXES)
    ]
    if (rundir.path / TELEMETRY_FILE).is_file():
        recorded.append(rundir.path / TELEMETRY_FILE)
    for path in recorded:
        copy = target / path.relative_to(rundir.path)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, copy)
    if not (target / SUMMARY_FILE).exists():
        RunDir(target).write_summary(report.to_json(report.report([rundir.path])))


def _stage_suite(suite_file: Path, stage: Path, meta: Mapping[str, Any]) -> str:
    """Copy the suite file and its includes; the suite's member path. ResultsError unless it
    reproduces the run's settings."""
    for name, path in _suite_files(suite_file).items():
        copy = stage / SUITE / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, copy)
    member = f"{SUITE}/{suite_file.resolve().name}"
    _, selected = load_run_suite(stage / member, meta)
    recorded = _suite_meta(meta).get("config_hash")
    if selected.config_hash() != recorded:
        raise ResultsError(
            f"{suite_file} does not give the settings run {meta.get('run_id')} ran with "
            f"(config hash {selected.config_hash()}, the run recorded {recorded})",
            hint="pass the suite file the run used with --suite",
        )
    return member


def create(
    run: Path, output: Path, *, lock: Path, suite: Path | None = None, key: Path | None = None
) -> Submitted:
    """Pack run folder ``run`` with its suite file (default: the one meta.json names) and
    images ``lock`` into ``output``; ``key`` signs the manifest with ``ssh-keygen -Y sign``."""
    from orchestrator import images

    rundir = RunDir.open(run)
    meta = rundir.meta()
    images.read_lock(lock)  # refuses a lock whose refs are tags, before anything is packed
    suite_file = Path(suite if suite is not None else str(_suite_meta(meta).get("file")))
    if not suite_file.is_file():
        where = "" if suite is not None else f" (named in {rundir.path / META_FILE})"
        raise ResultsError(
            f"suite file {suite_file}{where} does not exist",
            hint="pass the suite file the run used with --suite",
        )
    run_id = str(meta.get("run_id", rundir.run_id))
    with tempfile.TemporaryDirectory(prefix="mbctl-submit-") as tmp:
        stage = Path(tmp) / _root_name(run_id)
        _stage_run(rundir, stage / RUN)
        suite_member = _stage_suite(suite_file, stage, meta)
        shutil.copyfile(lock, stage / LOCK)
        ran = {job: image for job, (_, image) in _job_records(rundir).items()}
        (stage / IMAGES).write_text(json.dumps(ran, indent=2, sort_keys=True) + "\n")
        manifest = Manifest(
            mbctl=__version__, run_id=run_id, suite=suite_member, files=hash_files(stage)
        )
        (stage / MANIFEST).write_bytes(manifest.dump())
        if key is not None:
            sign(stage / MANIFEST, key)
        try:
            write_archive(stage, output)
        except OSError as exc:
            raise ResultsError(f"cannot write {output}: {exc.strerror or exc}") from exc
    return Submitted(Path(output), manifest, file_entry(Path(output)).sha256, key is not None)


# --- signatures ----------------------------------------------------------------------------


def _ssh_keygen() -> str:
    exe = shutil.which("ssh-keygen")
    if exe is None:
        raise ConfigError(
            "ssh-keygen (OpenSSH ≥ 8.2) is needed to sign bundles or check signatures"
        )
    return exe


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def sign(path: Path, key: Path) -> Path:
    """Write ``<path>.sig``, an SSH signature of ``path`` in namespace ``mbctl-submission``."""
    key = Path(key)
    if not key.is_file():
        raise ConfigError(f"--sign {key}: no such key file")
    # no timeout: ssh-keygen may be asking for the key's passphrase on the terminal
    proc = subprocess.run(
        [_ssh_keygen(), "-q", "-Y", "sign", "-n", NAMESPACE, "-f", str(key), str(path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise ConfigError(f"signing with {key} failed: {_last_line(proc.stderr + proc.stdout)}")
    return path.with_name(path.name + ".sig")
