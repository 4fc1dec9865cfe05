"""Results → per-benchmark summaries, the Milabench score, comparisons, and their renderings.

Loads mbctl run directories, Milabench run folders (``<bench>.<tag>.data`` files) and zips
of either; scores them with the rules of Milabench's ``summary.py``/``report.py`` (see
``summarize``); renders reports as rich tables, JSON, CSV, Markdown and self-contained HTML.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import os
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Final, Literal

from orchestrator.errors import ResultsError
from orchestrator.results import EVENTS_SUFFIX, META_FILE, RunDir, iter_jsonl, read_events

if TYPE_CHECKING:
    from rich.table import Table

nan: Final = math.nan
PASS_THRESHOLD: Final = 0.01
MILABENCH_SUFFIX: Final = ".data"

Metric = Literal["perf", "throughput", "score"]


# --- data model ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchmarkSpec:
    """A benchmark the suite scores, whether or not it ran (meta.json ``suite.benchmarks``)."""

    name: str
    weight: float
    enabled: bool = True
    reason: str | None = None


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
    gpudata: list[dict[str, Any]] = field(default_factory=list)
    early_stop: bool = False
    return_code: int | None = None
    nolog: bool = False
    status: str | None = None
    reason: str | None = None

    @property
    def nan_loss(self) -> bool:
        return any(math.isnan(loss) for loss in self.losses)

    @property
    def success(self) -> bool:
        """Milabench's rule: stopped early, or exited 0 with a training rate and no NaN loss."""
        return (
            self.early_stop
            or self.nolog
            or (self.return_code == 0 and not self.nan_loss and bool(self.rates))
        )

    def failure(self) -> str:
        """Why the job did not succeed, in a few words."""
        if self.reason:
            return self.reason
        if self.return_code is None:
            return "did not finish"
        if self.return_code != 0:
            return f"exit code {self.return_code}"
        if self.nan_loss:
            return "NaN loss"
        return "no training rate"


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


@dataclass
class RateSeries:
    """The training rates of one job over time, for the report's plots."""

    job: str
    device: str | None
    values: list[float]
    times: list[float] | None = None
    """Seconds since the job's first rate; None when the source has no timestamps."""


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
    status: Literal["ok", "partial", "failed", "missing"]
    reason: str | None = None


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

    @property
    def label(self) -> str:
        return " + ".join(r.label for r in self.runs) or "report"

    def benchmark(self, name: str) -> BenchmarkSummary | None:
        return next((b for b in self.benchmarks if b.name == name), None)


@dataclass
class ComparisonRow:
    name: str
    units: str | None
    base: float
    values: list[float]
    ratios: list[float]


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


# --- loading -------------------------------------------------------------------------------


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _return_code(value: object) -> int | None:
    """An exit code as Milabench compares it (``== 0``): ints and integral floats."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _sample_of(devices: object, device: str | None) -> dict[str, Any] | None:
    """A telemetry sample restricted to the job's device (Milabench's ``gpudata`` filter)."""
    if not isinstance(devices, dict):
        return None
    sample = {str(k): v for k, v in devices.items() if k != "time"}
    if device is None:
        return sample
    return {device: sample[device]} if device in sample else None


def milabench_job(events: Iterable[dict[str, Any]], source: str) -> JobResult | str:
    """One ``.data`` file as Milabench's ``aggregate`` reads it, or why Milabench ignores it."""
    config: Any = None
    starts: list[Any] = []
    ends: list[Any] = []
    early_stop = False
    rates: list[float] = []
    times: list[float | None] = []
    losses: list[float] = []
    gpudata: list[Any] = []
    units: str | None = None
    for entry in events:
        event, data = entry.get("event"), entry.get("data")
        if event == "config":
            config = data
        elif event == "data" and isinstance(data, dict):
            if "rate" in data and data.get("task") == "train":
                rate = _number(data["rate"])
                if rate is not None:
                    rates.append(rate)
                    times.append(_number(data.get("time")))
                if units is None and isinstance(data.get("units"), str):
                    units = data["units"]
            if "loss" in data and (loss := _number(data["loss"])) is not None:
                losses.append(loss)
            if "gpudata" in data:
                gpudata.append(data["gpudata"])
        elif event == "stop":
            early_stop = True
        elif event == "start":
            starts.append(data)
        elif event == "end":
            ends.append(data)
    if not isinstance(config, dict) or not isinstance(config.get("name"), str):
        return "not a run (no config event with a name)"
    if len(starts) != 1 or len(ends) != 1:
        return f"did not finish cleanly ({len(starts)} start and {len(ends)} end events)"
    start, end = starts[0], ends[0]
    if not (isinstance(start, dict) and isinstance(end, dict) and "return_code" in end):
        return "start/end events without data"
    if _number(start.get("time")) is None or _number(end.get("time")) is None:
        return "start/end events without a time"
    device = None if config.get("device") is None else str(config["device"])
    plan = config.get("plan")
    method = plan.get("method", "per_gpu") if isinstance(plan, dict) else "per_gpu"
    devices = config.get("devices")
    local = len(devices) if method == "njobs" and isinstance(devices, list) else 1
    machines = config.get("num_machines", 1)
    tag = config.get("tag")
    return JobResult(
        job_id=".".join(str(t) for t in tag) if isinstance(tag, list) and tag else config["name"],
        bench=config["name"],
        source=source,
        weight=_number(config.get("weight")) or 0.0,
        enabled=bool(config.get("enabled", False)),
        group=str(config.get("group", config["name"])),
        device=device,
        ngpu=(machines if isinstance(machines, int) else 1) * local,
        rates=rates,
        rate_times=times,
        units=units,
        losses=losses,
        gpudata=[s for s in (_sample_of(g, device) for g in gpudata) if s is not None],
        early_stop=early_stop,
        return_code=_return_code(end["return_code"]),
        nolog=isinstance(tag, list) and "nolog" in tag,
    )


