"""``mbctl report`` and ``mbctl compare``: scored tables, JSON, CSV, Markdown, HTML and JUnit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestrator.cli.console import err, out
from orchestrator.cli.options import ReportFormat, ResultsOpt

if TYPE_CHECKING:
    from orchestrator.report import BenchmarkSpec, Report

RunsArg = Annotated[
    list[Path],
    typer.Argument(
        help="Run folders (mbctl or Milabench), zips of them, or `latest` (newest in --results)."
    ),
]
ReportFormatOpt = Annotated[
    ReportFormat | None,
    typer.Option(
        "--format",
        "-f",
        help="Output format [default: from the --output suffix, else table].",
        show_default=False,
    ),
]
OutputOpt = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="Write to this file instead of stdout (.html, .json...)."),
]
ReferenceOpt = Annotated[
    Path | None,
    typer.Option(
        "--reference", help="Reference file: mark each benchmark within/outside its tolerance."
    ),
]
WeightsOpt = Annotated[
    str | None,
    typer.Option(
        "--weights",
        help="Re-score with this suite's weights and enabled set (name or YAML file).",
    ),
]
FailUnderOpt = Annotated[
    float | None,
    typer.Option("--fail-under", help="Exit 1 when the score is below SCORE.", metavar="SCORE"),
]
JunitOpt = Annotated[
    Path | None,
    typer.Option("--junit", help="Also write a JUnit XML file (one case per benchmark)."),
]

#: Output suffixes that say which format is meant.
SUFFIXES = {
    ".html": ReportFormat.HTML,
    ".htm": ReportFormat.HTML,
    ".json": ReportFormat.JSON,
    ".csv": ReportFormat.CSV,
    ".md": ReportFormat.MD,
    ".markdown": ReportFormat.MD,
}


def output_format(fmt: ReportFormat | None, output: Path | None) -> ReportFormat:
    """``--format``, else the one ``--output``'s suffix names, else a table (Markdown in a file)."""
    if fmt is not None:
        return fmt
    if output is not None:
        return SUFFIXES.get(output.suffix.lower(), ReportFormat.MD)
    return ReportFormat.TABLE


def resolve_runs(paths: list[Path], results: Path) -> list[Path]:
    """``latest`` names the newest run folder under ``results`` (run ids sort by time)."""
    from orchestrator.errors import ResultsError
    from orchestrator.results import META_FILE

    resolved = []
    for path in paths:
        if str(path) != "latest" or path.exists():
            resolved.append(path)
            continue
        runs = (
            sorted(p for p in results.glob(f"*/{META_FILE}") if p.parent.name != "latest")
            if results.is_dir()
            else []
        )
        if not runs:
            raise ResultsError(
                f"latest: no run folder in {results}",
                hint="run a suite first (mbctl run), or pass --results FOLDER",
            )
        resolved.append(max(runs, key=lambda p: p.parent.name).parent)
    return resolved


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
    err.print(f"wrote {output}", markup=False)


def suite_weights(name: str) -> list[BenchmarkSpec]:
    """Weights and enabled flags of every benchmark of a suite, for ``--weights``."""
    from orchestrator import config
    from orchestrator.report import BenchmarkSpec

    suite = config.load_selected(name)
    return [BenchmarkSpec(b.name, b.weight, b.enabled) for b in suite.benchmarks]


