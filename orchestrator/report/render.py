"""Reports and comparisons as text: rich tables (wide and narrow), JSON, CSV, Markdown and JUnit XML."""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Final

from orchestrator import sysinfo
from orchestrator.report.model import BenchmarkSummary, Comparison, ComparisonRow, Report
from orchestrator.report.score import MEASURED

if TYPE_CHECKING:
    from rich.console import RenderableType

#: Below this many columns the table keeps only the columns a reader needs first.
NARROW: Final = 100
NO_POWER: Final = "no power samples"


def _fmt(value: float | None, spec: str = ".2f", missing: str = "—") -> str:
    return missing if value is None or math.isnan(value) else format(value, spec)


def _num(value: float | None, missing: str = "—") -> str:
    """Two decimals, or three significant digits below 1 (a CPU's 0.004 TFLOPS is not 0.00)."""
    if value is None or math.isnan(value):
        return missing
    return format(value, ".3g" if 0 < abs(value) < 1 else ".2f")


def _json_value(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    return value


def _verdict(report: Report) -> str:
    return f"{report.failure_rate:.2%} ({'PASS' if report.passed else 'FAIL'})"


def _energy_note(report: Report) -> str:
    if math.isnan(report.energy_score):
        return f"Energy score: — ({NO_POWER})"
    return f"Energy score: {report.energy_score:.4g} (items/J)"


def system_rows(report: Report) -> list[tuple[str, str]]:
    return sysinfo.rows(report.system)


# --- JSON ----------------------------------------------------------------------------------


def to_json(report: Report, *, samples: bool = False) -> dict[str, Any]:
    """A JSON-ready object (NaN → null): ``score``, ``failure_rate``, ``passed``, ``system``,
    ``energy_score``, ``benchmarks``..."""
    obj: dict[str, Any] = {
        "score": report.score,
        "energy_score": report.energy_score,
        "failure_rate": report.failure_rate,
        "passed": report.passed,
        "total_weight": report.total_weight,
        "system": report.system,
        "benchmarks": [asdict(b) for b in report.benchmarks],
        "runs": [asdict(r) for r in report.runs],
        "notes": list(report.notes),
    }
    if samples:
        obj["samples"] = {k: [asdict(s) for s in v] for k, v in report.samples.items()}
        obj["power"] = {k: [asdict(s) for s in v] for k, v in report.power.items()}
    result: dict[str, Any] = _json_value(obj)
    return result


# --- CSV -----------------------------------------------------------------------------------

CSV_COLUMNS: Final = (
    "name", "status", "n", "fail", "nan", "perf", "units", "std", "sem", "std_pct", "sem_pct",
    "min", "q1", "median", "q3", "max", "peak_memory", "throughput", "score", "weight",
    "enabled", "ngpu", "group", "reason", "energy_kj", "power_mean_w", "power_median_w",
    "items_per_joule",
)  # fmt: skip
#: The system block repeats on every CSV row, so a spreadsheet of many runs keeps it per row.
#: ``device``...``framework``: what the jobs reported (several devices: joined by `` | ``).
CSV_SYSTEM: Final = (
    "accelerator", "driver", "runtime", "software", "cpu", "backend",
    "device", "device driver", "device runtime", "framework",
)  # fmt: skip


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    import csv  # only for this format: start-up time

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if isinstance(v, float) and not math.isfinite(v) else v for v in row])
    return out.getvalue()


def _energy_cells(b: BenchmarkSummary) -> list[Any]:
    if b.energy is None:
        return [math.nan] * 4
    e = b.energy
    return [e.kj, sum(e.mean_w.values()), sum(e.median_w.values()), e.items_per_joule]


def to_csv(report: Report) -> str:
    """One row per benchmark (empty cells for missing values); the score is in to_json."""
    system: dict[str, list[str]] = {}
    for label, value in sysinfo.rows(report.system):  # "device [jobs]" -> "device"
        system.setdefault(label.split(" [", 1)[0], []).append(value)
    fixed = [" | ".join(system.get(k, ())) for k in CSV_SYSTEM]
    rows = (
        [
            *(getattr(b, c) if c != "reason" else (b.reason or "") for c in CSV_COLUMNS[:24]),
            *_energy_cells(b),
            *fixed,
        ]
        for b in report.benchmarks
    )
    return _csv((*CSV_COLUMNS, *CSV_SYSTEM), rows)


# --- cells shared by the table, Markdown and HTML ------------------------------------------


def _perf_cell(b: BenchmarkSummary) -> str:
    return b.status if b.status in ("missing", "skipped") else _num(b.perf)


def _power_cell(b: BenchmarkSummary) -> str:
    if b.energy is None:
        return "—"
    return _fmt(sum(b.energy.mean_w.values()), ".0f")