def _own_sample(devices: object, device: str | None) -> dict[str, Any] | None:
    """A ``gpu`` event of a per-GPU job keyed by the job's device.

    Containers renumber devices from 0, so a single-device sample is the job's device
    whatever its key.
    """
    if not isinstance(devices, dict) or not devices:
        return None
    if device is None or device in devices:
        return _sample_of(devices, device)
    if len(devices) == 1:
        return {device: next(iter(devices.values()))}
    return None


def mbctl_job(events: Iterable[dict[str, Any]], source: str, job_id: str) -> JobResult | str:
    """One job of an mbctl run directory, or why it cannot be read."""
    job: Any = None
    result: JobResult | None = None
    for ev in events:
        kind = ev.get("event")
        if kind == "config":
            job = ev.get("job")
            if not isinstance(job, dict) or not isinstance(job.get("bench"), str):
                return "config event without a job"
            devices = [str(d) for d in job.get("devices") or ()]
            per_gpu = job.get("plan") == "per_gpu"
            result = JobResult(
                job_id=str(job.get("id", job_id)),
                bench=job["bench"],
                source=source,
                weight=_number(job.get("weight")) or 0.0,
                enabled=bool(job.get("enabled", True)),
                group=job["bench"],
                device=devices[0] if per_gpu and devices else None,
                ngpu=(1 if per_gpu else max(len(devices), 1)) * int(_number(job.get("nodes")) or 1),
                units=job.get("unit") if isinstance(job.get("unit"), str) else None,
            )
        elif result is None:
            continue
        elif kind == "rate":
            value = _number(ev.get("value"))
            if value is not None and ev.get("task") == "train":
                result.rates.append(value)
                result.rate_times.append(_number(ev.get("t")))
                if isinstance(ev.get("units"), str):
                    result.units = ev["units"]
        elif kind == "loss" and (loss := _number(ev.get("value"))) is not None:
            result.losses.append(loss)
        elif kind == "gpu" and (sample := _own_sample(ev.get("devices"), result.device)):
            result.gpudata.append(sample)
        elif kind == "end" and ev.get("status") == "early_stop":
            result.early_stop = True
        elif kind == "exit":
            result.return_code = _return_code(ev.get("return_code"))
            result.status = str(ev.get("status"))
            result.reason = ev.get("reason") if isinstance(ev.get("reason"), str) else None
    if result is None:
        return "no config event"
    if result.status is None:
        result.status = "incomplete"
        result.reason = "did not finish (no exit event)"
    return result


def _specs(meta: dict[str, Any]) -> list[BenchmarkSpec]:
    suite = meta.get("suite")
    table = suite.get("benchmarks") if isinstance(suite, dict) else None
    plan = meta.get("plan")
    skipped = plan.get("skipped") if isinstance(plan, dict) else None
    reasons = {
        s["bench"]: str(s.get("reason"))
        for s in skipped or ()
        if isinstance(s, dict) and isinstance(s.get("bench"), str)
    }
    return [
        BenchmarkSpec(
            name=b["name"],
            weight=_number(b.get("weight")) or 0.0,
            enabled=bool(b.get("enabled", True)),
            reason=reasons.get(b["name"]),
        )
        for b in table or ()
        if isinstance(b, dict) and isinstance(b.get("name"), str)
    ]


def _collect(run: RunData, items: Iterable[tuple[str, JobResult | str]]) -> RunData:
    for source, job in items:
        if isinstance(job, str):
            run.notes.append(f"{source}: ignored, {job}")
        else:
            run.jobs.append(job)
    return run