def show_report(
    paths: list[Path],
    *,
    fmt: ReportFormat | str | None = None,
    output: Path | None = None,
    write_summary: bool = False,
    reference: Path | None = None,
    weights: str | None = None,
    junit: Path | None = None,
    fail_under: float | None = None,
) -> list[str]:
    """Score ``paths`` and print the report; ``write_summary`` also stores summary.json in the run.

    Returns why the run does not pass (failure rate over 1 %, score under ``fail_under``); empty
    when it passes. With ``reference``, each benchmark it names is judged against its tolerance
    (table, json and md formats) and any outside one makes the command fail after printing.
    """
    from orchestrator import report
    from orchestrator.errors import BenchmarkFailed, UsageError
    from orchestrator.results import RunDir

    chosen = output_format(ReportFormat(fmt) if fmt else None, output)
    if reference is not None and chosen in (ReportFormat.CSV, ReportFormat.HTML):
        raise UsageError("--reference: use --format table, json or md")
    expected = None
    if reference is not None:  # its config models cost an import the plain report skips
        from orchestrator import references

        expected = references.load(reference)
    specs = suite_weights(weights) if weights is not None else None
    rep = report.summarize(report.load(paths), expected=specs)
    judged = references.check(expected, rep) if expected is not None else []
    problems = report.verdict(rep, fail_under)
    if write_summary and len(paths) == 1:
        RunDir.open(paths[0]).write_summary(report.to_json(rep))
    if chosen is ReportFormat.TABLE and output is None:
        out.print(report.report_table(rep, width=out.width))
        if expected is not None:
            out.print(references.table(judged, expected))
        from rich.markup import escape

        for note in rep.notes:
            err.print(f"[yellow]note:[/] {escape(note)}", markup=True, highlight=False)
    elif chosen is ReportFormat.JSON:
        obj = report.to_json(rep)
        obj["verdict"] = {"passed": not problems, "problems": problems}
        if expected is not None:
            obj["reference"] = references.to_json(judged, expected)
        _emit(json.dumps(obj, indent=2, allow_nan=False) + "\n", output)
    elif chosen in (ReportFormat.TABLE, ReportFormat.MD):
        text = report.to_markdown(rep)
        if expected is not None:
            text += "\n" + references.to_markdown(judged, expected)
        _emit(text, output)
    else:
        renderers = {ReportFormat.CSV: report.to_csv, ReportFormat.HTML: report.to_html}
        _emit(renderers[chosen](rep), output)
    if junit is not None:
        junit.parent.mkdir(parents=True, exist_ok=True)
        junit.write_text(report.to_junit(rep, problems))
        err.print(f"wrote {junit}", markup=False)
    bad = references.outside(judged) if expected is not None else []
    if expected is not None and bad:
        raise BenchmarkFailed(
            f"{len(bad)} of {len(judged)} outside the tolerance of {expected.system!r}: "
            + ", ".join(f"{j.name} ({j.verdict})" for j in bad)
        )
    return problems


def report_command(
    runs: RunsArg,
    fmt: ReportFormatOpt = None,
    output: OutputOpt = None,
    reference: ReferenceOpt = None,
    weights: WeightsOpt = None,
    fail_under: FailUnderOpt = None,
    junit: JunitOpt = None,
    results: ResultsOpt = Path("runs"),
) -> None:
    """Score one or more runs (merged into one report); exit 1 when the run does not pass."""
    from orchestrator.errors import BenchmarkFailed

    problems = show_report(
        resolve_runs(runs, results),
        fmt=fmt,
        output=output,
        reference=reference,
        weights=weights,
        junit=junit,
        fail_under=fail_under,
    )
    if problems:
        raise BenchmarkFailed("the run does not pass: " + "; ".join(problems))


def _scored(
    path: Path, weights: list[BenchmarkSpec] | None
) -> tuple[Report, dict[str, Any] | None]:
    from orchestrator import report

    runs = report.load([path])
    return report.summarize(runs, expected=weights), (runs[0].meta if runs else None)


def compare_command(
    base: Annotated[Path, typer.Argument(help="The baseline run (e.g. the A100 reference).")],
    runs: RunsArg,
    fmt: ReportFormatOpt = None,
    output: OutputOpt = None,
    weights: WeightsOpt = None,
    results: ResultsOpt = Path("runs"),
) -> None:
    """Ratio of each benchmark and of the score to a baseline run; warns when runs differ."""
    from orchestrator import report

    specs = suite_weights(weights) if weights is not None else None
    base_report, base_meta = _scored(resolve_runs([base], results)[0], specs)
    scored = [_scored(p, specs) for p in resolve_runs(runs, results)]
    comparison = report.compare(
        base_report,
        [r for r, _ in scored],
        metas=[base_meta, *(m for _, m in scored)],
    )
    chosen = output_format(fmt, output)
    if chosen is ReportFormat.TABLE and output is None:
        out.print(report.comparison_table(comparison))
        return
    from rich.markup import escape

    for warning in comparison.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}", markup=True, highlight=False)
    renderers = {
        ReportFormat.TABLE: report.comparison_to_markdown,
        ReportFormat.MD: report.comparison_to_markdown,
        ReportFormat.JSON: lambda c: (
            json.dumps(report.comparison_to_json(c), indent=2, allow_nan=False) + "\n"
        ),
        ReportFormat.CSV: report.comparison_to_csv,
        ReportFormat.HTML: report.comparison_to_html,
    }
    _emit(renderers[chosen](comparison), output)


def register(app: typer.Typer) -> None:
    app.command("report")(report_command)
    app.command("compare")(compare_command)
