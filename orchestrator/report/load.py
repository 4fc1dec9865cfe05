"""Reading results: mbctl run directories, Milabench run folders (``<bench>.<tag>.data``), zips of either."""

from __future__ import annotations

import gc
import json
import os
import zipfile
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, Final

from orchestrator import sysinfo
from orchestrator.archives import BoundedZip
from orchestrator.errors import ResultsError
from orchestrator.metrics import MAX_RATE
from orchestrator.report.model import (
    MILABENCH_SUFFIX,
    REAL_TYPES,
    BenchmarkSpec,
    JobResult,
    RunData,
)
from orchestrator.results import EVENTS_SUFFIX, LOG_SUFFIX, META_FILE, STDERR_SUFFIX, RunDir
from orchestrator.telemetry import TELEMETRY_FILE

#: Lines of a failed job's output kept to find its cause (the log is read from its end).
LOG_TAIL_LINES: Final = 40
_LOG_TAIL_BYTES: Final = 32 * 1024
#: Keys of a ``start`` event that describe the program, not the device it ran on.
_START_KEYS: Final = frozenset({"event", "t", "bench", "argv", "pid"})
#: What a report keeps of a Kubernetes ``meta`` event's node, and of a Slurm exit event's nodes.
_NODE_KEYS: Final = (
    "name", "labels", "device_resource", "devices", "os", "kernel", "container_runtime",
)  # fmt: skip
_EXIT_NODE_KEYS: Final = ("name", "gpu_product", "gpu_count", "gpu_indices")


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
    if device is None:
        return {str(k): v for k, v in devices.items() if k != "time"}
    if device in devices and device != "time":  # JSON keys are str already
        return {device: devices[device]}
    return None


def _read_lines(path: Path) -> list[str]:
    """Every line of a results file, read at once (a run's files are megabytes, not more)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().split("\n")
    except OSError as exc:
        raise ResultsError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _parse(lines: Iterable[str]) -> Iterable[dict[str, Any]]:
    """JSON objects of ``lines``; a cheap prefix test skips lines that cannot be one."""
    loads = json.loads
    for line in lines:
        if line[:1] == "{":
            try:
                obj = loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(obj, dict):
                yield obj


def milabench_job(events: Iterable[dict[str, Any]], source: str) -> JobResult | str:
    """One ``.data`` file as Milabench's ``aggregate`` reads it, or why Milabench ignores it."""
    job, _ = _milabench_scan((json.dumps(e) for e in events), source)
    return job


#: Line prefixes of the events a report never needs decoded (json.dumps's default spacing, as
#: Milabench writes them): the job's stdout (kept raw for a failure's cause) and progress.
_STDOUT: Final = '{"event": "line"'
_PROGRESS: Final = '"task": "early_stop"'
_META: Final = '{"event": "meta"'


def _milabench_scan(
    lines: Iterable[str], source: str, *, want_meta: bool = True
) -> tuple[JobResult | str, dict[str, Any] | None]:
    """Milabench's ``aggregate`` over one file's lines. Most lines of a run are stdout and
    early-stop progress: they are recognised by prefix and not decoded; nor is the machine's
    ``meta`` unless ``want_meta`` (every file of a run repeats it)."""
    config: Any = None
    meta: dict[str, Any] | None = None
    starts: list[Any] = []
    ends: list[Any] = []
    early_stop = False
    rates: list[float] = []
    times: list[float | None] = []
    losses: list[float] = []
    samples: list[tuple[Any, float | None]] = []
    units: str | None = None
    tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
    keep = []
    for raw in lines:
        if raw.startswith(_STDOUT):
            tail.append(raw)
        elif (
            _PROGRESS in raw
            and '"rate"' not in raw
            and '"gpudata"' not in raw
            and '"loss"' not in raw
        ) or (raw.startswith(_META) and not want_meta):
            continue
        elif raw[:1] == "{":
            keep.append(raw)
    real = REAL_TYPES
    for entry in _decode_all(keep):
        event, data = entry.get("event"), entry.get("data")
        if event == "data" and type(data) is dict:
            # type() rather than _number: decoded JSON holds no int/float subclass but bool
            if "rate" in data and data.get("task") == "train":
                rate = data["rate"]
                if type(rate) in real and 0 <= rate <= MAX_RATE:  # metrics' rule for our runs
                    rates.append(float(rate))
                    t: Any = data.get("time")
                    times.append(float(t) if type(t) in real else None)
                if units is None and isinstance(data.get("units"), str):
                    units = data["units"]
            if "loss" in data and (loss := _number(data["loss"])) is not None:
                losses.append(loss)
            if "gpudata" in data:
                samples.append((data["gpudata"], _number(data.get("time"))))
        elif event == "line" and isinstance(data, str):  # spaced unlike _STDOUT
            tail.append(json.dumps(entry))
        elif event == "config":
            config = data
        elif event == "meta" and isinstance(data, dict) and meta is None:
            meta = data
        elif event == "stop":
            early_stop = True
        elif event == "start":
            starts.append(data)
        elif event == "end":
            ends.append(data)
    if not isinstance(config, dict) or not isinstance(config.get("name"), str):
        return "not a run (no config event with a name)", meta
    if len(starts) != 1 or len(ends) != 1:
        return f"did not finish cleanly ({len(starts)} start and {len(ends)} end events)", meta
    start, end = starts[0], ends[0]
    if not (isinstance(start, dict) and isinstance(end, dict) and "return_code" in end):
        return "start/end events without data", meta
    if _number(start.get("time")) is None or _number(end.get("time")) is None:
        return "start/end events without a time", meta
    device = None if config.get("device") is None else str(config["device"])
    plan = config.get("plan")
    method = plan.get("method", "per_gpu") if isinstance(plan, dict) else "per_gpu"
    devices = config.get("devices")
    local = len(devices) if method == "njobs" and isinstance(devices, list) else 1
    machines = config.get("num_machines", 1)
    tag = config.get("tag")
    job = JobResult(
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
        early_stop=early_stop,
        return_code=_return_code(end["return_code"]),
        nolog=isinstance(tag, list) and "nolog" in tag,
        started=_number(start.get("time")),
        ended=_number(end.get("time")),
    )
    for gpudata, t in samples:
        if (sample := _sample_of(gpudata, device)) is not None:
            job.add_sample(sample, t)
    if not job.success:
        job.log_tail = [line for line in map(_stdout_text, tail) if line]
    return job, meta