def _load_mbctl_dir(path: Path) -> RunData:
    rundir = RunDir.open(path)
    meta = rundir.meta()
    run = RunData(str(path), "mbctl", str(meta.get("run_id", path.name)), meta, [], _specs(meta))
    paths = {j: rundir.events_path(j) for j in rundir.job_ids()}
    jobs = ((str(p), mbctl_job(read_events(p), str(p), j)) for j, p in paths.items())
    return _collect(run, jobs)


def _load_milabench_dir(path: Path) -> RunData | None:
    files = sorted(
        Path(parent) / name
        for parent, _, names in os.walk(path)
        for name in names
        if name.endswith(MILABENCH_SUFFIX)
    )
    if not files:
        return None
    run = RunData(str(path), "milabench", path.name, {}, [])
    return _collect(run, ((str(f), milabench_job(read_events(f), str(f))) for f in files))


def _zip_lines(zf: zipfile.ZipFile, name: str) -> list[dict[str, Any]]:
    with zf.open(name) as raw:
        return list(iter_jsonl(io.TextIOWrapper(raw, encoding="utf-8", errors="replace")))


def _load_zip(path: Path) -> list[RunData]:
    runs: list[RunData] = []
    with zipfile.ZipFile(path) as zf:
        names = sorted(n for n in zf.namelist() if not n.endswith("/"))
        roots = sorted(
            str(PurePosixPath(n).parent) for n in names if PurePosixPath(n).name == META_FILE
        )
        for root in roots:
            prefix = "" if root == "." else root + "/"
            try:
                meta = json.loads(zf.read(prefix + META_FILE).decode("utf-8", "replace"))
            except ValueError:
                meta = None
            if not isinstance(meta, dict):
                raise ResultsError(f"{path}: {prefix}{META_FILE} is not a JSON object")
            label = str(meta.get("run_id", PurePosixPath(root).name or path.stem))
            run = RunData(f"{path}:{prefix}", "mbctl", label, meta, [], _specs(meta))
            members = [
                n
                for n in names
                if n.startswith(prefix)
                and "/" not in n[len(prefix) :]
                and n.endswith(EVENTS_SUFFIX)
            ]
            jobs = (
                (
                    f"{path}:{n}",
                    mbctl_job(
                        _zip_lines(zf, n), f"{path}:{n}", n[len(prefix) : -len(EVENTS_SUFFIX)]
                    ),
                )
                for n in members
            )
            runs.append(_collect(run, jobs))
        data = [n for n in names if n.endswith(MILABENCH_SUFFIX)]
        if data:
            run = RunData(str(path), "milabench", path.stem, {}, [])
            items = ((f"{path}:{n}", milabench_job(_zip_lines(zf, n), f"{path}:{n}")) for n in data)
            runs.append(_collect(run, items))
    return runs


def load(paths: Sequence[str | Path]) -> list[RunData]:
    """Read every path: an mbctl run directory, a Milabench run folder, or a zip of either.

    ResultsError names the first path that is missing, unreadable or holds no results.
    """
    runs: list[RunData] = []
    for raw in paths:
        path = Path(raw)
        try:
            if not path.exists():
                raise ResultsError(f"no such run directory or file: {path}")
            if path.is_file():
                if not zipfile.is_zipfile(path):
                    raise ResultsError(f"{path} is neither a run directory nor a zip of one")
                found = _load_zip(path)
            elif (path / META_FILE).exists():
                found = [_load_mbctl_dir(path)]
            else:
                milabench = _load_milabench_dir(path)
                found = [milabench] if milabench else []
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError) as exc:
            raise ResultsError(f"cannot read {path}: {exc}") from exc
        except RuntimeError as exc:  # zipfile's answer to an encrypted member
            raise ResultsError(f"cannot read {path}: {exc}") from exc
        if not found:
            raise ResultsError(
                f"{path} holds no results (no {META_FILE}, no Milabench {MILABENCH_SUFFIX} files)"
            )
        runs.extend(found)
    return runs


# --- scoring -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    min: float
    q1: float
    median: float
    q3: float
    max: float
    mean: float
    std: float
    sem: float


NAN_STATS: Final = Stats(nan, nan, nan, nan, nan, nan, nan, nan)


def metrics(xs: Sequence[float]) -> Stats:
    """Milabench's ``_metrics``: drop one min and one max from 5 samples on, then
    quartiles (``np.percentile``), mean, population std and sem = std / sqrt(n)."""
    import numpy as np

    values = sorted(xs)
    if len(values) >= 5:
        values = values[1:-1]
    if not values:
        return NAN_STATS
    q = np.percentile(values, [0, 25, 50, 75, 100])
    std = np.std(values)
    return Stats(
        min=float(q[0]),
        q1=float(q[1]),
        median=float(q[2]),
        q3=float(q[3]),
        max=float(q[4]),
        mean=float(np.mean(values)),
        std=float(std),
        sem=float(std / len(values) ** 0.5),
    )


