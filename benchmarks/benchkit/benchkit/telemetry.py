"""GPU telemetry: NVML/AMD SMI readings turned into protocol ``gpu`` events by a sampling thread."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Protocol, Union

from .protocol import Emitter, default_emitter

MIB = 1 << 20

Reading = dict[str, Any]
"""One device: ``{"memory": [used_MiB, total_MiB], "load": 0..1, "temperature": °C, "power": W}``."""
Sample = dict[str, Reading]
"""Device index as the process sees it (``"0"`` is the first visible device) → its reading."""
Selector = Union[int, str]
"""A physical device: its index in the vendor library's enumeration, or a UUID string."""


class Sampler(Protocol):
    handles: dict[str, Any]

    def sample(self) -> Sample: ...

    def close(self) -> None: ...


def _number(value: Any) -> float | None:
    # Vendor libraries answer "N/A" (AMD) or raise (NVML) for sensors a device lacks.
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _reading(
    used_mib: float, total_mib: float, load: float | None, temperature: Any, power_w: Any
) -> Reading:
    # A sensor the device does not have is left out rather than reported as a made-up 0.
    reading: Reading = {"memory": [used_mib, total_mib]}
    for key, value in (("load", load), ("temperature", temperature), ("power", power_w)):
        number = _number(value)
        if number is not None:
            reading[key] = number
    return reading


def nvml_reading(
    memory_used: int,
    memory_total: int,
    utilization: float | None,
    temperature: float | None,
    power_mw: float | None,
) -> Reading:
    """Convert NVML's raw units (bytes, percent, °C, milliwatts) to the protocol's."""
    load = None if utilization is None else utilization / 100.0
    power = None if power_mw is None else power_mw / 1000.0
    return _reading(memory_used / MIB, memory_total / MIB, load, temperature, power)


_AMD_POWER_KEYS = ("current_socket_power", "average_socket_power", "socket_power")


def amd_reading(
    vram: Mapping[str, Any],
    activity: Mapping[str, Any] | None,
    temperature: Any,
    power: Mapping[str, Any] | None,
) -> Reading:
    """Convert AMD SMI's answers (VRAM in MiB, activity in percent, °C, socket power in W)."""
    used, total = _number(vram.get("vram_used")), _number(vram.get("vram_total"))
    if used is None or total is None:
        raise ValueError(f"no VRAM reading in {dict(vram)!r}")
    gfx = _number((activity or {}).get("gfx_activity"))
    watts = next(
        (w for w in (_number((power or {}).get(k)) for k in _AMD_POWER_KEYS) if w is not None),
        None,
    )
    return _reading(used, total, None if gfx is None else gfx / 100.0, temperature, watts)


def visible_devices(spec: str | None, count: int) -> list[Selector]:
    """The physical devices a ``*_VISIBLE_DEVICES`` value exposes, in process order.

    Follows the CUDA runtime: unset means all, entries are indices or UUIDs, and enumeration
    stops at the first entry that is invalid or out of range.
    """
    if spec is None:
        return list(range(count))
    selected: list[Selector] = []
    for entry in (part.strip() for part in spec.split(",")):
        if entry.isdigit() and int(entry) < count:
            selected.append(int(entry))
        elif entry.startswith(("GPU-", "MIG-")):
            selected.append(entry)
        else:
            break
    return selected


def amd_visible_devices(environ: Mapping[str, str], count: int) -> list[Selector]:
    """ROCR_VISIBLE_DEVICES filters first; HIP_VISIBLE_DEVICES indexes into what remains."""
    runtime = visible_devices(environ.get("ROCR_VISIBLE_DEVICES"), count)
    hip = environ.get("HIP_VISIBLE_DEVICES", environ.get("CUDA_VISIBLE_DEVICES"))
    return [runtime[i] for i in visible_devices(hip, len(runtime)) if isinstance(i, int)]


def _maybe(read: Callable[..., Any], *args: Any) -> Any:
    # Each vendor library has its own exception family (NVMLError_*, AmdSmiException) and an
    # unsupported sensor must only drop that one field.
    try:
        return read(*args)
    except Exception:
        return None


