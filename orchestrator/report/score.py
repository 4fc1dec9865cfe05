"""Scoring: Milabench's per-benchmark statistics and global score, energy, and comparisons of runs.

Pure Python (no numpy): ``mbctl report`` works from a bare ``pip install .`` and starts fast.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from orchestrator import sysinfo
from orchestrator.report.causes import classify
from orchestrator.report.load import load
from orchestrator.report.model import (
    PASS_THRESHOLD,
    BenchmarkSpec,
    BenchmarkSummary,
    CompareState,
    Comparison,
    ComparisonRow,
    Energy,
    JobResult,
    Metric,
    PowerSeries,
    RateSeries,
    Report,
    RunData,
    RunInfo,
    Status,
    nan,
)
from orchestrator.telemetry import power_stats

#: Points kept per power plot line: enough to show throttling, small enough for the page.
PLOT_POINTS: Final = 300


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


def _percentile(values: Sequence[float], p: float) -> float:
    """``np.percentile`` (linear interpolation, numpy's own lerp) of sorted ``values``."""
    index = (len(values) - 1) * p / 100
    lo = math.floor(index)
    hi = min(lo + 1, len(values) - 1)
    a, b, t = values[lo], values[hi], index - lo
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


def metrics(xs: Sequence[float]) -> Stats:
    """Milabench's ``_metrics``: drop one min and one max from 5 samples on, then
    quartiles (``np.percentile``), mean, population std and sem = std / sqrt(n)."""
    values = sorted(xs)
    if len(values) >= 5:
        values = values[1:-1]
    if not values:
        return NAN_STATS
    n = len(values)
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / n)
    q = [_percentile(values, p) for p in (0, 25, 50, 75, 100)]
    return Stats(q[0], q[1], q[2], q[3], q[4], mean, std, std / n**0.5)


def _ratio(num: float, den: float) -> float:
    """``num / den`` as numpy divides float64s (x/0 is inf or nan, never an exception)."""
    if den == 0:
        return nan if num == 0 or math.isnan(num) else math.copysign(math.inf, num)
    return num / den


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _peak_memory(jobs: Sequence[JobResult]) -> float:
    """Largest per-device ``max`` of used memory (Milabench's ``metrics``, so with one min and
    one max dropped from 5 samples on); idle samples were left out when read."""
    memory: dict[str, list[float]] = {}
    for job in jobs:
        for device, values in job.memory.items():
            memory.setdefault(device, []).extend(values)
    return max((metrics(values).max for values in memory.values()), default=nan)


def _job_power(
    job: JobResult, host: Sequence[tuple[float, str, float]]
) -> dict[str, list[tuple[float | None, float]]]:
    """(time, W) per device of one job: its own ``gpu`` samples, else the host's samples of its
    devices taken while it ran."""
    if job.power or not host or job.started is None or job.ended is None:
        return job.power
    power: dict[str, list[tuple[float | None, float]]] = {}
    devices = set(job.facts.get("devices") or ())
    for t, device, watts in host:
        if job.started <= t <= job.ended and device in devices:
            power.setdefault(device, []).append((t, watts))
    return power