def _ratio(num: float, den: float) -> float:
    """``num / den`` as numpy divides float64s (x/0 is inf or nan, never an exception)."""
    if den == 0:
        return nan if num == 0 or math.isnan(num) else math.copysign(math.inf, num)
    return num / den


def _peak_memory(jobs: Sequence[JobResult]) -> float:
    """Largest per-device ``max`` of used memory; samples at 1 MiB or with load 0 are idle."""
    memory: dict[str, list[float]] = {}
    for job in jobs:
        for sample in job.gpudata:
            for device, data in sample.items():
                used = data.get("memory") if isinstance(data, dict) else None
                if not isinstance(used, list | tuple) or not used:
                    continue
                value = _number(used[0])
                if value is None or value == 1 or data.get("load") == 0:
                    continue
                memory.setdefault(device, []).append(value)
    return max((metrics(values).max for values in memory.values()), default=nan)


def _summarize_bench(
    name: str, jobs: Sequence[JobResult], spec: BenchmarkSpec | None
) -> BenchmarkSummary:
    last = jobs[-1]  # Milabench's _merge keeps the config of the last job read
    rates = [r for job in jobs for r in job.rates]
    per_gpu: dict[str, list[float]] = {}
    for job in jobs:
        if job.device is not None:
            for rate in job.rates:
                per_gpu.setdefault(job.device, []).append(rate)
    stats = metrics(rates)
    per_device = {device: metrics(values).mean for device, values in per_gpu.items()}
    acc = 0.0
    for mean in per_device.values():
        acc += mean
    throughput = acc if acc > 0 else stats.mean
    n = len(jobs)
    failed = [job for job in jobs if not job.success]
    fail = len(failed)
    if not failed:
        status: Literal["ok", "partial", "failed"] = "ok"
        reason = None
    else:
        status = "failed" if fail == n else "partial"
        why = sorted({job.failure() for job in failed})
        reason = "; ".join(why) + f" ({fail}/{n} jobs)"
    return BenchmarkSummary(
        name=name,
        n=n,
        fail=fail,
        nan=sum(job.nan_loss for job in jobs),
        perf=stats.mean,
        std=stats.std,
        sem=stats.sem,
        std_pct=_ratio(stats.std, stats.mean),
        sem_pct=_ratio(stats.sem, stats.mean),
        min=stats.min,
        q1=stats.q1,
        median=stats.median,
        q3=stats.q3,
        max=stats.max,
        peak_memory=_peak_memory(jobs),
        per_device=per_device,
        throughput=throughput,
        score=throughput * (1 - fail / max(n, 1)),
        weight=spec.weight if spec else last.weight,
        enabled=spec.enabled if spec else last.enabled,
        units=next((job.units for job in jobs if job.units), None),
        ngpu=max(job.ngpu for job in jobs),
        group=last.group,
        status=status,
        reason=reason,
    )


def _missing(spec: BenchmarkSpec) -> BenchmarkSummary:
    return BenchmarkSummary(
        name=spec.name,
        n=0,
        fail=0,
        nan=0,
        perf=nan,
        std=nan,
        sem=nan,
        std_pct=nan,
        sem_pct=nan,
        min=nan,
        q1=nan,
        median=nan,
        q3=nan,
        max=nan,
        peak_memory=nan,
        per_device={},
        throughput=nan,
        score=nan,
        weight=spec.weight,
        enabled=spec.enabled,
        units=None,
        ngpu=0,
        group=spec.name,
        status="missing",
        reason=spec.reason or "did not run",
    )


def global_score(benchmarks: Sequence[BenchmarkSummary]) -> tuple[float, float]:
    """Milabench's weighted geometric mean ``exp(Σ wᵢ·ln(1 + scoreᵢ) / Σ wᵢ)`` and ``Σ wᵢ``.

    ``wᵢ`` is the weight of an enabled benchmark (0 when disabled); a NaN score (no
    successful rate, or the benchmark did not run) counts as 0. NaN when ``Σ wᵢ`` is 0.
    """
    import numpy as np

    scores = np.array([0.0 if math.isnan(b.score) else b.score for b in benchmarks], dtype=float)
    weights = np.array([b.weight * int(b.enabled) for b in benchmarks], dtype=float)
    total = float(np.sum(weights))
    if total == 0:
        return nan, total
    with np.errstate(all="ignore"):
        terms = np.log(scores + 1) * weights
    return float(np.exp(np.nansum(terms) / total)), total


