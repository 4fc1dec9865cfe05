"""Reports and comparisons as self-contained HTML pages (inline SVG, no script, no external asset).

Charts never put different units on one axis: the bars of a report get one linear scale per
unit, a comparison shows ratios to its baseline, and every line chart starts its y axis at 0,
labels both axes with their units and has a legend.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Final

from orchestrator.report.model import Comparison, Report
from orchestrator.report.render import (
    _TEXT_COLUMNS,
    HEADERS,
    _comparison_cells,
    _comparison_header,
    _energy_note,
    _fmt,
    _row_cells,
    _verdict,
    energy_lines,
    system_rows,
    why_lines,
)
from orchestrator.report.score import MEASURED

_PALETTE: Final = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
)  # fmt: skip

_CSS: Final = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
tr.missing td, tr.failed td, tr.skipped td { color: #b00; }
tr.partial td { color: #a60; }
dl.system { display: grid; grid-template-columns: max-content auto; gap: 0.1em 1em; }
dl.system dt { font-weight: bold; }
dl.system dd { margin: 0; }
.PASS { color: green; font-weight: bold; }
.FAIL { color: #b00; font-weight: bold; }
.score { color: #1f4e9c; font-weight: bold; }
figure { display: inline-block; margin: 0.5em 1em 0.5em 0; vertical-align: top; }
figcaption { font-size: 0.9em; }
ul.legend { list-style: none; padding: 0; margin: 0.2em 0; font-size: 0.85em; }
ul.legend li { display: inline-block; margin-right: 1em; }
ul.legend span { display: inline-block; width: 0.8em; height: 0.8em; margin-right: 0.3em; }
svg text { font-size: 11px; fill: #333; }
"""

_SVG: Final = 'xmlns="http://www.w3.org/2000/svg"'


