"""Vendor submissions: reproducible, optionally signed bundles of a run; safe extraction; verify; re-run.

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

import dataclasses
import gzip
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchestrator import __version__, config, report, sysinfo
from orchestrator.errors import ConfigError, OrchestratorError, ResultsError, UsageError
from orchestrator.results import META_FILE, SUMMARY_FILE, RunDir, read_events
from orchestrator.telemetry import TELEMETRY_FILE

if TYPE_CHECKING:
    from rich.table import Table

    from orchestrator.images import Lock
    from orchestrator.references import Judgement, Reference
    from orchestrator.runner import Outcome, Progress

FORMAT: Final = "mbctl-submission"
#: ssh-keygen signature namespace: a signature made for anything else never verifies here.
NAMESPACE: Final = "mbctl-submission"
MANIFEST: Final = "MANIFEST.json"
SIGNATURE: Final = "MANIFEST.json.sig"
RUN: Final = "run"
SUITE: Final = "suite"
LOCK: Final = "images.lock.yaml"
IMAGES: Final = "images.json"
#: Training rates each job needs when neither the suite nor the command says: the Milabench
#: report (§3.1) has every benchmark gather 30 to 60 measurements.
DEFAULT_MIN_MEASURES: Final = 30
#: ``rerun``'s default: on a dedicated accelerator node, runs of one image agree within a few %.
DEFAULT_TOLERANCE: Final = 0.10
#: A recomputed score is "equal" to the submitted one up to float rounding, nothing more.
SCORE_RTOL: Final = 1e-9
#: Guards against archive bombs: far above any real run, far below a full disk.
MAX_MEMBERS: Final = 100_000
MAX_BYTES: Final = 16 * 2**30

_ROOT_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=-]*")
_RUN_FILE_SUFFIXES: Final = (".jsonl", ".log")
_VERIFY_TIMEOUT: Final = 60


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
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
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


# --- extraction ----------------------------------------------------------------------------


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
    if len(roots) != 1:
        raise ResultsError(f"{bundle}: members lie in several folders ({', '.join(sorted(roots))})")
    if total > MAX_BYTES:
        raise ResultsError(f"{bundle}: {total} bytes uncompressed, more than a bundle ever holds")
    return roots.pop()


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
            with gzip.open(bundle, "rb") as stream:
                while stream.read(1 << 20):
                    pass
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


# --- verification --------------------------------------------------------------------------

Status = Literal["PASS", "FAIL", "SKIP"]


@dataclass(frozen=True)
class Check:
    """One row of ``mbctl verify``: SKIP = not applicable or not fully checkable, never a failure."""

    name: str
    status: Status
    reason: str


@dataclass
class Verification:
    """Every check of a bundle, and its report scored over the whole suite (missing = 0)."""

    bundle: str
    manifest: Manifest
    checks: list[Check]
    report: report.Report
    min_measures: int
    reference: Reference | None = None
    judgements: list[Judgement] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.status != "FAIL" for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == "FAIL"]


def _listing(items: list[str], limit: int = 6) -> str:
    shown = "; ".join(items[:limit])
    return shown + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def _check_manifest(bundle: Bundle) -> Check:
    listed = set(bundle.manifest.files)
    present = set(bundle.files) - {MANIFEST, SIGNATURE}
    problems = [f"{name}: not in the manifest" for name in sorted(present - listed)]
    problems += [
        f"{name}: in the manifest but not in the bundle" for name in sorted(listed - present)
    ]
    for name in sorted(listed & present):
        if file_entry(bundle.root / name) != bundle.manifest.files[name]:
            problems.append(f"{name}: SHA-256 does not match the manifest")
    for needed in (bundle.manifest.suite, LOCK, IMAGES, f"{RUN}/{META_FILE}"):
        if needed not in listed:
            problems.append(f"{needed}: missing")
    if problems:
        return Check("manifest", "FAIL", _listing(problems))
    return Check("manifest", "PASS", f"all {len(listed)} files match their SHA-256")


def _check_signature(bundle: Bundle, allowed_signers: Path | None, identity: str | None) -> Check:
    signature = bundle.signature
    if signature is None:
        if allowed_signers is None:
            return Check("signature", "SKIP", "not signed")
        return Check("signature", "FAIL", "not signed, and --allowed-signers asks for a signature")
    if allowed_signers is None or identity is None:
        args = ["-Y", "check-novalidate", "-n", NAMESPACE, "-s", str(signature)]
    else:
        args = ["-Y", "verify", "-f", str(allowed_signers), "-I", identity]
        args += ["-n", NAMESPACE, "-s", str(signature)]
    with open(bundle.root / MANIFEST, "rb") as manifest:
        proc = subprocess.run(
            [_ssh_keygen(), *args],
            stdin=manifest,
            capture_output=True,
            text=True,
            timeout=_VERIFY_TIMEOUT,
            check=False,
        )
    said = _last_line(proc.stdout + "\n" + proc.stderr)
    if proc.returncode != 0:
        return Check("signature", "FAIL", f"the manifest's signature does not verify: {said}")
    if allowed_signers is None:
        return Check(
            "signature",
            "SKIP",
            f"well-formed, signer not checked ({said}): pass --allowed-signers and --identity",
        )
    return Check("signature", "PASS", said)


def _check_suite(bundle: Bundle, meta: Mapping[str, Any]) -> tuple[config.Suite | None, Check]:
    try:
        full, selected = load_run_suite(bundle.suite_file, meta)
    except OrchestratorError as exc:
        first = str(exc).splitlines()[0]
        return None, Check("suite", "FAIL", f"{bundle.manifest.suite} does not load: {first}")
    recorded = _suite_meta(meta).get("config_hash")
    if selected.config_hash() != recorded:
        return full, Check(
            "suite",
            "FAIL",
            f"{bundle.manifest.suite} gives config hash {selected.config_hash()}, "
            f"the run recorded {recorded}",
        )
    return full, Check(
        "suite", "PASS", f"{bundle.manifest.suite} gives the run's settings ({recorded})"
    )


def _image_problem(
    job: dict[str, Any] | None, image: dict[str, Any] | None, lock: Lock
) -> str | None:
    if image is None:
        return "no image recorded (the local backend runs no image)"
    ref = image.get("ref")
    if not isinstance(ref, str) or "@sha256:" not in ref:
        return f"ran {ref!r}, a tag: a submission runs images by digest"
    digest = ref.partition("@")[2]
    recorded = image.get("digest")
    # the docker backend records the repo digest as REPOSITORY@sha256:…, others a bare digest
    if recorded is not None and str(recorded).rpartition("@")[2] != digest:
        return f"its recorded digest {recorded} is not the one of its ref {ref}"
    if job is None:
        return "no config event: its benchmark is unknown"
    definition, vendor = str(job.get("definition")), str(job.get("vendor"))
    try:
        entry = lock.entry(definition, vendor)
    except ConfigError:
        entry = None
    if entry is None:
        return f"the lock pins no {vendor} image of {definition}"
    if digest != entry.digest:
        return f"ran {digest}, not in the lock (it pins {entry.digest} for {definition}, {vendor})"
    image_id = image.get("id")
    if image_id is not None and image_id != entry.image_id:
        return f"image ID {image_id} differs from the lock's {entry.image_id}"
    return None


def _check_images(bundle: Bundle, rundir: RunDir, lock: Lock | None) -> Check:
    from orchestrator import images

    which = "the lock given" if lock is not None else "the bundled lock"
    if lock is None:
        try:
            lock = images.read_lock(bundle.lock_file)
        except ConfigError as exc:
            return Check(
                "images", "FAIL", f"the bundled lock is not valid: {str(exc).splitlines()[-1]}"
            )
    try:
        recorded = json.loads((bundle.root / IMAGES).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = None
    if not isinstance(recorded, dict):
        return Check("images", "FAIL", f"{IMAGES} is missing or not a JSON object")
    records = _job_records(rundir)
    problems = []
    for job_id, (job, image) in records.items():
        problem = _image_problem(job, image, lock)
        if problem:
            problems.append(f"{job_id}: {problem}")
        if recorded.get(job_id) != image:
            problems.append(f"{job_id}: {IMAGES} disagrees with its exit event")
    problems += [
        f"{job}: in {IMAGES} but has no events" for job in sorted(set(recorded) - set(records))
    ]
    if problems:
        return Check("images", "FAIL", _listing(problems))
    return Check(
        "images", "PASS", f"all {len(records)} jobs ran images pinned by digest in {which}"
    )


def _missing_reasons(meta: Mapping[str, Any], suite: config.Suite) -> dict[str, str]:
    """Why a benchmark of the suite has no job: skipped by the plan, or left out of the run."""
    plan = meta.get("plan")
    skipped = plan.get("skipped") if isinstance(plan, dict) else None
    reasons = {
        str(s["bench"]): f"skipped: {s.get('reason')}"
        for s in skipped or ()
        if isinstance(s, dict) and "bench" in s
    }
    table = _suite_meta(meta).get("benchmarks")
    ran = {b.get("name") for b in table or () if isinstance(b, dict)}
    for name in suite.names():
        if name not in ran:
            reasons.setdefault(name, "left out with --select/--exclude")
    return reasons


def _check_benchmarks(
    run: report.RunData, suite: config.Suite | None, meta: Mapping[str, Any]
) -> Check:
    if suite is None:
        return Check(
            "benchmarks", "FAIL", "the suite file does not load: cannot tell what should have run"
        )
    ran = {job.bench for job in run.jobs}
    enabled = [b.name for b in suite.benchmarks if b.enabled]
    reasons = _missing_reasons(meta, suite)
    problems = [
        f"{name} missing, scored 0 ({reasons.get(name, 'did not run')})"
        for name in enabled
        if name not in ran
    ]
    problems += [f"{name} is not in the suite" for name in sorted(ran - set(suite.names()))]
    if problems:
        return Check("benchmarks", "FAIL", _listing(problems, limit=12))
    return Check(
        "benchmarks", "PASS", f"all {len(enabled)} enabled benchmarks of suite {suite.name!r} ran"
    )


def _field(data: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _check_system(meta: Mapping[str, Any]) -> Check:
    system = meta.get("system")
    needed = list(sysinfo.REQUIRED_FIELDS)
    if _field(system, "accelerators.vendor") != "cpu":
        needed += sysinfo.ACCELERATOR_FIELDS
    missing = [name for name in needed if _field(system, name) in (None, "")]
    frameworks = {f: _field(system, f"software.{f}") for f in sysinfo.FRAMEWORKS}
    frameworks = {f: v for f, v in frameworks.items() if v}
    if not frameworks:
        missing.append("software.{" + ",".join(sysinfo.FRAMEWORKS) + "}")
    if missing:
        return Check("system", "FAIL", "meta.json system lacks " + ", ".join(missing))
    accelerators = (
        "no accelerator"
        if _field(system, "accelerators.vendor") == "cpu"
        else f"{_field(system, 'accelerators.count')}× {_field(system, 'accelerators.model')}"
    )
    summary = (
        f"{accelerators}; "
        f"{_field(system, 'host.cpu_model')} ({_field(system, 'host.cpu_cores')} cores, "
        f"{_field(system, 'host.memory_gb')} GB); {_field(system, 'os.name')}; "
        + ", ".join(f"{f} {v}" for f, v in frameworks.items())
    )
    return Check("system", "PASS", summary)


def _check_measures(run: report.RunData, needed: int, source: str) -> Check:
    short = [f"{job.job_id} has {len(job.rates)}" for job in run.jobs if len(job.rates) < needed]
    if short:
        return Check(
            "measurements",
            "FAIL",
            f"fewer than {needed} training rates ({source}): " + _listing(short),
        )
    fewest = min((len(job.rates) for job in run.jobs), default=0)
    return Check(
        "measurements",
        "PASS",
        f"every job has ≥ {needed} training rates ({source}); fewest {fewest}",
    )


def _check_failures(scored: report.Report) -> Check:
    rate = f"failure rate {scored.failure_rate:.2%}"
    if scored.passed:
        return Check("failures", "PASS", f"{rate} ≤ {report.PASS_THRESHOLD:.0%}")
    failed = [f"{b.name}: {b.reason}" for b in scored.benchmarks if b.fail]
    return Check("failures", "FAIL", f"{rate} > {report.PASS_THRESHOLD:.0%}: " + _listing(failed))


def _same(theirs: Any, ours: Any) -> bool:
    if isinstance(theirs, bool) or isinstance(ours, bool):
        return theirs is ours
    if isinstance(theirs, int | float) and isinstance(ours, int | float):
        return math.isclose(theirs, ours, rel_tol=SCORE_RTOL, abs_tol=0.0)
    if isinstance(theirs, dict) and isinstance(ours, dict):
        return theirs.keys() == ours.keys() and all(_same(theirs[k], ours[k]) for k in ours)
    if isinstance(theirs, list) and isinstance(ours, list):
        return len(theirs) == len(ours) and all(map(_same, theirs, ours))
    return bool(theirs == ours)


def _short(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else json.dumps(value)


def _differences(submitted: Any, fresh: dict[str, Any]) -> list[str]:
    """Where summary.json departs from the summary recomputed from the events."""
    if not isinstance(submitted, dict):
        return ["summary.json is not a JSON object"]
    diffs = [
        f"{key}: submitted {_short(submitted.get(key))}, recomputed {_short(fresh[key])}"
        for key in ("score", "failure_rate", "passed", "total_weight")
        if not _same(submitted.get(key), fresh[key])
    ]
    raw = submitted.get("benchmarks")
    theirs = (
        {str(b.get("name")): b for b in raw if isinstance(b, dict)} if isinstance(raw, list) else {}
    )
    ours = {str(b["name"]): b for b in fresh["benchmarks"]}
    diffs += [
        f"{name}: in summary.json, not in the events"
        for name in sorted(theirs.keys() - ours.keys())
    ]
    diffs += [f"{name}: not in summary.json" for name in sorted(ours.keys() - theirs.keys())]
    for name in sorted(ours.keys() & theirs.keys()):
        diffs += [
            f"{name}.{key}: submitted {_short(theirs[name].get(key))}, recomputed {_short(value)}"
            for key, value in ours[name].items()
            if not _same(theirs[name].get(key), value)
        ]
    return diffs


def _check_score(bundle: Bundle, recomputed: report.Report) -> Check:
    try:
        submitted = json.loads((bundle.run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Check("score", "FAIL", f"no {SUMMARY_FILE} in the bundle")
    except (OSError, ValueError) as exc:
        return Check("score", "FAIL", f"{SUMMARY_FILE} is not readable JSON: {exc}")
    diffs = _differences(submitted, report.to_json(recomputed))
    if diffs:
        return Check(
            "score", "FAIL", f"{SUMMARY_FILE} differs from the raw events: " + _listing(diffs)
        )
    return Check(
        "score",
        "PASS",
        f"{SUMMARY_FILE} (score {recomputed.score:.6g}) matches the raw events "
        f"(relative tolerance {SCORE_RTOL:g})",
    )


def _check_reference(judgements: list[Judgement], reference: Reference) -> Check:
    from orchestrator import references

    bad = [
        f"{j.name} {j.verdict} ({j.measured:.4g} vs {j.expected.value:.4g} {j.expected.unit})"
        for j in references.outside(judgements)
    ]
    if bad:
        return Check(
            "reference", "FAIL", f"outside the tolerance of {reference.system!r}: " + _listing(bad)
        )
    return Check(
        "reference",
        "PASS",
        f"all {len(judgements)} figures within the tolerance of {reference.system!r}",
    )


def verify(
    bundle: Bundle,
    *,
    lock: Lock | None = None,
    reference: Reference | None = None,
    min_measures: int | None = None,
    allowed_signers: Path | None = None,
    identity: str | None = None,
) -> Verification:
    """Check an extracted bundle (see docs/submissions.md for each check).

    ``lock``: the images lock the buyer requires (default: the bundled one). ``min_measures``:
    training rates per job (default: the suite's ``min_measures``, else 30). With
    ``allowed_signers`` and ``identity`` the manifest must carry that signer's signature.
    Unusable input (no run in the bundle, unknown benchmarks in ``reference``) raises.
    """
    if (allowed_signers is None) != (identity is None):
        raise UsageError("--allowed-signers and --identity go together")
    if allowed_signers is not None and not Path(allowed_signers).is_file():
        raise ConfigError(f"no allowed signers file at {allowed_signers}")
    rundir = RunDir.open(bundle.run_dir)
    meta = rundir.meta()
    (run,) = report.load([bundle.run_dir])
    recomputed = report.summarize([run])
    suite, suite_check = _check_suite(bundle, meta)
    if suite is not None:
        reasons = _missing_reasons(meta, suite)
        expected = [
            report.BenchmarkSpec(b.name, b.weight, b.enabled, reasons.get(b.name))
            for b in suite.benchmarks
        ]
        scored = report.summarize([run], expected=expected)
    else:
        scored = recomputed
    if min_measures is not None:
        needed, source = min_measures, "--min-measures"
    elif suite is not None and suite.min_measures is not None:
        needed, source = suite.min_measures, "the suite's min_measures"
    else:
        needed, source = DEFAULT_MIN_MEASURES, "default, Milabench report §3.1"
    checks = [
        _check_manifest(bundle),
        _check_signature(bundle, allowed_signers, identity),
        suite_check,
        _check_images(bundle, rundir, lock),
        _check_benchmarks(run, suite, meta),
        _check_system(meta),
        _check_measures(run, needed, source),
        _check_failures(scored),
        _check_score(bundle, recomputed),
    ]
    result = Verification(str(bundle.source), bundle.manifest, checks, scored, needed)
    if reference is not None:
        from orchestrator import references

        result.reference = reference
        result.judgements = references.check(reference, scored)
        checks.append(_check_reference(result.judgements, reference))
    return result


# --- re-run --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RerunRow:
    """One benchmark (or ``score``): submitted ``perf``, re-run ``perf``, their ratio."""

    name: str
    units: str | None
    submitted: float
    rerun: float
    ratio: float
    within: bool


@dataclass
class Rerun:
    """A bundle run again here, compared with what it claimed."""

    run: RunDir
    outcome: Outcome
    backend: str
    tolerance: float
    rows: list[RerunRow]
    notes: list[str]

    @property
    def passed(self) -> bool:
        return all(row.within for row in self.rows)


def _within(ratio: float, tolerance: float) -> bool:
    return math.isfinite(ratio) and abs(ratio - 1) <= tolerance


def rerun(
    bundle: Bundle,
    *,
    results: Path,
    backend: str = "auto",
    tolerance: float = DEFAULT_TOLERANCE,
    devices: str | None = None,
    data_dir: Path | None = None,
    python: str | None = None,
    progress: Progress | None = None,
) -> Rerun:
    """Run the bundle's suite again with its settings (vendor, devices, profile, selection,
    overrides) on its locked images, and compare each benchmark's ``perf`` with the bundle's:
    within when ``|rerun / submitted − 1| ≤ tolerance``. A container backend takes each job's
    image from the bundled lock (``workflow.prepare`` pins them by digest); the local backend
    runs this machine's code instead, and says so in the notes."""
    from orchestrator import workflow

    if tolerance < 0:
        raise UsageError(f"--tolerance {tolerance}: must be ≥ 0 (0.1 = ±10 %)")
    meta = RunDir.open(bundle.run_dir).meta()
    info = _suite_meta(meta)
    plan = meta.get("plan")
    planned = _words(plan.get("devices")) if isinstance(plan, dict) else []
    profile = info.get("profile")
    req = workflow.Request(
        suite=str(bundle.suite_file),
        profile=profile if isinstance(profile, str) else None,
        vendor=str(meta["vendor"]) if meta.get("vendor") else None,
        backend=backend,
        select=tuple(_words(info.get("select"))),
        exclude=tuple(_words(info.get("exclude"))),
        overrides=tuple(_words(info.get("overrides"))),
        devices=devices if devices is not None else (",".join(planned) or None),
        results=Path(results),
        data_dir=data_dir,
        python=python,
        lock=bundle.lock_file,
    )
    prepared = workflow.prepare(req)
    if prepared.suite.config_hash() != info.get("config_hash"):
        raise ResultsError(
            f"{bundle.source}: its suite file does not give the settings it was run with",
            hint="`mbctl verify` the bundle",
        )
    notes = list(prepared.notes)
    if prepared.backend_name == "local":
        notes.append(
            "local backend: this machine's code and frameworks ran, not the bundle's images"
        )
    submitted_jobs = plan.get("jobs") if isinstance(plan, dict) else None
    jobs = sorted(job.id for job in prepared.plan.jobs)
    if jobs != sorted(str(j.get("id")) for j in submitted_jobs or () if isinstance(j, dict)):
        notes.append(f"jobs differ from the submission's: {', '.join(jobs)} here")
    if not prepared.plan.jobs:
        raise OrchestratorError(
            "nothing to re-run: every benchmark was skipped here",
            hint="; ".join(f"{s.bench}: {s.reason}" for s in prepared.plan.skipped),
        )
    result = workflow.run(req, prepared, progress=progress)
    fresh = report.report([result.run.path])
    result.run.write_summary(report.to_json(fresh))
    comparison = report.compare(report.report([bundle.run_dir]), [fresh])
    rows = [
        RerunRow(r.name, r.units, r.base, r.values[0], r.ratios[0], _within(r.ratios[0], tolerance))
        for r in comparison.rows
    ]
    score_ratio = comparison.score_ratios[0]
    rows.append(
        RerunRow(
            "score",
            None,
            comparison.score_base,
            comparison.scores[0],
            score_ratio,
            _within(score_ratio, tolerance),
        )
    )
    return Rerun(result.run, result.outcome, prepared.backend_name, tolerance, rows, notes)