def _rate_series(job: JobResult) -> RateSeries:
    times: list[float] | None = None
    stamps = [t for t in job.rate_times if t is not None]
    if stamps and len(stamps) == len(job.rates):
        times = [t - stamps[0] for t in stamps]
    return RateSeries(job.job_id, job.device, list(job.rates), times)


def summarize(
    runs: Iterable[RunData | JobResult], *, expected: Sequence[BenchmarkSpec] | None = None
) -> Report:
    """Score runs (merged into one report) the way Milabench's report does.

    Per job: success = early stop, or exit code 0 with a training rate and no NaN loss.
    Per benchmark (all its jobs pooled): n jobs, ``fail``, the rate statistics of
    ``metrics``, ``per_device`` means for per-GPU jobs, ``throughput`` = Σ per-device means
    (or ``perf`` when there are none), ``score`` = throughput * (1 - fail/n). Weights and
    enabled flags come from ``expected`` (default: the suites in the runs' meta.json, whose
    benchmarks count even when they never ran), else from the jobs' own config.
    """
    jobs: list[JobResult] = []
    infos: list[RunInfo] = []
    notes: list[str] = []
    specs: dict[str, BenchmarkSpec] = {}
    for item in runs:
        if isinstance(item, JobResult):
            jobs.append(item)
            continue
        jobs.extend(item.jobs)
        infos.append(RunInfo(item.source, item.kind, item.label, len(item.jobs)))
        notes.extend(item.notes)
        for spec in item.expected:
            specs.setdefault(spec.name, spec)
    if expected is not None:
        specs = {spec.name: spec for spec in expected}
    by_bench: dict[str, list[JobResult]] = {}
    for job in jobs:
        by_bench.setdefault(job.bench, []).append(job)
    summaries = [_summarize_bench(n, js, specs.get(n)) for n, js in by_bench.items()]
    summaries += [_missing(s) for n, s in specs.items() if n not in by_bench and s.enabled]
    summaries.sort(key=lambda b: b.name)
    summaries.sort(key=lambda b: b.group)
    score, total = global_score(summaries)
    n = sum(b.n for b in summaries)
    failure_rate = sum(b.fail for b in summaries) / max(n, 1)
    return Report(
        benchmarks=summaries,
        score=score,
        failure_rate=failure_rate,
        passed=failure_rate <= PASS_THRESHOLD,
        total_weight=total,
        runs=infos,
        samples={name: [_rate_series(j) for j in js if j.rates] for name, js in by_bench.items()},
        notes=notes,
    )


def report(
    paths: Sequence[str | Path], *, expected: Sequence[BenchmarkSpec] | None = None
) -> Report:
    """``summarize(load(paths))``: one report over every path."""
    return summarize(load(paths), expected=expected)


def _metric(bench: BenchmarkSummary | None, metric: Metric) -> float:
    if bench is None or bench.status == "missing":
        return nan
    value: float = getattr(bench, metric)
    return value


def compare(base: Report, others: Sequence[Report], *, metric: Metric = "perf") -> Comparison:
    """Ratios to ``base`` per benchmark (of ``metric``) and of the global score."""
    names = [b.name for b in base.benchmarks]
    for other in others:
        names += [b.name for b in other.benchmarks if b.name not in names]
    rows = []
    for name in names:
        ref = base.benchmark(name)
        value = _metric(ref, metric)
        values = [_metric(o.benchmark(name), metric) for o in others]
        units = (
            ref.units
            if ref and ref.units
            else next((b.units for o in others if (b := o.benchmark(name)) and b.units), None)
        )
        rows.append(ComparisonRow(name, units, value, values, [_ratio(v, value) for v in values]))
    return Comparison(
        base=base.label,
        others=[o.label for o in others],
        metric=metric,
        rows=rows,
        score_base=base.score,
        scores=[o.score for o in others],
        score_ratios=[_ratio(o.score, base.score) for o in others],
    )


# --- rendering -----------------------------------------------------------------------------


def _missing_value(value: float | None) -> bool:
    return value is None or math.isnan(value)


def _fmt(value: float | None, spec: str = ".2f", missing: str = "—") -> str:
    return missing if value is None or math.isnan(value) else format(value, spec)


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


def to_json(report: Report, *, samples: bool = False) -> dict[str, Any]:
    """A JSON-ready object (NaN → null): ``score``, ``failure_rate``, ``passed``, ``benchmarks``..."""
    obj: dict[str, Any] = {
        "score": report.score,
        "failure_rate": report.failure_rate,
        "passed": report.passed,
        "total_weight": report.total_weight,
        "benchmarks": [asdict(b) for b in report.benchmarks],
        "runs": [asdict(r) for r in report.runs],
        "notes": list(report.notes),
    }
    if samples:
        obj["samples"] = {k: [asdict(s) for s in v] for k, v in report.samples.items()}
    result: dict[str, Any] = _json_value(obj)
    return result