def _thin(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    step = max(1, math.ceil(len(points) / PLOT_POINTS))
    return list(points[::step])


def _energy(
    jobs: Sequence[JobResult], throughput: float, host: Sequence[tuple[float, str, float]]
) -> tuple[Energy | None, list[PowerSeries]]:
    joules = 0.0
    per_device: dict[str, list[tuple[float | None, float]]] = {}
    series = []
    for job in jobs:
        for device, samples in _job_power(job, host).items():
            stats = power_stats(samples, job.duration)
            if stats is None:
                continue
            joules += stats.joules
            per_device.setdefault(device, []).extend(samples)
            timed = sorted((t, w) for t, w in samples if t is not None)
            if len(timed) >= 2:
                start = timed[0][0]
                points = _thin([(t - start, w) for t, w in timed])
                series.append(
                    PowerSeries(job.job_id, device, [p[0] for p in points], [p[1] for p in points])
                )
    if not per_device:
        return None, []
    means: dict[str, float] = {}
    medians: dict[str, float] = {}
    for device, samples in per_device.items():
        stats = power_stats(samples, None)
        assert stats is not None  # per_device only holds devices with samples
        means[device], medians[device] = stats.mean_w, stats.median_w
    watts = sum(means.values())
    per_joule = throughput / watts if watts > 0 and math.isfinite(throughput) else nan
    return Energy(joules / 1000, means, medians, per_joule), series


def _summarize_bench(
    name: str,
    jobs: Sequence[JobResult],
    spec: BenchmarkSpec | None,
    host: Sequence[tuple[float, str, float]],
) -> tuple[BenchmarkSummary, list[PowerSeries]]:
    last = jobs[-1]  # Milabench's _merge keeps the config of the last job read
    rates = [r for job in jobs for r in job.rates]
    per_gpu: dict[str, list[float]] = {}
    for job in jobs:
        if job.device is not None:
            per_gpu.setdefault(job.device, []).extend(job.rates)
    stats = metrics(rates)
    per_device = {device: metrics(values).mean for device, values in per_gpu.items()}
    acc = 0.0
    for mean in per_device.values():
        acc += mean
    throughput = acc if acc > 0 else stats.mean
    n = len(jobs)
    failed = [job for job in jobs if not job.success]
    fail = len(failed)
    causes = [str(classify(job)) for job in failed]
    status: Status = "ok" if not failed else "failed" if fail == n else "partial"
    reason = "; ".join(sorted(set(causes))) + f" ({fail}/{n} jobs)" if failed else None
    score = throughput * (1 - fail / max(n, 1))
    energy, power = _energy(jobs, score, host)
    summary = BenchmarkSummary(
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
        score=score,
        weight=spec.weight if spec else last.weight,
        enabled=spec.enabled if spec else last.enabled,
        units=next((job.units for job in jobs if job.units), None),
        ngpu=max(job.ngpu for job in jobs),
        group=last.group,
        status=status,
        reason=reason,
        failures=causes,
        energy=energy,
    )
    return summary, power


def _not_run(spec: BenchmarkSpec) -> BenchmarkSummary:
    """An enabled benchmark of the suite with no job: scored 0 and listed with its reason."""
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
        status="skipped" if spec.reason else "missing",
        reason=spec.reason or "did not run",
    )


def _weighted_log_mean(pairs: Iterable[tuple[float, float]]) -> tuple[float, float]:
    """``exp(Σ wᵢ·ln(1 + xᵢ) / Σ wᵢ)`` and ``Σ wᵢ``; a NaN xᵢ counts as 0."""
    total = acc = 0.0
    for value, weight in pairs:
        total += weight
        if weight:
            acc += weight * math.log1p(0.0 if math.isnan(value) else value)
    if total == 0:
        return nan, total
    return math.exp(acc / total), total


def global_score(benchmarks: Sequence[BenchmarkSummary]) -> tuple[float, float]:
    """Milabench's weighted geometric mean ``exp(Σ wᵢ·ln(1 + scoreᵢ) / Σ wᵢ)`` and ``Σ wᵢ``.

    ``wᵢ`` is the weight of an enabled benchmark (0 when disabled); a NaN score (no
    successful rate, the benchmark did not run or was skipped) counts as 0. NaN when ``Σ wᵢ``
    is 0.
    """
    return _weighted_log_mean((b.score, b.weight * int(b.enabled)) for b in benchmarks)


def energy_score(benchmarks: Sequence[BenchmarkSummary]) -> float:
    """Eq. 1 over items per joule (throughput / mean power) instead of items/s; a benchmark
    with no power samples counts as 0, and NaN when none has any."""
    if not any(b.energy for b in benchmarks if b.enabled and b.weight):
        return nan
    pairs = (
        (b.energy.items_per_joule if b.energy else nan, b.weight * int(b.enabled))
        for b in benchmarks
    )
    return _weighted_log_mean(pairs)[0]


def _rate_series(job: JobResult) -> RateSeries:
    times: list[float] | None = None
    stamps = [t for t in job.rate_times if t is not None]
    if stamps and len(stamps) == len(job.rates):
        times = [t - stamps[0] for t in stamps]
    return RateSeries(job.job_id, job.device, list(job.rates), times)