# --- rendering -----------------------------------------------------------------------------

_STYLES: Final = {"PASS": "green", "FAIL": "bold red", "SKIP": "yellow"}


def checks_table(verification: Verification) -> Table:
    from rich.table import Table
    from rich.text import Text

    m = verification.manifest
    failed = len(verification.failed)
    table = Table(
        title=Text(f"Submission {m.run_id} (packed by mbctl {m.mbctl})"),
        caption=Text(
            "all checks pass"
            if not failed
            else f"{failed} of {len(verification.checks)} checks FAIL"
        ),
    )
    table.add_column("check")
    table.add_column("result")
    table.add_column("reason", overflow="fold")
    for c in verification.checks:
        table.add_row(Text(c.name), Text(c.status, style=_STYLES[c.status]), Text(c.reason))
    return table


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def verification_to_json(verification: Verification) -> dict[str, Any]:
    from orchestrator import references

    reference = verification.reference
    return {
        "bundle": verification.bundle,
        "run_id": verification.manifest.run_id,
        "mbctl": verification.manifest.mbctl,
        "passed": verification.passed,
        "min_measures": verification.min_measures,
        "checks": [dataclasses.asdict(c) for c in verification.checks],
        "report": report.to_json(verification.report),
        "reference": (
            references.to_json(verification.judgements, reference)
            if reference is not None
            else None
        ),
    }