CSV_COLUMNS: Final = (
    "name", "status", "n", "fail", "nan", "perf", "units", "std", "sem", "std_pct", "sem_pct",
    "min", "q1", "median", "q3", "max", "peak_memory", "throughput", "score", "weight",
    "enabled", "ngpu", "group", "reason",
)  # fmt: skip


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if isinstance(v, float) and not math.isfinite(v) else v for v in row])
    return out.getvalue()


def to_csv(report: Report) -> str:
    """One row per benchmark (empty cells for missing values); the score is in to_json."""
    rows = (
        [getattr(b, c) if c != "reason" else (b.reason or "") for c in CSV_COLUMNS]
        for b in report.benchmarks
    )
    return _csv(CSV_COLUMNS, rows)


def _perf_cell(b: BenchmarkSummary) -> str:
    return "missing" if b.status == "missing" else _fmt(b.perf)


def _row_cells(b: BenchmarkSummary) -> list[str]:
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
        _fmt(b.score),
        _fmt(b.weight),
        b.status if not b.reason else f"{b.status}: {b.reason}",
    ]


HEADERS: Final = (
    "bench", "n", "fail", "NaN", "perf", "units", "std%", "sem%", "peak_memory", "score",
    "weight", "status",
)  # fmt: skip


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]], right: Sequence[bool]) -> str:
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---:" if r else "---" for r in right) + "|")
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(report: Report) -> str:
    right = [h not in ("bench", "units", "status") for h in HEADERS]
    table = _md_table(HEADERS, (_row_cells(b) for b in report.benchmarks), right)
    lines = [
        f"# Benchmark results: {_md_escape(report.label)}",
        "",
        table,
        "",
        f"**Score**: {_fmt(report.score)}  ",
        f"**Failure rate**: {_verdict(report)}",
    ]
    if report.notes:
        lines += ["", *(f"- {_md_escape(note)}" for note in report.notes)]
    return "\n".join(lines) + "\n"


def report_table(report: Report) -> Table:
    """The breakdown as a rich Table; the score and failure rate are in its caption."""
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title=Text(f"Benchmark results: {report.label}"),
        caption=Text(f"Score: {_fmt(report.score)}   Failure rate: {_verdict(report)}"),
    )
    for header in HEADERS:
        table.add_column(
            header, justify="left" if header in ("bench", "units", "status") else "right"
        )
    for b in report.benchmarks:
        style = {"ok": None, "partial": "yellow", "failed": "red", "missing": "red dim"}[b.status]
        table.add_row(*(Text(c) for c in _row_cells(b)), style=style)
    return table


def _comparison_header(comparison: Comparison) -> list[str]:
    header = ["bench", "units", comparison.base]
    for label in comparison.others:
        header += [label, f"ratio {label}"]
    return header


def _comparison_cells(comparison: Comparison) -> list[list[str]]:
    rows = []
    for row in comparison.rows:
        cells = [row.name, row.units or "", _fmt(row.base, ".2f", "missing")]
        for value, ratio in zip(row.values, row.ratios, strict=True):
            cells += [_fmt(value, ".2f", "missing"), _fmt(ratio, ".2f")]
        rows.append(cells)
    score = ["score", "", _fmt(comparison.score_base)]
    for value, ratio in zip(comparison.scores, comparison.score_ratios, strict=True):
        score += [_fmt(value), _fmt(ratio)]
    return [*rows, score]


def comparison_table(comparison: Comparison) -> Table:
    """The comparison as a rich Table, the global score in its last row."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(f"{comparison.metric} relative to {comparison.base}"))
    for i, header in enumerate(_comparison_header(comparison)):
        table.add_column(Text(header), justify="left" if i < 2 else "right")
    cells = _comparison_cells(comparison)
    for i, row in enumerate(cells):
        table.add_row(*(Text(c) for c in row), style="bold" if i == len(cells) - 1 else None)
    return table


def comparison_to_json(comparison: Comparison) -> dict[str, Any]:
    result: dict[str, Any] = _json_value(asdict(comparison))
    return result


def comparison_to_csv(comparison: Comparison) -> str:
    header = [
        "name",
        "units",
        "base",
        *[f"{k}_{i}" for i in range(len(comparison.others)) for k in ("value", "ratio")],
    ]
    rows = []
    for row in comparison.rows:
        cells: list[Any] = [row.name, row.units or "", row.base]
        for value, ratio in zip(row.values, row.ratios, strict=True):
            cells += [value, ratio]
        rows.append(cells)
    score: list[Any] = ["score", "", comparison.score_base]
    for value, ratio in zip(comparison.scores, comparison.score_ratios, strict=True):
        score += [value, ratio]
    return _csv(header, [*rows, score])


def comparison_to_markdown(comparison: Comparison) -> str:
    header = _comparison_header(comparison)
    table = _md_table(header, _comparison_cells(comparison), [i >= 2 for i in range(len(header))])
    title = f"# {comparison.metric} relative to {_md_escape(comparison.base)}"
    return f"{title}\n\n{table}\n"


# --- HTML ----------------------------------------------------------------------------------

_PALETTE: Final = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
)  # fmt: skip

_CSS: Final = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
tr.missing td, tr.failed td { color: #b00; }
tr.partial td { color: #a60; }
.PASS { color: green; font-weight: bold; }
.FAIL { color: #b00; font-weight: bold; }
.score { color: #1f4e9c; font-weight: bold; }
figure { display: inline-block; margin: 0.5em 1em 0.5em 0; vertical-align: top; }
figcaption { font-size: 0.9em; }
svg text { font-size: 11px; fill: #333; }
"""