def _nice(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _ticks(top: float) -> list[float]:
    """About five round ticks from 0 to at least ``top``."""
    if top <= 0 or not math.isfinite(top):
        return [0.0, 1.0]
    raw = top / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


def _legend(labels: Sequence[str]) -> str:
    items = "".join(
        f'<li><span style="background: {_PALETTE[i % len(_PALETTE)]}"></span>'
        f"{html.escape(label)}</li>"
        for i, label in enumerate(labels)
    )
    return f'<ul class="legend">{items}</ul>'


def _bars(
    rows: Sequence[tuple[str, float | None, str]], unit: str, label: str, reference: float | None
) -> str:
    """Horizontal bars on one linear scale from 0, ticks labelled in ``unit``; a row whose
    value is None shows its note instead; ``reference`` draws a dashed line (e.g. ratio 1)."""
    label_w, bar_w, row_h, axis_h = 190, 420, 22, 34
    finite = [v for _, v, _ in rows if v is not None and math.isfinite(v)]
    ticks = _ticks(max([*finite, reference or 0.0], default=1.0))
    top = ticks[-1] or 1.0
    height = row_h * len(rows) + axis_h

    def px(value: float) -> float:
        return label_w + bar_w * value / top

    parts = [
        f'<svg {_SVG} width="{label_w + bar_w + 120}" height="{height}" role="img" '
        f'aria-label="{html.escape(label)}">'
    ]
    for i, (name, value, note) in enumerate(rows):
        y = i * row_h
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{html.escape(name)}</text>'
        )
        if value is None or not math.isfinite(value):
            parts.append(
                f'<text x="{label_w + 4}" y="{y + 15}" fill="#b00">{html.escape(note)}</text>'
            )
            continue
        width = max(1.0, px(value) - label_w)
        parts.append(
            f'<rect x="{label_w}" y="{y + 3}" width="{width:.1f}" height="{row_h - 6}" '
            f'fill="{_PALETTE[0]}"><title>{html.escape(name)}: {_nice(value)} '
            f"{html.escape(unit)}</title></rect>"
            f'<text x="{label_w + width + 4:.1f}" y="{y + 15}">{_nice(value)}</text>'
        )
    base = row_h * len(rows)
    parts.append(
        f'<line x1="{label_w}" y1="{base}" x2="{label_w + bar_w}" y2="{base}" stroke="#888"/>'
    )
    for tick in ticks:
        x = px(tick)
        parts.append(
            f'<line x1="{x:.1f}" y1="{base}" x2="{x:.1f}" y2="{base + 4}" stroke="#888"/>'
            f'<text x="{x:.1f}" y="{base + 16}" text-anchor="middle">{_nice(tick)}</text>'
        )
    parts.append(
        f'<text x="{label_w + bar_w / 2}" y="{base + 30}" text-anchor="middle">'
        f"{html.escape(unit)}</text>"
    )
    if reference is not None:
        x = px(reference)
        parts.append(
            f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{base}" stroke="#444" '
            'stroke-dasharray="4 3"/>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _score_bars(report: Report) -> str:
    """One chart per unit: a benchmark's score only shares an axis with the same unit."""
    by_unit: dict[str, list[tuple[str, float | None, str]]] = {}
    unplaced = []
    for b in report.benchmarks:
        ok = math.isfinite(b.score) and b.score > 0
        note = b.status if b.status in ("missing", "skipped") else "0 (failed)"
        if b.units is None:  # never reported a rate: no axis to put it on
            unplaced.append(f"{b.name}: {note}")
            continue
        by_unit.setdefault(b.units, []).append((b.name, b.score if ok else None, note))
    charts = "".join(
        f"<figure>{_bars(rows, unit, f'score per benchmark in {unit}', None)}"
        f"<figcaption>score, {html.escape(unit)}</figcaption></figure>"
        for unit, rows in by_unit.items()
    )
    if unplaced:
        charts += f"<p>Scored 0, no rate: {html.escape(', '.join(unplaced))}</p>"
    return charts


def _line_chart(
    title: str,
    series: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    x_label: str,
    y_label: str,
) -> str:
    """Lines of (label, xs, ys) on axes from 0, both labelled, with a legend."""
    w, h, left, bottom, top_pad, right_pad = 480, 210, 64, 44, 10, 14
    xs = [x for _, sx, _ in series for x in sx]
    ys = [y for _, _, sy in series for y in sy if math.isfinite(y)]
    if not xs or not ys:
        return ""
    x_ticks, y_ticks = _ticks(max(xs)), _ticks(max(ys))
    x_max, y_max = x_ticks[-1] or 1.0, y_ticks[-1] or 1.0
    plot_w, plot_h = w - left - right_pad, h - bottom - top_pad

    def px(x: float) -> float:
        return left + plot_w * x / x_max

    def py(y: float) -> float:
        return top_pad + plot_h * (1 - y / y_max)

    base = top_pad + plot_h
    parts = [
        f'<svg {_SVG} width="{w}" height="{h}" role="img" aria-label="{html.escape(title)}">',
        f'<line x1="{left}" y1="{base}" x2="{w - right_pad}" y2="{base}" stroke="#888"/>',
        f'<line x1="{left}" y1="{top_pad}" x2="{left}" y2="{base}" stroke="#888"/>',
    ]
    for t in x_ticks:
        parts.append(
            f'<text x="{px(t):.1f}" y="{base + 14}" text-anchor="middle">{_nice(t)}</text>'
        )
    for t in y_ticks:
        parts.append(
            f'<line x1="{left}" y1="{py(t):.1f}" x2="{w - right_pad}" y2="{py(t):.1f}" '
            'stroke="#eee"/>'
            f'<text x="{left - 4}" y="{py(t) + 4:.1f}" text-anchor="end">{_nice(t)}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{h - 8}" text-anchor="middle">'
        f"{html.escape(x_label)}</text>"
        f'<text x="12" y="{top_pad + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 12 {top_pad + plot_h / 2})">{html.escape(y_label)}</text>'
    )
    for i, (label, sx, sy) in enumerate(series):
        points = " ".join(
            f"{px(x):.1f},{py(y):.1f}" for x, y in zip(sx, sy, strict=False) if math.isfinite(y)
        )
        parts.append(
            f'<polyline fill="none" stroke="{_PALETTE[i % len(_PALETTE)]}" stroke-width="1.5" '
            f'points="{points}"><title>{html.escape(label)}</title></polyline>'
        )
    parts.append("</svg>")
    legend = _legend([label for label, _, _ in series])
    return f"<figure>{''.join(parts)}{legend}<figcaption>{html.escape(title)}</figcaption></figure>"


def _rate_charts(report: Report) -> str:
    out = []
    for b in report.benchmarks:
        series = report.samples.get(b.name)
        if not series:
            continue
        timed = all(s.times is not None for s in series)
        lines = [
            (
                s.job + (f" (device {s.device})" if s.device is not None else ""),
                s.times
                if timed and s.times is not None
                else [float(k) for k in range(len(s.values))],
                s.values,
            )
            for s in series
        ]
        x_label = "seconds since the job's first rate" if timed else "rate sample"
        out.append(_line_chart(f"{b.name}: training rate", lines, x_label, b.units or "rate"))
    return "".join(out)


def _power_charts(report: Report) -> str:
    out = []
    for b in report.benchmarks:
        series = report.power.get(b.name)
        if series:
            lines = [(f"{s.job} device {s.device}", s.times, s.watts) for s in series]
            out.append(
                _line_chart(f"{b.name}: power", lines, "seconds since the job's first sample", "W")
            )
    return "".join(out)


def _page(title: str, body: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title><style>{_CSS}</style></head>
<body>
<h1>{title}</h1>
{body}
</body></html>
"""


def to_html(report: Report) -> str:
    """A self-contained page: system, table, score, causes, bars per unit, rate and power plots."""
    title = html.escape(f"Benchmark results: {report.label}")
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADERS)
    body = []
    for b in report.benchmarks:
        tds = "".join(
            f'<td class="text">{html.escape(c)}</td>'
            if h in _TEXT_COLUMNS
            else f"<td>{html.escape(c)}</td>"
            for h, c in zip(HEADERS, _row_cells(b), strict=True)
        )
        body.append(f'<tr class="{b.status}">{tds}</tr>')
    verdict = "PASS" if report.passed else "FAIL"
    system = "".join(
        f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in system_rows(report)
    )
    why = "".join(f"<li>{html.escape(line)}</li>" for line in why_lines(report))
    energy = "".join(f"<li>{html.escape(line)}</li>" for line in energy_lines(report))
    sources = "".join(
        f"<li>{html.escape(r.source)} ({r.kind}, {r.jobs} jobs)</li>" for r in report.runs
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report.notes)
    power = _power_charts(report)
    return _page(
        title,
        f"""<p>Score: <span class="score">{_fmt(report.score)}</span> &nbsp;
{html.escape(_energy_note(report))} &nbsp;
Failure rate: <span class="{verdict}">{html.escape(_verdict(report))}</span></p>
<h2>System</h2>
{f'<dl class="system">{system}</dl>' if system else "<p>No system description.</p>"}
<h2>Breakdown</h2>
<table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>
{f"<h2>Failures and benchmarks that did not run</h2><ul>{why}</ul>" if why else ""}
<h2>Score per benchmark</h2>
{_score_bars(report)}
<h2>Training rate over time</h2>
{_rate_charts(report) or "<p>No rates were recorded.</p>"}
<h2>Energy</h2>
<ul>{energy}</ul>
{power}
<h2>Sources</h2>
<ul>{sources}</ul>
{f"<h2>Notes</h2><ul>{notes}</ul>" if notes else ""}""",
    )


def _ratio_chart(comparison: Comparison) -> str:
    """Bars of each ratio to the baseline (one colour per compared run), a line at 1.0."""
    names = [*(r.name for r in comparison.rows), "score"]
    parts = []
    for j, label in enumerate(comparison.others):
        rows: list[tuple[str, float | None, str]] = []
        for r in comparison.rows:
            ok = r.states[j] in MEASURED and r.base_state in MEASURED
            note = r.states[j] if r.states[j] not in MEASURED else f"baseline {r.base_state}"
            rows.append((r.name, r.ratios[j] if ok else None, note))
        rows.append(("score", comparison.score_ratios[j], "no score"))
        assert len(rows) == len(names)
        chart = _bars(rows, f"× {comparison.base}", f"ratio of {label}", 1.0)
        parts.append(
            f"<figure>{chart}{_legend([label])}<figcaption>{html.escape(label)} / "
            f"{html.escape(comparison.base)}</figcaption></figure>"
        )
    return "".join(parts)


def comparison_to_html(comparison: Comparison) -> str:
    """A self-contained page: warnings, the comparison table and a chart of the ratios."""
    title = html.escape(f"{comparison.metric} relative to {comparison.base}")
    header = "".join(f"<th>{html.escape(h)}</th>" for h in _comparison_header(comparison))
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
        for row in _comparison_cells(comparison)
    )
    warnings = "".join(f"<li>{html.escape(w)}</li>" for w in comparison.warnings)
    return _page(
        title,
        f"""{f'<h2>Warnings</h2><ul class="FAIL">{warnings}</ul>' if warnings else ""}
<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>
<h2>Ratios</h2>
{_ratio_chart(comparison)}""",
    )
