"""Reference figures with tolerances (ReFrame's idea): one YAML file per system, judged against reports.

A reference file names a system and, per benchmark, the expected ``value`` with ``lower`` and
``upper`` tolerances as fractions of it (``-0.1`` = 10 % below is still fine; ``null`` =
unbounded) and its ``unit``. ``check`` marks each benchmark of a report within or outside its
bounds. A benchmark the file names that the run did not have (a subset of the suite, another
suite) is listed as ``not run`` and not judged; the score is then ``not comparable``, since a
partial run's score cannot be held against a full one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat

from orchestrator.config import load_model

if TYPE_CHECKING:
    from rich.table import Table

    from orchestrator.report import Report

Metric = Literal["perf", "throughput", "score"]
Verdict = Literal["within", "below", "above", "missing", "not run", "not comparable"]
#: Verdicts that are no measurement of the system, so no failure either.
UNJUDGED: frozenset[str] = frozenset({"not run", "not comparable"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReferenceValue(_Model):
    """One expected figure: within when ``value·(1+lower) ≤ measured ≤ value·(1+upper)``."""

    value: PositiveFloat
    lower: float | None = Field(ge=-1.0, le=0.0, description="fraction below value; None: no bound")
    upper: float | None = Field(ge=0.0, description="fraction above value; None: no bound")
    unit: str
    source: str | None = Field(default=None, description="where the figure was published")

    @property
    def low(self) -> float:
        return -math.inf if self.lower is None else self.value * (1 + self.lower)

    @property
    def high(self) -> float:
        return math.inf if self.upper is None else self.value * (1 + self.upper)


class Reference(_Model):
    """A reference file: the figures one system is expected to reach."""

    system: str
    description: str = ""
    metric: Metric = Field(default="perf", description="the report column the values compare with")
    score: ReferenceValue | None = Field(default=None, description="the global score")
    reference: dict[str, ReferenceValue]


@dataclass(frozen=True)
class Judgement:
    """One benchmark (or ``score``) of a report against its reference figure."""

    name: str
    measured: float
    units: str | None
    expected: ReferenceValue
    verdict: Verdict

    @property
    def within(self) -> bool:
        return self.verdict == "within"

    @property
    def ratio(self) -> float:
        return self.measured / self.expected.value


def load(path: Path) -> Reference:
    """Read and validate a reference file; every problem is in one ConfigError with file:line."""
    return load_model(path, Reference, what="reference file")


def _verdict(measured: float, expected: ReferenceValue) -> Verdict:
    if math.isnan(measured):
        return "missing"
    if measured < expected.low:
        return "below"
    if measured > expected.high:
        return "above"
    return "within"


def check(reference: Reference, report: Report) -> list[Judgement]:
    """Judge each benchmark the reference names (and the score, if it has one) in ``report``.

    A benchmark the run did not have, or that was skipped or did not run, is ``not run``.
    The score is ``not comparable`` when any benchmark of the reference did not run.
    """
    judged = []
    for name in sorted(reference.reference):
        expected = reference.reference[name]
        bench = report.benchmark(name)
        value: float = math.nan
        units = bench.units if bench is not None else None
        if bench is None or bench.status in ("missing", "skipped"):
            judged.append(Judgement(name, value, units, expected, "not run"))
            continue
        value = getattr(bench, reference.metric)
        judged.append(Judgement(name, value, units, expected, _verdict(value, expected)))
    if reference.score is not None:
        score = reference.score
        partial = any(j.verdict == "not run" for j in judged)
        verdict: Verdict = "not comparable" if partial else _verdict(report.score, score)
        judged.append(Judgement("score", report.score, None, score, verdict))
    return judged


def outside(judgements: Iterable[Judgement]) -> list[Judgement]:
    """Judgements that fail: below, above, or no value from a benchmark that ran."""
    return [j for j in judgements if not j.within and j.verdict not in UNJUDGED]


# --- rendering -----------------------------------------------------------------------------

HEADERS = ("bench", "measured", "units", "reference", "unit", "bounds", "ratio", "verdict")


def _fmt(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:,.4g}"


def _bounds(expected: ReferenceValue) -> str:
    low = "-∞" if expected.lower is None else f"{expected.lower:+.0%}"
    high = "+∞" if expected.upper is None else f"{expected.upper:+.0%}"
    return f"[{low}, {high}]"


def _cells(j: Judgement) -> list[str]:
    return [
        j.name,
        _fmt(j.measured),
        j.units or "",
        _fmt(j.expected.value),
        j.expected.unit,
        _bounds(j.expected),
        _fmt(j.ratio),
        j.verdict,
    ]


def table(judgements: Sequence[Judgement], reference: Reference) -> Table:
    """The judgements as a rich Table; rows outside their bounds in red."""
    from rich.table import Table
    from rich.text import Text

    within = sum(j.within for j in judgements)
    result = Table(
        title=Text(f"Reference: {reference.system} ({reference.metric})"),
        caption=Text(f"{within} of {len(judgements)} within tolerance"),
    )
    for header in HEADERS:
        result.add_column(
            header, justify="left" if header in ("bench", "units", "unit") else "right"
        )
    for j in judgements:
        style = None if j.within else "dim" if j.verdict in UNJUDGED else "red"
        result.add_row(*(Text(c) for c in _cells(j)), style=style)
    return result


def to_json(judgements: Sequence[Judgement], reference: Reference) -> dict[str, Any]:
    """JSON-ready (NaN and infinite bounds → null)."""

    def finite(value: float) -> float | None:
        return value if math.isfinite(value) else None

    return {
        "system": reference.system,
        "metric": reference.metric,
        "within": not outside(judgements),
        "benchmarks": [
            {
                "name": j.name,
                "measured": finite(j.measured),
                "units": j.units,
                "reference": j.expected.value,
                "unit": j.expected.unit,
                "lower": j.expected.lower,
                "upper": j.expected.upper,
                "low": finite(j.expected.low),
                "high": finite(j.expected.high),
                "ratio": finite(j.ratio),
                "verdict": j.verdict,
                "source": j.expected.source,
            }
            for j in judgements
        ],
    }


def to_markdown(judgements: Sequence[Judgement], reference: Reference) -> str:
    rows = ["| " + " | ".join(HEADERS) + " |", "|---|---:|---|---:|---|---:|---:|---|"]
    rows += ["| " + " | ".join(c.replace("|", "\\|") for c in _cells(j)) + " |" for j in judgements]
    title = f"## Reference: {reference.system} ({reference.metric})"
    return "\n".join([title, "", *rows]) + "\n"