def _nice(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _bar_chart(report: Report) -> str:
    """Horizontal bars of each benchmark's score on a log scale (units differ per benchmark)."""
    rows = report.benchmarks
    if not rows:
        return ""
    label_w, bar_w, row_h = 180, 420, 22
    values = [b.score for b in rows if not _missing_value(b.score) and b.score > 0]
    top = math.log10(max(values) * 1.2 + 1) if values else 1.0
    height = row_h * len(rows) + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 160}" '
        f'height="{height}" role="img" aria-label="score per benchmark">'
    ]
    for i, b in enumerate(rows):
        y = 5 + i * row_h
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{html.escape(b.name)}</text>'
        )
        if _missing_value(b.score) or b.score <= 0:
            word = "missing" if b.status == "missing" else "0 (failed)"
            parts.append(f'<text x="{label_w + 4}" y="{y + 15}" fill="#b00">{word}</text>')
            continue
        width = max(1.0, bar_w * math.log10(b.score + 1) / top)
        color = "#1f77b4" if b.status == "ok" else "#e08a00"
        parts.append(
            f'<rect x="{label_w}" y="{y + 3}" width="{width:.1f}" height="{row_h - 6}" '
            f'fill="{color}"><title>{html.escape(b.name)}: {b.score:.2f}</title></rect>'
        )
        unit = html.escape(b.units or "")
        parts.append(
            f'<text x="{label_w + width + 6:.1f}" y="{y + 15}">{_nice(b.score)} {unit}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _line_chart(name: str, series: Sequence[RateSeries], units: str | None) -> str:
    """Rate over time, one polyline per job (x: seconds since its first rate, or sample #)."""
    w, h, left, bottom, top_pad, right_pad = 460, 180, 58, 30, 10, 10
    timed = all(s.times is not None for s in series)
    xs = [x for s in series for x in (s.times if timed and s.times else range(len(s.values)))]
    ys = [v for s in series for v in s.values if math.isfinite(v)]
    if not xs or not ys:
        return ""
    x_max = max(max(xs), 1e-9)
    # The y axis spans the data (not 0..max) so that warm-up, throttling and jitter show.
    pad = (max(ys) - min(ys)) * 0.1 or abs(max(ys)) * 0.05 or 1.0
    y_min, y_max = max(0.0, min(ys) - pad), max(ys) + pad
    plot_w, plot_h = w - left - right_pad, h - bottom - top_pad

    def px(x: float) -> float:
        return left + plot_w * x / x_max

    def py(y: float) -> float:
        return top_pad + plot_h * (1 - (y - y_min) / (y_max - y_min))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" '
        f'aria-label="{html.escape(name)} rate over time">',
        f'<line x1="{left}" y1="{top_pad + plot_h}" x2="{w - right_pad}" y2="{top_pad + plot_h}" stroke="#888"/>',
        f'<line x1="{left}" y1="{top_pad}" x2="{left}" y2="{top_pad + plot_h}" stroke="#888"/>',
        f'<text x="{left - 4}" y="{top_pad + 8}" text-anchor="end">{_nice(y_max)}</text>',
        f'<text x="{left - 4}" y="{top_pad + plot_h}" text-anchor="end">{_nice(y_min)}</text>',
        f'<text x="{w - right_pad}" y="{h - 12}" text-anchor="end">{_nice(x_max)}{" s" if timed else ""}</text>',
        f'<text x="{left}" y="{h - 12}">{"time" if timed else "sample"}</text>',
    ]
    for i, s in enumerate(series):
        x_values = s.times if timed and s.times else [float(k) for k in range(len(s.values))]
        points = " ".join(
            f"{px(x):.1f},{py(y):.1f}"
            for x, y in zip(x_values, s.values, strict=False)
            if math.isfinite(y)
        )
        color = _PALETTE[i % len(_PALETTE)]
        label = html.escape(s.job + (f" (device {s.device})" if s.device is not None else ""))
        parts.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{points}">'
            f"<title>{label}</title></polyline>"
        )
    parts.append("</svg>")
    caption = f"{html.escape(name)} — {html.escape(units or 'rate')}, {len(series)} job(s)"
    return f"<figure>{''.join(parts)}<figcaption>{caption}</figcaption></figure>"