HEADERS: Final = (
    "bench", "n", "fail", "NaN", "perf", "units", "std%", "sem%", "peak_memory", "score",
    "weight", "kJ", "W", "items/J", "status",
)  # fmt: skip
NARROW_HEADERS: Final = ("bench", "perf", "units", "score", "fail", "status")
_TEXT_COLUMNS: Final = frozenset({"bench", "units", "status"})


def _row_cells(b: BenchmarkSummary) -> list[str]:
    e = b.energy
    return [
        b.name,
        str(b.n),
        str(b.fail),
        str(b.nan),
        _perf_cell(b),
        b.units or "",
        _fmt(b.std_pct, ".1%"),
        _fmt(b.sem_pct, ".1%"),
        _fmt(b.peak_memory, ".0f"),
        _num(b.score),
        _fmt(b.weight),
        _fmt(e.kj, ".2f") if e else "—",
        _power_cell(b),
        _fmt(e.items_per_joule, ".3g") if e else "—",
        b.status,
    ]


def _narrow_cells(b: BenchmarkSummary) -> list[str]:
    return [b.name, _perf_cell(b), b.units or "", _num(b.score), f"{b.fail}/{b.n}", b.status]


def why_lines(report: Report) -> list[str]:
    """One line per benchmark that failed, was skipped or did not run, with its cause."""
    return [f"{b.name}: {b.status}: {b.reason}" for b in report.benchmarks if b.reason]


def energy_lines(report: Report) -> list[str]:
    """Per benchmark with power samples: energy and mean/median power per device."""
    lines = []
    for b in report.benchmarks:
        if b.energy is None:
            continue
        per_device = ", ".join(
            f"{d} {b.energy.mean_w[d]:.0f}/{b.energy.median_w[d]:.0f} W" for d in b.energy.mean_w
        )
        lines.append(f"{b.name}: {b.energy.kj:.2f} kJ; mean/median per device: {per_device}")
    if not lines:
        lines.append(NO_POWER)
    return lines


# --- Markdown ------------------------------------------------------------------------------


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]], right: Sequence[bool]) -> str:
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---:" if r else "---" for r in right) + "|")
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(report: Report) -> str:
    right = [h not in _TEXT_COLUMNS for h in HEADERS]
    table = _md_table(HEADERS, (_row_cells(b) for b in report.benchmarks), right)
    lines = [f"# Benchmark results: {_md_escape(report.label)}", ""]
    system = system_rows(report)
    if system:
        lines += ["## System", "", *(f"- **{k}**: {_md_escape(v)}" for k, v in system), ""]
    lines += [
        table,
        "",
        f"**Score**: {_fmt(report.score)}  ",
        f"**{_energy_note(report).replace(':', '**:', 1)}  ",
        f"**Failure rate**: {_verdict(report)}",
    ]
    why = why_lines(report)
    if why:
        lines += ["", "## Failures and benchmarks that did not run", ""]
        lines += [f"- {_md_escape(line)}" for line in why]
    lines += ["", "## Energy", "", *(f"- {_md_escape(line)}" for line in energy_lines(report))]
    if report.notes:
        lines += ["", "## Notes", "", *(f"- {_md_escape(note)}" for note in report.notes)]
    return "\n".join(lines) + "\n"


# --- rich ----------------------------------------------------------------------------------


def report_table(report: Report, *, width: int | None = None) -> RenderableType:
    """The report for a terminal: system block, the table (its narrow form under ``NARROW``
    columns, where names and numbers stay whole), causes of failures, energy, score."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    narrow = width is not None and width < NARROW
    headers = NARROW_HEADERS if narrow else HEADERS
    cells = _narrow_cells if narrow else _row_cells
    table = Table(title=Text(f"Benchmark results: {report.label}"), pad_edge=False)
    for header in headers:
        table.add_column(
            header, justify="left" if header in _TEXT_COLUMNS else "right", no_wrap=True
        )
    styles = {"ok": None, "partial": "yellow", "failed": "red", "missing": "red dim"}
    for b in report.benchmarks:
        table.add_row(*(Text(c) for c in cells(b)), style=styles.get(b.status, "red dim"))
    parts: list[RenderableType] = []
    system = system_rows(report)
    if system:
        block = Table.grid(padding=(0, 1))
        block.add_column(style="bold", no_wrap=True)
        block.add_column(overflow="fold")
        for key, value in system:
            block.add_row(key, Text(value))
        parts.append(block)
    parts.append(table)
    for line in why_lines(report):
        parts.append(Text(line, style="red"))
    if not any(b.energy for b in report.benchmarks):
        parts.append(Text(f"energy: {NO_POWER}"))
    elif narrow:  # the wide table has kJ, W and items/J columns; per device: json, md, html
        parts += [Text(line) for line in energy_lines(report)]
    parts.append(
        Text(
            f"Score: {_fmt(report.score)}   {_energy_note(report)}   "
            f"Failure rate: {_verdict(report)}",
            style="bold",
        )
    )
    return Group(*parts)


# --- comparisons ---------------------------------------------------------------------------


def _compare_cell(value: float, state: str) -> str:
    if state == "partial":
        return f"{_num(value)} (partial)"
    return _num(value) if state == "ok" else state


def _comparison_header(comparison: Comparison) -> list[str]:
    header = ["bench", "units", comparison.base]
    for label in comparison.others:
        header += [label, f"ratio {label}"]
    return header


def _comparison_row(row: ComparisonRow) -> list[str]:
    cells = [row.name, row.units or "", _compare_cell(row.base, row.base_state)]
    for value, ratio, state in zip(row.values, row.ratios, row.states, strict=True):
        both = state in MEASURED and row.base_state in MEASURED
        cells += [_compare_cell(value, state), _fmt(ratio, ".2f") if both else "—"]
    return cells


def _comparison_cells(comparison: Comparison) -> list[list[str]]:
    rows = [_comparison_row(row) for row in comparison.rows]
    score = ["score", "", _fmt(comparison.score_base)]
    for value, ratio in zip(comparison.scores, comparison.score_ratios, strict=True):
        score += [_fmt(value), _fmt(ratio)]
    return [*rows, score]


def comparison_table(comparison: Comparison) -> RenderableType:
    """The comparison as a rich Table, the global score in its last row, warnings below."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(f"{comparison.metric} relative to {comparison.base}"))
    for i, header in enumerate(_comparison_header(comparison)):
        table.add_column(Text(header), justify="left" if i < 2 else "right", no_wrap=i == 0)
    cells = _comparison_cells(comparison)
    for i, row in enumerate(cells):
        table.add_row(*(Text(c) for c in row), style="bold" if i == len(cells) - 1 else None)
    warnings = [Text(f"warning: {w}", style="yellow") for w in comparison.warnings]
    return Group(table, *warnings)


