"""``mbctl rerun``: a bundle run again on its locked images only, compared with its claims."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator import report
from orchestrator.errors import OrchestratorError, ResultsError, UsageError
from orchestrator.results import RunDir
from orchestrator.submission.bundle import DEFAULT_TOLERANCE, _suite_meta, _words
from orchestrator.submission.extraction import Bundle

if TYPE_CHECKING:
    from rich.table import Table

    from orchestrator.runner import Outcome, Progress


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