class NvmlSampler:
    """Reads the visible NVIDIA devices through pynvml (nvidia-ml-py)."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        import pynvml

        self._nvml = pynvml
        pynvml.nvmlInit()
        self.handles: dict[str, Any] = {}
        count = pynvml.nvmlDeviceGetCount()
        for index, selector in enumerate(
            visible_devices(environ.get("CUDA_VISIBLE_DEVICES"), count)
        ):
            if isinstance(selector, int):
                handle = pynvml.nvmlDeviceGetHandleByIndex(selector)
            else:
                handle = _maybe(pynvml.nvmlDeviceGetHandleByUUID, selector)
            if handle is not None:
                self.handles[str(index)] = handle

    def sample(self) -> Sample:
        nvml = self._nvml
        out: Sample = {}
        for key, handle in self.handles.items():
            memory = _maybe(nvml.nvmlDeviceGetMemoryInfo, handle)
            if memory is None:
                continue
            utilization = _maybe(nvml.nvmlDeviceGetUtilizationRates, handle)
            out[key] = nvml_reading(
                memory.used,
                memory.total,
                None if utilization is None else utilization.gpu,
                _maybe(nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU),
                _maybe(nvml.nvmlDeviceGetPowerUsage, handle),
            )
        return out

    def close(self) -> None:
        _maybe(self._nvml.nvmlShutdown)


class AmdSampler:
    """Reads the visible AMD devices through amdsmi."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        import amdsmi

        self._smi = amdsmi
        amdsmi.amdsmi_init()
        handles = amdsmi.amdsmi_get_processor_handles()
        self.handles = {
            str(index): handles[selector]
            for index, selector in enumerate(amd_visible_devices(environ, len(handles)))
            if isinstance(selector, int)
        }

    def _temperature(self, handle: Any) -> Any:
        smi = self._smi
        # MI300-class parts have no edge sensor; the hotspot one is what they report instead.
        for sensor in (smi.AmdSmiTemperatureType.EDGE, smi.AmdSmiTemperatureType.HOTSPOT):
            value = _maybe(
                smi.amdsmi_get_temp_metric, handle, sensor, smi.AmdSmiTemperatureMetric.CURRENT
            )
            if _number(value) is not None:
                return value
        return None

    def sample(self) -> Sample:
        smi = self._smi
        out: Sample = {}
        for key, handle in self.handles.items():
            vram = _maybe(smi.amdsmi_get_gpu_vram_usage, handle)
            if vram is None:
                continue
            reading = _maybe(
                amd_reading,
                vram,
                _maybe(smi.amdsmi_get_gpu_activity, handle),
                self._temperature(handle),
                _maybe(smi.amdsmi_get_power_info, handle),
            )
            if reading is not None:
                out[key] = reading
        return out

    def close(self) -> None:
        _maybe(self._smi.amdsmi_shut_down)


def open_sampler(
    environ: Mapping[str, str] = os.environ,
    kinds: Sequence[Callable[[Mapping[str, str]], Sampler]] = (NvmlSampler, AmdSampler),
) -> Sampler | None:
    """The first vendor sampler whose library imports and sees a visible device, else None."""
    for kind in kinds:
        sampler: Sampler | None = _maybe(kind, environ)
        if sampler is None:
            continue
        if sampler.handles:
            return sampler
        sampler.close()
    return None


class GpuMonitor:
    """Daemon thread emitting one ``gpu`` event every ``interval`` seconds from ``sample()``."""

    def __init__(
        self,
        sample: Callable[[], Sample],
        *,
        interval: float = 2.0,
        close: Callable[[], object] | None = None,
        emitter: Emitter | None = None,
    ) -> None:
        self._sample = sample
        self._close = close
        self.interval = interval
        self._emitter = default_emitter() if emitter is None else emitter
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="benchkit-gpu", daemon=True)

    def start(self) -> GpuMonitor:
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            devices = _maybe(self._sample)
            if devices:
                try:
                    self._emitter.emit("gpu", devices=devices)
                except (OSError, ValueError):
                    return  # stdout is gone (reader died, stream closed): nobody to tell
            if self._stopped.wait(self.interval):
                return

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 1.0) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._close is not None:
            self._close()


def start_telemetry(
    interval: float = 2.0, environ: Mapping[str, str] = os.environ
) -> GpuMonitor | None:
    """Start sampling the visible GPUs; None when no vendor library or device is present."""
    sampler = open_sampler(environ)
    if sampler is None:
        return None
    return GpuMonitor(sampler.sample, interval=interval, close=sampler.close).start()