def _decode_all(lines: list[str]) -> Iterable[dict[str, Any]]:
    """The JSON objects of ``lines``: one ``json.loads`` of them all as an array (the C
    scanner, without a Python call per line), else line by line past the malformed ones."""
    try:
        batch = json.loads("[" + ",".join(lines) + "]")
    except (ValueError, RecursionError):
        batch = None
    if batch is not None:
        return [e for e in batch if isinstance(e, dict)]
    return _parse(lines)


def _stdout_text(raw: str) -> str:
    try:
        entry = json.loads(raw)
    except (ValueError, RecursionError):
        return ""
    data = entry.get("data") if isinstance(entry, dict) else None
    return data.rstrip("\n") if isinstance(data, str) else ""


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
                started=_number(ev.get("t")),
                facts={"devices": devices} if devices else {},
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
            result.add_sample(sample, _number(ev.get("t")))
        elif kind == "start":
            result.facts.update({k: v for k, v in ev.items() if k not in _START_KEYS})
        elif kind == "meta" and ev.get("kind") == "node" and isinstance(ev.get("node"), dict):
            # Kubernetes: one per rank, naming the node (and its hardware) the pod ran on
            node = ev["node"]
            result.facts.setdefault("nodes", []).append({k: node.get(k) for k in _NODE_KEYS})
        elif kind == "error" and isinstance(ev.get("message"), str):
            kind_name = ev.get("type")
            prefix = f"{kind_name}: " if isinstance(kind_name, str) else ""
            result.log_tail.append(prefix + ev["message"])
        elif kind == "end" and ev.get("status") == "early_stop":
            result.early_stop = True
        elif kind == "exit":
            result.return_code = _return_code(ev.get("return_code"))
            result.status = str(ev.get("status"))
            result.reason = ev.get("reason") if isinstance(ev.get("reason"), str) else None
            result.ended = _number(ev.get("t"))
            if isinstance(ev.get("image"), dict):
                result.facts["image"] = ev["image"]
            if isinstance(ev.get("nodes"), list):  # Slurm: the nodes that ran it, their GPUs
                result.facts.setdefault("nodes", []).extend(
                    {k: n.get(k) for k in _EXIT_NODE_KEYS}
                    for n in ev["nodes"]
                    if isinstance(n, dict)
                )
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


def _host_power(lines: Iterable[str]) -> list[tuple[float, str, float]]:
    """(time, host device index, W) of every host telemetry sample with a power reading."""
    out = []
    for ev in _parse(lines):
        t, devices = _number(ev.get("t")), ev.get("devices")
        if t is None or not isinstance(devices, dict):
            continue
        for key, reading in devices.items():
            if isinstance(reading, dict) and (watts := _number(reading.get("power"))) is not None:
                out.append((t, str(reading.get("index", key)), watts))
    return out


