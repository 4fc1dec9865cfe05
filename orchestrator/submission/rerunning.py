"""``mbctl rerun``: a bundle run again on its locked images only, compared with its claims."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from orchestrator import report
from orchestrator.errors import BackendUnavailable, OrchestratorError, ResultsError, UsageError
from orchestrator.results import RunDir
from orchestrator.submission.bundle import (
    VerificationFailed,
    _suite_meta,
    _words,
)
from orchestrator.submission.extraction import Bundle
from orchestrator.submission.verification import _check_manifest, _check_signature

if TYPE_CHECKING:
    from rich.table import Table

    from orchestrator.images import Lock
    from orchestrator.plan import Plan
    from orchestrator.runner import Outcome, Progress


#: ``rerun``'s default: on a dedicated accelerator node, runs of one image agree within a few %.
DEFAULT_TOLERANCE: Final = 0.10


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


def trust(
    bundle: Bundle,
    *,
    allowed_signers: Path | None,
    identity: str | None,
    insecure: bool,
) -> list[str]:
    """Refuse (VerificationFailed) a bundle whose files are not the ones its manifest pins,
    or, unless ``insecure``, whose manifest lacks a valid signature of ``identity`` from
    ``allowed_signers``; the notes to show."""
    manifest = _check_manifest(bundle)
    if manifest.status == "FAIL":
        raise VerificationFailed(f"refusing to re-run {bundle.source}: {manifest.reason}")
    if insecure:
        return ["--insecure: the bundle's signature was not checked"]
    if allowed_signers is None or identity is None:
        raise UsageError(
            "rerun runs what a bundle names: pass --allowed-signers FILE and --identity SIGNER",
            hint="or --insecure for a bundle you made yourself",
        )
    signature = _check_signature(bundle, allowed_signers, identity)
    if signature.status != "PASS":
        raise VerificationFailed(f"refusing to re-run {bundle.source}: {signature.reason}")
    return [f"signature: {signature.reason}"]


def _check_locked(plan: Plan, lock: Lock, source: Path) -> None:
    """Every job starts the image its lock pins, by digest: never a local build or a tag."""
    for job in plan.jobs:
        entry = lock.entry(job.definition, job.vendor)
        if entry is None or job.image != entry.ref:
            pinned = entry.ref if entry is not None else "no image"
            raise ResultsError(
                f"refusing to re-run {source}: {job.id} would start {job.image or 'no image'}, "
                f"the bundled lock pins {pinned} for {job.definition} ({job.vendor})",
                hint="a re-run starts the bundle's locked images only",
            )


def rerun(
    bundle: Bundle,
    *,
    results: Path,
    backend: str = "auto",
    tolerance: float = DEFAULT_TOLERANCE,
    devices: str | None = None,
    data_dir: Path | None = None,
    allowed_signers: Path | None = None,
    identity: str | None = None,
    insecure: bool = False,
    progress: Progress | None = None,
) -> Rerun:
    """Run the bundle's suite again with its settings (vendor, devices, profile, selection,
    overrides) on its locked images, and compare each benchmark's ``perf`` with the bundle's:
    within when ``|rerun / submitted − 1| ≤ tolerance``.

    A bundle is untrusted input: it must be signed by ``identity`` of ``allowed_signers``
    (unless ``insecure``), and every job starts the image its bundled lock pins by digest on a
    container backend; anything else (no engine, an image missing from the lock, the local
    backend) is refused before a job starts.
    """
    from orchestrator import images, workflow

    if tolerance < 0:
        raise UsageError(f"--tolerance {tolerance}: must be ≥ 0 (0.1 = ±10 %)")
    if backend == "local":
        raise UsageError(
            "rerun starts a bundle's locked images: the local backend runs this machine's code",
            hint="use --backend docker (or kubernetes)",
        )
    trusted = trust(bundle, allowed_signers=allowed_signers, identity=identity, insecure=insecure)
    lock = images.read_lock(bundle.lock_file)
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
        lock=bundle.lock_file,
    )
    prepared = workflow.prepare(req)
    if prepared.backend_name == "local":
        raise BackendUnavailable(
            f"refusing to re-run {bundle.source} with the local backend: "
            + "; ".join(prepared.notes),
            hint="a re-run starts the bundle's locked images: start the Docker engine",
        )
    _check_locked(prepared.plan, lock, bundle.source)
    if prepared.suite.config_hash() != info.get("config_hash"):
        raise ResultsError(
            f"{bundle.source}: its suite file does not give the settings it was run with",
            hint="`mbctl verify` the bundle",
        )
    notes = [*trusted, *prepared.notes]
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


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


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
