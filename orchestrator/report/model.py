"""The report's data: what a job measured, one loaded run, a benchmark's row, the report, a comparison."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from orchestrator.results import job_status

nan: Final = math.nan
PASS_THRESHOLD: Final = 0.01
MILABENCH_SUFFIX: Final = ".data"
#: The types of a decoded JSON number (``bool`` is an ``int`` subclass, never a measure).
REAL_TYPES: Final = frozenset({int, float})
_SEQUENCES: Final = frozenset({list, tuple})

Metric = Literal["perf", "throughput", "score"]
Status = Literal["ok", "partial", "failed", "missing", "skipped"]
"""``missing``: the suite scores it but it did not run; ``skipped``: the plan left it out, with
a reason (cannot run on this target, not built yet). Both score 0 (Milabench's rule)."""


@dataclass(frozen=True)
class BenchmarkSpec:
    """A benchmark the suite scores, whether or not it ran (meta.json ``suite.benchmarks``)."""

    name: str
    weight: float
    enabled: bool = True
    reason: str | None = None


@dataclass
class Failure:
    """Why a job failed: a kind a reader can act on and the evidence (a log line, a reason)."""

    kind: Literal[
        "timeout",
        "oom",
        "signal",
        "import",
        "nan",
        "no-rate",
        "exit",
        "incomplete",
        "cancelled",
        "queued",
    ]
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}" if self.detail else self.kind


@dataclass
class JobResult:
    """What one job measured, read from an mbctl ``.jsonl`` or a Milabench ``.data`` file."""

    job_id: str
    bench: str
    source: str
    weight: float
    enabled: bool
    group: str
    device: str | None
    ngpu: int = 1
    rates: list[float] = field(default_factory=list)
    rate_times: list[float | None] = field(default_factory=list)
    units: str | None = None
    losses: list[float] = field(default_factory=list)
    memory: dict[str, list[float]] = field(default_factory=dict)
    """Used device memory (MiB) per device, from the samples that count for ``peak_memory``
    (Milabench leaves out idle ones: 1 MiB, or load 0)."""
    power: dict[str, list[tuple[float | None, float]]] = field(default_factory=dict)
    """(wall-clock time or None, W) per device, from the job's own telemetry samples."""
    early_stop: bool = False
    return_code: int | None = None
    nolog: bool = False
    status: str | None = None
    reason: str | None = None
    started: float | None = None
    ended: float | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    """Device facts of the job's ``start`` event (device name/count, driver, runtime, framework)."""
    log_tail: list[str] = field(default_factory=list)
    """The last lines of the job's untagged output, read only for jobs that failed."""

    def add_sample(self, devices: dict[str, Any], t: float | None) -> None:
        """One telemetry sample (``{device: {memory: [used, total], load, power...}}``)."""
        # type() rather than isinstance: samples are decoded JSON (no int/float subclass but
        # bool), and this runs once per sample of every job
        for device, data in devices.items():
            if type(data) is not dict:
                continue
            used = data.get("memory")
            if type(used) in _SEQUENCES and used:
                value = used[0]
                if type(value) in REAL_TYPES and value != 1 and data.get("load") != 0:
                    self.memory.setdefault(device, []).append(float(value))
            watts: Any = data.get("power")
            if type(watts) in REAL_TYPES:
                self.power.setdefault(device, []).append((t, float(watts)))

    @property
    def nan_loss(self) -> bool:
        return any(math.isnan(loss) for loss in self.losses)

    @property
    def success(self) -> bool:
        """One rule with the CLI and summary.json, ``results.job_status``, applied to what
        the job's events say: an mbctl job's exit status (the runner's verdict, so the rule
        leaves it as it is), or a Milabench job's return code (Milabench has no exit status).
        Milabench's rule inside it: stopped early, or exited 0 with a training rate and no
        NaN loss."""
        if self.nolog:
            return True
        status, _ = job_status(
            self.status or ("ok" if self.return_code == 0 else "failed"),
            self.return_code,
            self.reason,
            early_stop=self.early_stop,
            train_rates=len(self.rates),
            nan_loss=self.nan_loss,
        )
        return status == "ok"

    @property
    def duration(self) -> float | None:
        if self.started is None or self.ended is None or self.ended < self.started:
            return None
        return self.ended - self.started


