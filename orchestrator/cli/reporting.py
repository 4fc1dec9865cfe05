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
) -> None:
    """Score ``paths`` and print the report; ``write_summary`` also stores summary.json in the run."""
    from orchestrator import report
    from orchestrator.results import RunDir

    rep = report.report(paths)
    if write_summary and len(paths) == 1:
        RunDir.open(paths[0]).write_summary(report.to_json(rep))
    fmt = ReportFormat(fmt)
    if fmt is ReportFormat.TABLE:
        if output is not None:
            _emit(report.to_markdown(rep), output)
            return
        out.print(report.report_table(rep))
        for note in rep.notes:
            err.print(f"[yellow]note:[/] {note}")
        return
    renderers = {
        ReportFormat.JSON: lambda r: (
            json.dumps(report.to_json(r), indent=2, allow_nan=False) + "\n"
        ),
        ReportFormat.CSV: report.to_csv,
        ReportFormat.MD: report.to_markdown,
        ReportFormat.HTML: report.to_html,
    }
    _emit(renderers[fmt](rep), output)


def report_command(
    runs: RunsArg, fmt: ReportFormatOpt = ReportFormat.TABLE, output: OutputOpt = None
) -> None:
    """Score one or more runs (merged into one report)."""
    show_report(runs, fmt=fmt, output=output)


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