def _tail(read: Callable[[int], bytes]) -> list[str]:
    text = read(_LOG_TAIL_BYTES).decode("utf-8", "replace")
    return [line for line in text.splitlines() if line.strip()][-LOG_TAIL_LINES:]


def _file_tail(*paths: Path) -> list[str]:
    """The last lines of each file that exists (stdout log, then stderr), joined."""
    lines: list[str] = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - _LOG_TAIL_BYTES))
                lines += _tail(f.read)
        except OSError:
            continue
    return lines


def _finish_job(job: JobResult | str, log: Callable[[], list[str]]) -> JobResult | str:
    """Attach the end of a failed job's log, where the cause of the failure is."""
    if isinstance(job, JobResult) and not job.success:
        job.log_tail = [*log(), *job.log_tail][-LOG_TAIL_LINES:]
    return job


def _mbctl_run(source: str, label: str, meta: dict[str, Any]) -> RunData:
    system = meta.get("system")
    return RunData(
        source,
        "mbctl",
        label,
        meta,
        [],
        _specs(meta),
        system=sysinfo.normalize(system if isinstance(system, dict) else {}, meta),
    )


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
    run = _mbctl_run(str(path), str(meta.get("run_id", path.name)), meta)
    telemetry = path / TELEMETRY_FILE
    if telemetry.is_file():
        run.host_power = _host_power(_read_lines(telemetry))
    jobs = []
    for job_id in rundir.job_ids():
        events_path = rundir.events_path(job_id)
        job = mbctl_job(_parse(_read_lines(events_path)), str(events_path), job_id)
        logs = (rundir.log_path(job_id), path / f"{job_id}{STDERR_SUFFIX}")
        jobs.append((str(events_path), _finish_job(job, partial(_file_tail, *logs))))
    return _collect(run, jobs)


def _load_milabench(
    source: str, label: str, files: Iterable[tuple[str, Callable[[], Iterable[str]]]]
) -> RunData:
    run = RunData(source, "milabench", label, {}, [])
    meta: dict[str, Any] | None = None
    for name, lines in files:
        job, job_meta = _milabench_scan(lines(), name, want_meta=meta is None)
        meta = meta or job_meta
        _collect(run, [(name, job)])
    run.system = sysinfo.from_milabench(meta or {})
    return run


def _load_milabench_dir(path: Path) -> RunData | None:
    files = sorted(
        Path(parent) / name
        for parent, _, names in os.walk(path)
        for name in names
        if name.endswith(MILABENCH_SUFFIX)
    )
    if not files:
        return None
    return _load_milabench(str(path), path.name, ((str(f), partial(_read_lines, f)) for f in files))


def _zip_tail(zf: BoundedZip, *names: str) -> list[str]:
    lines: list[str] = []
    for name in names:
        if name in zf:
            lines += _tail(partial(zf.tail, name))
    return lines


def _load_zip(path: Path) -> list[RunData]:
    """Runs in a zip, read as streams under archives' caps (members, sizes, ratio, lines)."""
    runs: list[RunData] = []
    with BoundedZip(path) as zf:
        names = zf.names()
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
            run = _mbctl_run(f"{path}:{prefix}", label, meta)
            if prefix + str(TELEMETRY_FILE) in zf:
                run.host_power = _host_power(zf.lines(prefix + str(TELEMETRY_FILE)))
            members = [
                n
                for n in names
                if n.startswith(prefix)
                and "/" not in n[len(prefix) :]
                and n.endswith(EVENTS_SUFFIX)
            ]
            jobs = []
            for n in members:
                job_id = n[len(prefix) : -len(EVENTS_SUFFIX)]
                job = mbctl_job(_parse(zf.lines(n)), f"{path}:{n}", job_id)
                logs = (prefix + job_id + LOG_SUFFIX, prefix + job_id + STDERR_SUFFIX)
                jobs.append((f"{path}:{n}", _finish_job(job, partial(_zip_tail, zf, *logs))))
            runs.append(_collect(run, jobs))
        data = [n for n in names if n.endswith(MILABENCH_SUFFIX)]
        if data:
            files = ((f"{path}:{n}", partial(zf.lines, n)) for n in data)
            runs.append(_load_milabench(str(path), path.stem, files))
    return runs


def load(paths: Sequence[str | Path]) -> list[RunData]:
    """Read every path: an mbctl run directory, a Milabench run folder, or a zip of either.

    ResultsError names the first path that is missing, unreadable or holds no results.

    The cyclic garbage collector is paused meanwhile: decoded JSON is trees (no cycles to
    find), and its passes over the ~10^5 containers of a large run cost a sixth of the reading.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _load(paths)
    finally:
        if enabled:
            gc.enable()


def _load(paths: Sequence[str | Path]) -> list[RunData]:
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
