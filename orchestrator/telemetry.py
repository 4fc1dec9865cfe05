"""Host GPU telemetry: a thread sampling every GPU of the host (NVML, AMD SMI) into the run folder.

Containers renumber their devices from 0, so what a benchmark reports about "device 0" cannot
say which physical GPU it was; this sampler runs outside, on the host, and keys each reading by
the device's UUID and host index. The conversions from the vendor libraries' raw answers are
pure functions, testable without a GPU; the libraries are imported only when a sampler opens.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from orchestrator import vendors
from orchestrator.vendors import Vendor

#: Where the samples go, relative to the run folder: a subfolder, so that the run's
#: ``<job>.jsonl`` files stay the only JSON-lines files at its top level.
TELEMETRY_FILE = Path("telemetry") / "host.jsonl"
DEFAULT_INTERVAL = 5.0
MIB = 1 << 20

Reading = dict[str, Any]
"""One device: ``{"index", "uuid", "name", "memory": [used_MiB, total_MiB], "load": 0..1,
"temperature": °C, "power": W}``; a sensor the device lacks is left out, never a made-up 0."""


def _number(value: Any) -> float | None:
    # AMD SMI answers "N/A" for sensors a device lacks; NVML raises (read as None by _maybe)
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def reading(
    index: int | str,
    uuid: str | None,
    name: str | None,
    memory: tuple[Any, Any] | None,
    load: Any = None,
    temperature: Any = None,
    power: Any = None,
) -> Reading:
    """A reading in the protocol's units (MiB, 0..1, °C, W), keeping only the sensors present."""
    out: Reading = {"index": str(index)}
    if uuid:
        out["uuid"] = uuid
    if name:
        out["name"] = name
    if memory is not None:
        used, total = _number(memory[0]), _number(memory[1])
        if used is not None and total is not None:
            out["memory"] = [used, total]
    for key, value in (("load", load), ("temperature", temperature), ("power", power)):
        number = _number(value)
        if number is not None:
            out[key] = number
    return out


def nvml_reading(
    index: int,
    uuid: str | None,
    name: str | None,
    memory_used: int | None,
    memory_total: int | None,
    utilization: float | None,
    temperature: float | None,
    power_mw: float | None,
) -> Reading:
    """From NVML's raw units: bytes, percent, °C, milliwatts."""
    memory = (
        None
        if memory_used is None or memory_total is None
        else (memory_used / MIB, memory_total / MIB)
    )
    load = None if utilization is None else utilization / 100.0
    power = None if power_mw is None else power_mw / 1000.0
    return reading(index, uuid, name, memory, load, temperature, power)


_AMD_POWER_KEYS = ("current_socket_power", "average_socket_power", "socket_power")


def amdsmi_reading(
    index: int,
    uuid: str | None,
    name: str | None,
    vram: Mapping[str, Any] | None,
    activity: Mapping[str, Any] | None,
    temperature: Any,
    power: Mapping[str, Any] | None,
) -> Reading:
    """From AMD SMI's answers: VRAM in MiB, ``gfx_activity`` in percent, °C, socket power in W."""
    vram = vram or {}
    memory = (vram.get("vram_used"), vram.get("vram_total"))
    gfx = _number((activity or {}).get("gfx_activity"))
    watts = next(
        (w for w in (_number((power or {}).get(k)) for k in _AMD_POWER_KEYS) if w is not None), None
    )
    return reading(
        index, uuid, name, memory, None if gfx is None else gfx / 100.0, temperature, watts
    )


def record(t: float, vendor: str, readings: Sequence[Reading]) -> dict[str, Any]:
    """One line of the telemetry file: a protocol-shaped ``gpu`` event keyed by device UUID
    (the host index when a device has none), so readers of ``gpu`` events read it too."""
    devices = {r.get("uuid") or f"index:{r['index']}": r for r in readings}
    return {"event": "gpu", "t": t, "source": "host", "vendor": vendor, "devices": devices}


def _maybe(read: Callable[..., Any], *args: Any) -> Any:
    # each library has its own exception family (NVMLError_*, AmdSmiException); a sensor that
    # fails must drop only its own field
    try:
        return read(*args)
    except Exception:
        return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


class Source(Protocol):
    """An opened vendor library reading every device of the host."""

    def read(self) -> list[Reading]: ...

    def close(self) -> None: ...


class NvmlSource:
    """Every NVIDIA GPU of the host through pynvml (nvidia-ml-py), in NVML's index order."""

    def __init__(self) -> None:
        import pynvml

        self._nvml = pynvml
        pynvml.nvmlInit()
        self._devices = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            uuid = _text(_maybe(pynvml.nvmlDeviceGetUUID, handle))
            name = _text(_maybe(pynvml.nvmlDeviceGetName, handle))
            self._devices.append((index, uuid, name, handle))

    def read(self) -> list[Reading]:
        nvml = self._nvml
        out = []
        for index, uuid, name, handle in self._devices:
            memory = _maybe(nvml.nvmlDeviceGetMemoryInfo, handle)
            rates = _maybe(nvml.nvmlDeviceGetUtilizationRates, handle)
            out.append(
                nvml_reading(
                    index,
                    uuid,
                    name,
                    None if memory is None else memory.used,
                    None if memory is None else memory.total,
                    None if rates is None else rates.gpu,
                    _maybe(nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU),
                    _maybe(nvml.nvmlDeviceGetPowerUsage, handle),
                )
            )
        return out

    def close(self) -> None:
        _maybe(self._nvml.nvmlShutdown)