def comparison_to_json(comparison: Comparison) -> dict[str, Any]:
    result: dict[str, Any] = _json_value(asdict(comparison))
    return result


def comparison_to_csv(comparison: Comparison) -> str:
    n = range(len(comparison.others))
    header = [
        "name",
        "units",
        "base",
        "base_state",
        *[f"{k}_{i}" for i in n for k in ("value", "ratio", "state")],
    ]
    rows = []
    for row in comparison.rows:
        cells: list[Any] = [row.name, row.units or "", row.base, row.base_state]
        for value, ratio, state in zip(row.values, row.ratios, row.states, strict=True):
            cells += [value, ratio, state]
        rows.append(cells)
    score: list[Any] = ["score", "", comparison.score_base, ""]
    for value, ratio in zip(comparison.scores, comparison.score_ratios, strict=True):
        score += [value, ratio, ""]
    return _csv(header, [*rows, score])


def comparison_to_markdown(comparison: Comparison) -> str:
    header = _comparison_header(comparison)
    table = _md_table(header, _comparison_cells(comparison), [i >= 2 for i in range(len(header))])
    title = f"# {comparison.metric} relative to {_md_escape(comparison.base)}"
    warnings = "".join(f"\n- warning: {_md_escape(w)}" for w in comparison.warnings)
    return f"{title}\n\n{table}\n" + (f"{warnings}\n" if warnings else "")


# --- JUnit ---------------------------------------------------------------------------------


_XML: Final = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})


def escape(text: str) -> str:
    """XML text (xml.sax.saxutils imports urllib and email, html its entity tables)."""
    return text.translate(_XML)


def quoteattr(text: str) -> str:
    return f'"{escape(text)}"'


def to_junit(report: Report, problems: Sequence[str] = ()) -> str:
    """One test case per benchmark (failed: its causes; skipped: did not run) and one for the
    run's verdict, for CI systems that read JUnit XML."""
    cases = []
    for b in report.benchmarks:
        name = quoteattr(b.name)
        if b.status in ("failed", "partial"):
            body = f"<failure message={quoteattr(b.reason or b.status)}/>"
        elif b.status in ("missing", "skipped"):
            body = f"<skipped message={quoteattr(b.reason or b.status)}/>"
        else:
            body = ""
        cases.append(
            f'  <testcase classname="mbctl.benchmark" name={name} time="0">{body}</testcase>'
        )
    verdict = "".join(f"<failure message={quoteattr(p)}/>" for p in problems)
    cases.append(f'  <testcase classname="mbctl.run" name="verdict">{verdict}</testcase>')
    failures = sum(b.status in ("failed", "partial") for b in report.benchmarks) + bool(problems)
    skipped = sum(b.status in ("missing", "skipped") for b in report.benchmarks)
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<testsuite name={quoteattr("mbctl " + report.label)} tests="{len(cases)}" '
        f'failures="{failures}" skipped="{skipped}" errors="0">\n'
        f'  <properties><property name="score" value="{_fmt(report.score)}"/></properties>\n'
        + "\n".join(cases)
        + f"\n  <system-out>{escape(chr(10).join(why_lines(report)))}</system-out>\n</testsuite>\n"
    )
