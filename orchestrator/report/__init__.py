"""Results → per-benchmark summaries, the Milabench score, energy, comparisons, and their renderings.

``load`` reads mbctl run directories, Milabench run folders (``<bench>.<tag>.data`` files) and
zips of either; ``score`` scores them with the rules of Milabench's ``summary.py``/``report.py``;
``render`` writes rich tables, JSON, CSV, Markdown and JUnit; ``html`` self-contained pages;
``causes`` says why a job failed; ``model`` holds the data they share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.report.load import load, mbctl_job, milabench_job
from orchestrator.report.model import (
    MILABENCH_SUFFIX,
    PASS_THRESHOLD,
    BenchmarkSpec,
    BenchmarkSummary,
    Comparison,
    ComparisonRow,
    Energy,
    Failure,
    JobResult,
    Metric,
    PowerSeries,
    RateSeries,
    Report,
    RunData,
    RunInfo,
)
from orchestrator.report.render import (
    CSV_COLUMNS,
    HEADERS,
    comparison_table,
    comparison_to_csv,
    comparison_to_json,
    comparison_to_markdown,
    report_table,
    to_csv,
    to_json,
    to_junit,
    to_markdown,
)
from orchestrator.report.score import (
    Stats,
    compare,
    energy_score,
    global_score,
    metrics,
    report,
    summarize,
    verdict,
)

if TYPE_CHECKING:
    from orchestrator.report.html import comparison_to_html, to_html


def __getattr__(name: str) -> object:
    """The HTML renderers, imported when first asked for (start-up time of the other formats)."""
    if name in ("to_html", "comparison_to_html"):
        from orchestrator.report import html

        return getattr(html, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CSV_COLUMNS",
    "HEADERS",
    "MILABENCH_SUFFIX",
    "PASS_THRESHOLD",
    "BenchmarkSpec",
    "BenchmarkSummary",
    "Comparison",
    "ComparisonRow",
    "Energy",
    "Failure",
    "JobResult",
    "Metric",
    "PowerSeries",
    "RateSeries",
    "Report",
    "RunData",
    "RunInfo",
    "Stats",
    "compare",
    "comparison_table",
    "comparison_to_csv",
    "comparison_to_html",
    "comparison_to_json",
    "comparison_to_markdown",
    "energy_score",
    "global_score",
    "load",
    "mbctl_job",
    "metrics",
    "milabench_job",
    "report",
    "report_table",
    "summarize",
    "to_csv",
    "to_html",
    "to_json",
    "to_junit",
    "to_markdown",
    "verdict",
]
