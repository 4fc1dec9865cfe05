"""``mbctl report`` and ``mbctl compare``: scored tables, JSON, CSV, Markdown and HTML."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.console import err, out
from orchestrator.cli.options import ReportFormat

RunsArg = Annotated[
    list[Path], typer.Argument(help="Run folders (mbctl or Milabench) or zips of them.")
]
ReportFormatOpt = Annotated[ReportFormat, typer.Option("--format", "-f", help="Output format.")]
OutputOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
]
ReferenceOpt = Annotated[
    Path | None,
    typer.Option(
        "--reference", help="Reference file: mark each benchmark within/outside its tolerance."
    ),
]


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        out.print(
            text,
            markup=False,
            highlight=False,
            soft_wrap=True,
            end="" if text.endswith("\n") else "\n",
        )
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    err.print(f"wrote {output}")


def show_report(
    paths: list[Path],
    *,
    fmt: ReportFormat | str = ReportFormat.TABLE,
    output: Path | None = None,
    write_summary: bool = False,
    reference: Path | None = None,
) -> None:
    """Score ``paths`` and print the report; ``write_summary`` also stores summary.json in the run.

    With ``reference``, each benchmark it names is judged against its tolerance (table, json
    and md formats) and any outside one makes the command fail after printing everything.
    """
    from orchestrator import references, report
    from orchestrator.errors import BenchmarkFailed, UsageError
    from orchestrator.results import RunDir

    fmt = ReportFormat(fmt)
    if reference is not None and fmt in (ReportFormat.CSV, ReportFormat.HTML):
        raise UsageError("--reference: use --format table, json or md")
    expected = references.load(reference) if reference is not None else None
    runs = report.load(paths)
    rep = report.summarize(runs)
    judged = []
    if expected is not None:
        known = [spec.name for run in runs for spec in run.expected]
        judged = references.check(expected, rep, known=known)
    if write_summary and len(paths) == 1:
        RunDir.open(paths[0]).write_summary(report.to_json(rep))
    if fmt is ReportFormat.TABLE and output is None:
        out.print(report.report_table(rep))
        if expected is not None:
            out.print(references.table(judged, expected))
        for note in rep.notes:
            err.print(f"[yellow]note:[/] {note}")
    elif fmt is ReportFormat.JSON:
        obj = report.to_json(rep)
        if expected is not None:
            obj["reference"] = references.to_json(judged, expected)
        _emit(json.dumps(obj, indent=2, allow_nan=False) + "\n", output)
    elif fmt in (ReportFormat.TABLE, ReportFormat.MD):
        text = report.to_markdown(rep)
        if expected is not None:
            text += "\n" + references.to_markdown(judged, expected)
        _emit(text, output)
    else:
        renderers = {ReportFormat.CSV: report.to_csv, ReportFormat.HTML: report.to_html}
        _emit(renderers[fmt](rep), output)
    bad = references.outside(judged)
    if expected is not None and bad:
        raise BenchmarkFailed(
            f"{len(bad)} of {len(judged)} outside the tolerance of {expected.system!r}: "
            + ", ".join(f"{j.name} ({j.verdict})" for j in bad)
        )


def report_command(
    runs: RunsArg,
    fmt: ReportFormatOpt = ReportFormat.TABLE,
    output: OutputOpt = None,
    reference: ReferenceOpt = None,
) -> None:
    """Score one or more runs (merged into one report)."""
    show_report(runs, fmt=fmt, output=output, reference=reference)


def compare_command(
    base: Annotated[Path, typer.Argument(help="The baseline run (e.g. the A100 reference).")],
    runs: RunsArg,
    fmt: ReportFormatOpt = ReportFormat.TABLE,
    output: OutputOpt = None,
) -> None:
    """Ratio of each benchmark and of the score to a baseline run."""
    from orchestrator import report

    comparison = report.compare(report.report([base]), [report.report([r]) for r in runs])
    if fmt is ReportFormat.TABLE and output is None:
        out.print(report.comparison_table(comparison))
        return
    renderers = {
        ReportFormat.TABLE: report.comparison_to_markdown,
        ReportFormat.MD: report.comparison_to_markdown,
        ReportFormat.JSON: lambda c: (
            json.dumps(report.comparison_to_json(c), indent=2, allow_nan=False) + "\n"
        ),
        ReportFormat.CSV: report.comparison_to_csv,
        ReportFormat.HTML: report.comparison_to_html,
    }
    _emit(renderers[fmt](comparison), output)


def register(app: typer.Typer) -> None:
    app.command("report")(report_command)
    app.command("compare")(compare_command)