class AmdSmiSource:
    """Every AMD GPU of the host through amdsmi, in its processor-handle order."""

    def __init__(self) -> None:
        import amdsmi

        self._smi = amdsmi
        amdsmi.amdsmi_init()
        self._devices = []
        for index, handle in enumerate(amdsmi.amdsmi_get_processor_handles()):
            uuid = _text(_maybe(amdsmi.amdsmi_get_gpu_device_uuid, handle))
            asic = _maybe(amdsmi.amdsmi_get_gpu_asic_info, handle) or {}
            self._devices.append((index, uuid, _text(asic.get("market_name")), handle))

    def _temperature(self, handle: Any) -> Any:
        smi = self._smi
        # MI300-class parts have no edge sensor; they report the hotspot one instead
        for sensor in (smi.AmdSmiTemperatureType.EDGE, smi.AmdSmiTemperatureType.HOTSPOT):
            value = _maybe(
                smi.amdsmi_get_temp_metric, handle, sensor, smi.AmdSmiTemperatureMetric.CURRENT
            )
            if _number(value) is not None:
                return value
        return None

    def read(self) -> list[Reading]:
        smi = self._smi
        return [
            amdsmi_reading(
                index,
                uuid,
                name,
                _maybe(smi.amdsmi_get_gpu_vram_usage, handle),
                _maybe(smi.amdsmi_get_gpu_activity, handle),
                self._temperature(handle),
                _maybe(smi.amdsmi_get_power_info, handle),
            )
            for index, uuid, name, handle in self._devices
        ]

    def close(self) -> None:
        _maybe(self._smi.amdsmi_shut_down)


_SOURCES: dict[Vendor, Callable[[], Source]] = {Vendor.CUDA: NvmlSource, Vendor.ROCM: AmdSmiSource}


def open_source(vendor: str | Vendor) -> tuple[Source | None, str]:
    """The host sampler of ``vendor`` and a note; None (with the reason) where there is none."""
    spec = vendors.get(vendor)
    kind = _SOURCES.get(spec.vendor)
    if kind is None:
        return None, f"host telemetry: none for {spec.vendor.value}"
    try:
        source = kind()
    except Exception as exc:  # ImportError, or the library's own "no driver" exception family
        return None, f"host telemetry: off ({spec.telemetry} unavailable: {exc})"
    return source, f"host telemetry: {spec.telemetry}"


@dataclass
class Sampler:
    """Appends one ``record`` line per ``interval`` to ``path`` from a daemon thread."""

    source: Source
    path: Path
    vendor: str
    interval: float = DEFAULT_INTERVAL
    clock: Callable[[], float] = time.time
    samples: int = field(default=0, init=False)
    error: str | None = field(default=None, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    def start(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.error = f"cannot write {self.path}: {exc.strerror}"
            return
        self._thread = threading.Thread(target=self._loop, name="mbctl-telemetry", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        try:
            with open(self.path, "a", encoding="utf-8") as out:
                while True:
                    self.sample(out)
                    if self._stop.wait(self.interval):
                        break
        except OSError as exc:
            self.error = f"cannot write {self.path}: {exc.strerror}"

    def sample(self, out: IO[str]) -> None:
        """Take one sample now and append it (also the last one, when stopping)."""
        readings = _maybe(self.source.read)
        if readings is None:
            return
        out.write(json.dumps(record(self.clock(), self.vendor, readings)) + "\n")
        out.flush()
        self.samples += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(self.interval, 10.0))
        self.source.close()


@contextmanager
def recording(
    run_dir: Path,
    vendor: str | Vendor,
    *,
    interval: float = DEFAULT_INTERVAL,
    source: Source | None = None,
) -> Iterator[Sampler | None]:
    """Sample the host's GPUs into ``run_dir / TELEMETRY_FILE`` while the block runs.

    Yields None (and writes nothing) where the vendor has no host sampler or its library is
    unusable: telemetry must never stop a run.
    """
    chosen = vendors.get(vendor).vendor
    if source is None:
        source, _ = open_source(chosen)
    if source is None:
        yield None
        return
    sampler = Sampler(source, Path(run_dir) / TELEMETRY_FILE, chosen.value, interval)
    sampler.start()
    try:
        yield sampler
    finally:
        sampler.stop()


# --- energy, from samples already taken -----------------------------------------------------


@dataclass(frozen=True)
class PowerStats:
    """One device during one job: power statistics and the energy drawn."""

    mean_w: float
    median_w: float
    joules: float


def power_stats(
    samples: Sequence[tuple[float | None, float]], duration: float | None
) -> PowerStats | None:
    """``samples`` are (time or None, W). Energy is the mean power times the job's
    ``duration``: samples come at a fixed interval, so their mean is the time-average, and the
    job's own start and end bound it better than the first and last sample do. Without a
    duration, the span of the timed samples stands in. None without samples."""
    watts = sorted(w for _, w in samples)
    if not watts:
        return None
    mean = sum(watts) / len(watts)
    mid = len(watts) // 2
    median = watts[mid] if len(watts) % 2 else (watts[mid - 1] + watts[mid]) / 2
    if duration is None:
        times = [t for t, _ in samples if t is not None]
        duration = max(times) - min(times) if len(times) >= 2 else None
    return PowerStats(mean, median, mean * duration if duration is not None else float("nan"))