def to_html(report: Report) -> str:
    """A self-contained page: table, score, a bar chart and one rate-over-time plot per benchmark."""
    title = html.escape(f"Benchmark results: {report.label}")
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADERS)
    body = []
    for b in report.benchmarks:
        cells = _row_cells(b)
        tds = "".join(
            f'<td class="text">{html.escape(c)}</td>'
            if h in ("units", "status")
            else f"<td>{html.escape(c)}</td>"
            for h, c in zip(HEADERS, cells, strict=True)
        )
        body.append(f'<tr class="{b.status}">{tds}</tr>')
    verdict = "PASS" if report.passed else "FAIL"
    plots = "".join(
        _line_chart(b.name, report.samples[b.name], b.units)
        for b in report.benchmarks
        if report.samples.get(b.name)
    )
    sources = "".join(
        f"<li>{html.escape(r.source)} ({r.kind}, {r.jobs} jobs)</li>" for r in report.runs
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report.notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title><style>{_CSS}</style></head>
<body>
<h1>{title}</h1>
<p>Score: <span class="score">{_fmt(report.score)}</span> &nbsp;
Failure rate: <span class="{verdict}">{html.escape(_verdict(report))}</span></p>
<h2>Breakdown</h2>
<table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>
<h2>Score per benchmark</h2>
{_bar_chart(report)}
<h2>Training rate over time</h2>
{plots or "<p>No rates were recorded.</p>"}
<h2>Sources</h2>
<ul>{sources}</ul>
{f"<h2>Notes</h2><ul>{notes}</ul>" if notes else ""}
</body></html>
"""


def _ratio_chart(comparison: Comparison) -> str:
    """Horizontal bars of each ratio (one colour per compared run), a line at 1.0."""
    rows = [*((r.name, r.ratios) for r in comparison.rows), ("score", comparison.score_ratios)]
    finite = [v for _, ratios in rows for v in ratios if math.isfinite(v)]
    if not finite:
        return ""
    label_w, bar_w, bar_h = 180, 420, 14
    group_h = bar_h * len(comparison.others) + 8
    top = max(max(finite), 1.0) * 1.1
    height = group_h * len(rows) + 10

    def px(value: float) -> float:
        return label_w + bar_w * value / top

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 80}" '
        f'height="{height}" role="img" aria-label="ratio per benchmark">'
    ]
    for i, (name, ratios) in enumerate(rows):
        y = 5 + i * group_h
        parts.append(
            f'<text x="{label_w - 6}" y="{y + bar_h}" text-anchor="end">{html.escape(name)}</text>'
        )
        for j, ratio in enumerate(ratios):
            yy = y + j * bar_h
            if not math.isfinite(ratio):
                parts.append(
                    f'<text x="{label_w + 4}" y="{yy + bar_h - 3}" fill="#b00">missing</text>'
                )
                continue
            width = max(1.0, px(ratio) - label_w)
            parts.append(
                f'<rect x="{label_w}" y="{yy + 1}" width="{width:.1f}" height="{bar_h - 2}" '
                f'fill="{_PALETTE[j % len(_PALETTE)]}"><title>'
                f"{html.escape(comparison.others[j])}: {ratio:.2f}</title></rect>"
            )
            parts.append(
                f'<text x="{label_w + width + 4:.1f}" y="{yy + bar_h - 3}">{ratio:.2f}</text>'
            )
    one = px(1.0)
    parts.append(
        f'<line x1="{one:.1f}" y1="0" x2="{one:.1f}" y2="{height}" stroke="#444" stroke-dasharray="4 3"/>'
    )
    parts.append("</svg>")
    return "".join(parts)


def comparison_to_html(comparison: Comparison) -> str:
    """A self-contained page: the comparison table and a bar chart of the ratios."""
    title = html.escape(f"{comparison.metric} relative to {comparison.base}")
    header = "".join(f"<th>{html.escape(h)}</th>" for h in _comparison_header(comparison))
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
        for row in _comparison_cells(comparison)
    )
    legend = "".join(
        f'<li style="color: {_PALETTE[j % len(_PALETTE)]}">{html.escape(label)}</li>'
        for j, label in enumerate(comparison.others)
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title><style>{_CSS}</style></head>
<body>
<h1>{title}</h1>
<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>
<h2>Ratios</h2>
<ul>{legend}</ul>
{_ratio_chart(comparison)}
</body></html>
"""