def _system(runs: Sequence[RunData], jobs: Sequence[JobResult]) -> dict[str, Any]:
    """The first run's system, with the images that ran, the nodes that ran them and the
    devices the jobs reported (meta.json ``devices``, else each job's ``start`` event)."""
    system: dict[str, Any] = dict(runs[0].system) if runs else {}
    images = sorted(
        {
            str(job.facts["image"].get("digest") or job.facts["image"].get("id"))
            for job in jobs
            if isinstance(job.facts.get("image"), dict)
            and (job.facts["image"].get("digest") or job.facts["image"].get("id"))
        }
    )
    if images:
        system["images"] = images
    system.update(_nodes_that_ran(system.get("nodes"), jobs))
    by_job: dict[str, Any] = {}
    for run in runs:
        recorded = run.meta.get("devices")
        if isinstance(recorded, dict):
            by_job.update({str(k): v for k, v in recorded.items()})
    for job in jobs:  # the job's own start event, where meta.json has none for it
        if isinstance(job.facts.get("device"), dict):
            by_job.setdefault(job.job_id, job.facts["device"])
    if devices := sysinfo.job_devices(by_job):
        system["devices"] = devices
    return system


def _nodes_that_ran(recorded: Any, jobs: Sequence[JobResult]) -> dict[str, Any]:
    """meta.json's ``nodes`` (name → description) with what the jobs' events add: the GPU
    count of Slurm's exit events, or, without meta.json's, every node the events name."""
    seen: dict[str, dict[str, Any]] = {}
    for job in jobs:
        for node in job.facts.get("nodes") or ():
            if isinstance(node, dict) and node.get("name") is not None:
                entry = seen.setdefault(str(node["name"]), {"jobs": []})
                entry.update({k: v for k, v in node.items() if v is not None})
                if job.job_id not in entry["jobs"]:
                    entry["jobs"].append(job.job_id)
    if isinstance(recorded, dict) and recorded:
        merged = {}
        for name, desc in recorded.items():
            extra = seen.get(str(name), {})
            if isinstance(desc, dict) and extra.get("gpu_count") is not None:
                desc = {**desc, "gpu_count": desc.get("gpu_count", extra["gpu_count"])}
            merged[name] = desc
        return {"nodes": merged}
    if recorded or not seen:
        return {}
    return {"nodes": {name: {"name": name, **seen[name]} for name in sorted(seen)}}


def summarize(
    runs: Iterable[RunData | JobResult], *, expected: Sequence[BenchmarkSpec] | None = None
) -> Report:
    """Score runs (merged into one report) the way Milabench's report does.

    Per job: success = early stop, or exit code 0 with a training rate and no NaN loss.
    Per benchmark (all its jobs pooled): n jobs, ``fail``, the rate statistics of
    ``metrics``, ``per_device`` means for per-GPU jobs, ``throughput`` = Σ per-device means
    (or ``perf`` when there are none), ``score`` = throughput * (1 - fail/n). Weights and
    enabled flags come from ``expected`` (a benchmark it does not list does not count), by
    default from the suites in the runs' meta.json (whose benchmarks count even when they never
    ran or were skipped), else from the jobs' own config.
    """
    jobs: list[JobResult] = []
    loaded: list[RunData] = []
    notes: list[str] = []
    specs: dict[str, BenchmarkSpec] = {}
    host: list[tuple[float, str, float]] = []
    for item in runs:
        if isinstance(item, JobResult):
            jobs.append(item)
            continue
        loaded.append(item)
        jobs.extend(item.jobs)
        notes.extend(item.notes)
        host.extend(item.host_power)
        for spec in item.expected:
            specs.setdefault(spec.name, spec)
    if expected is not None:
        reasons = {name: spec.reason for name, spec in specs.items()}
        specs = {
            s.name: BenchmarkSpec(s.name, s.weight, s.enabled, s.reason or reasons.get(s.name))
            for s in expected
        }
    by_bench: dict[str, list[JobResult]] = {}
    for job in jobs:
        by_bench.setdefault(job.bench, []).append(job)
    summaries = []
    power: dict[str, list[PowerSeries]] = {}
    for name, bench_jobs in by_bench.items():
        found = specs.get(name)
        if found is None and expected is not None:
            # re-scored with a suite that does not have it: listed, but it does not count
            found = BenchmarkSpec(name, 0.0, enabled=False)
        summary, series = _summarize_bench(name, bench_jobs, found, host)
        summaries.append(summary)
        if series:
            power[name] = series
    summaries += [_not_run(s) for n, s in specs.items() if n not in by_bench and s.enabled]
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
        runs=[RunInfo(r.source, r.kind, r.label, len(r.jobs)) for r in loaded],
        samples={name: [_rate_series(j) for j in js if j.rates] for name, js in by_bench.items()},
        notes=notes,
        system=_system(loaded, jobs),
        energy_score=energy_score(summaries),
        power=power,
    )