@dataclass
class RunData:
    """One loaded source: an mbctl run directory or a Milabench folder/zip."""

    source: str
    kind: Literal["mbctl", "milabench"]
    label: str
    meta: dict[str, Any]
    jobs: list[JobResult]
    expected: list[BenchmarkSpec] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    system: dict[str, Any] = field(default_factory=dict)
    """The machine, in sysinfo's shape (meta.json ``system``, or Milabench's ``meta`` event)."""
    host_power: list[tuple[float, str, float]] = field(default_factory=list)
    """Host telemetry power samples (time, device key, W) of mbctl runs, for jobs without own."""


@dataclass
class RateSeries:
    """The training rates of one job over time, for the report's plots."""

    job: str
    device: str | None
    values: list[float]
    times: list[float] | None = None
    """Seconds since the job's first rate; None when the source has no timestamps."""


@dataclass
class PowerSeries:
    """One device's power draw during one job, for the HTML plots."""

    job: str
    device: str
    times: list[float]
    """Seconds since the job's first sample."""
    watts: list[float]


@dataclass
class Energy:
    """What a benchmark drew: energy over its jobs, power per device, work per joule."""

    kj: float
    mean_w: dict[str, float]
    median_w: dict[str, float]
    items_per_joule: float
    """Throughput divided by the summed mean power of its devices (items/s per W = items/J)."""


@dataclass
class BenchmarkSummary:
    """One row of the report (Milabench's ``_summarize`` + ``_make_row``)."""

    name: str
    n: int
    fail: int
    nan: int
    perf: float
    std: float
    sem: float
    std_pct: float
    sem_pct: float
    min: float
    q1: float
    median: float
    q3: float
    max: float
    peak_memory: float
    per_device: dict[str, float]
    throughput: float
    score: float
    weight: float
    enabled: bool
    units: str | None
    ngpu: int
    group: str
    status: Status
    reason: str | None = None
    failures: list[str] = field(default_factory=list)
    """One cause per failed job (``timeout: ...``, ``oom: ...``), in job order."""
    energy: Energy | None = None


@dataclass
class RunInfo:
    source: str
    kind: str
    label: str
    jobs: int


@dataclass
class Report:
    benchmarks: list[BenchmarkSummary]
    score: float
    failure_rate: float
    passed: bool
    total_weight: float
    runs: list[RunInfo]
    samples: dict[str, list[RateSeries]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    system: dict[str, Any] = field(default_factory=dict)
    energy_score: float = nan
    """Milabench's eq. 1 over items per joule instead of items/s; NaN with no power samples."""
    power: dict[str, list[PowerSeries]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return " + ".join(r.label for r in self.runs) or "report"

    def benchmark(self, name: str) -> BenchmarkSummary | None:
        return next((b for b in self.benchmarks if b.name == name), None)


CompareState = Literal["ok", "partial", "failed", "not run", "missing"]
"""Per benchmark and run: ``partial`` (some jobs failed: its value is from the others, flagged),
``failed`` (ran, no successful rate), ``not run`` (its suite scores it but it did not run, or was
skipped), ``missing`` (not part of that run's suite at all)."""


@dataclass
class ComparisonRow:
    name: str
    units: str | None
    base: float
    values: list[float]
    ratios: list[float]
    base_state: CompareState = "ok"
    states: list[CompareState] = field(default_factory=list)


@dataclass
class Comparison:
    """Each benchmark's ``metric`` (and the global score) divided by a baseline report's."""

    base: str
    others: list[str]
    metric: Metric
    rows: list[ComparisonRow]
    score_base: float
    scores: list[float]
    score_ratios: list[float]
    warnings: list[str] = field(default_factory=list)
    """Why the runs are not like for like (suite, profile, vendor, device count differ)."""