def _fmt(value: float, spec: str = ",.4g") -> str:
    return "—" if not math.isfinite(value) else format(value, spec)


def rerun_table(result: Rerun) -> Table:
    from rich.table import Table
    from rich.text import Text

    within = sum(row.within for row in result.rows)
    table = Table(
        title=Text(f"Re-run {result.run.run_id} ({result.backend}) against the submission"),
        caption=Text(f"{within} of {len(result.rows)} within ±{result.tolerance:.0%}"),
    )
    for header in ("bench", "units", "submitted", "re-run", "ratio", "within"):
        table.add_column(
            header, justify="left" if header in ("bench", "units", "within") else "right"
        )
    for row in result.rows:
        table.add_row(
            row.name,
            row.units or "",
            _fmt(row.submitted),
            _fmt(row.rerun),
            _fmt(row.ratio, ".3f"),
            Text("yes" if row.within else "NO", style="green" if row.within else "bold red"),
        )
    return table


def rerun_to_json(result: Rerun) -> dict[str, Any]:
    return {
        "run": str(result.run.path),
        "backend": result.backend,
        "tolerance": result.tolerance,
        "passed": result.passed,
        "rows": [
            {
                "name": r.name,
                "units": r.units,
                "submitted": _finite(r.submitted),
                "rerun": _finite(r.rerun),
                "ratio": _finite(r.ratio),
                "within": r.within,
            }
            for r in result.rows
        ],
        "notes": result.notes,
    }