def report(
    paths: Sequence[str | Path], *, expected: Sequence[BenchmarkSpec] | None = None
) -> Report:
    """``summarize(load(paths))``: one report over every path."""
    return summarize(load(paths), expected=expected)


def _state(bench: BenchmarkSummary | None) -> CompareState:
    if bench is None:
        return "missing"
    if bench.status in ("missing", "skipped"):
        return "not run"
    if bench.status == "failed" or math.isnan(bench.score) or bench.score == 0:
        return "failed"
    return "partial" if bench.status == "partial" else "ok"


#: States whose value is a measurement, so it can be divided (a partial one is flagged).
MEASURED: Final = frozenset({"ok", "partial"})


def _metric(bench: BenchmarkSummary | None, metric: Metric) -> float:
    if _state(bench) not in MEASURED:
        return nan
    value: float = getattr(bench, metric)
    return value


#: What ``compare`` checks is alike between runs before dividing their scores.
_ALIKE: Final = (
    ("suite", ("suite", "name")),
    ("profile", ("suite", "profile")),
    ("vendor", ("vendor",)),
)


def _facts(rep: Report, meta: dict[str, Any] | None) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for label, path in _ALIKE:
        value: Any = meta
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        facts[label] = value
    acc = rep.system.get("accelerators") or {}
    facts["vendor"] = facts["vendor"] or acc.get("vendor")
    facts["device count"] = acc.get("count")
    facts["accelerator"] = acc.get("model")
    return facts


def differences(base: Report, other: Report, metas: tuple[dict[str, Any] | None, ...]) -> list[str]:
    """Why ``other`` is not like ``base``: a sentence per differing fact, and shared benchmarks."""
    a, b = _facts(base, metas[0]), _facts(other, metas[1])
    out = [
        f"{key} differs: {a[key]} vs {b[key]}"
        for key in a
        if a[key] is not None and b[key] is not None and a[key] != b[key]
    ]
    ran_a = {x.name for x in base.benchmarks if x.n}
    ran_b = {x.name for x in other.benchmarks if x.n}
    shared, every = len(ran_a & ran_b), len(ran_a | ran_b)
    if shared < every:
        out.append(f"only {shared} of {every} benchmarks ran in both")
    return [f"{other.label}: {line}" for line in out]


def compare(
    base: Report,
    others: Sequence[Report],
    *,
    metric: Metric = "perf",
    metas: Sequence[dict[str, Any] | None] | None = None,
) -> Comparison:
    """Ratios to ``base`` per benchmark (of ``metric``) and of the global score.

    A benchmark that failed, did not run or is not in a run gets no ratio, only its state;
    ``metas`` (each report's meta.json, base first) let the comparison warn when suite,
    profile, vendor or device count differ.
    """
    names = [b.name for b in base.benchmarks]
    for other in others:
        names += [b.name for b in other.benchmarks if b.name not in names]
    rows = []
    for name in names:
        ref = base.benchmark(name)
        value = _metric(ref, metric)
        benches = [o.benchmark(name) for o in others]
        values = [_metric(b, metric) for b in benches]
        units = next((b.units for b in (ref, *benches) if b is not None and b.units), None)
        rows.append(
            ComparisonRow(
                name,
                units,
                value,
                values,
                [_ratio(v, value) for v in values],
                base_state=_state(ref),
                states=[_state(b) for b in benches],
            )
        )
    all_metas = list(metas) if metas is not None else [None] * (len(others) + 1)
    warnings = [
        line
        for i, other in enumerate(others)
        for line in differences(base, other, (all_metas[0], all_metas[i + 1]))
    ]
    return Comparison(
        base=base.label,
        others=[o.label for o in others],
        metric=metric,
        rows=rows,
        score_base=base.score,
        scores=[o.score for o in others],
        score_ratios=[_ratio(o.score, base.score) for o in others],
        warnings=warnings,
    )


def verdict(rep: Report, fail_under: float | None = None) -> list[str]:
    """Why the run does not pass (empty when it does): failure rate over 1 %, score under
    ``fail_under``."""
    problems = []
    if not rep.passed:
        problems.append(f"failure rate {rep.failure_rate:.2%} is above {PASS_THRESHOLD:.0%}")
    if fail_under is not None and not rep.score >= fail_under:
        problems.append(f"score {rep.score:.2f} is under --fail-under {fail_under:g}")
    return problems
