"""GPU telemetry without a GPU: unit conversions, visible-device mapping, the sampling thread."""

from __future__ import annotations

import sys
import threading
import types
from typing import TYPE_CHECKING, Any

import pytest
from benchkit.telemetry import (
    MIB,
    AmdSampler,
    GpuMonitor,
    NvmlSampler,
    amd_reading,
    amd_visible_devices,
    nvml_reading,
    open_sampler,
    start_telemetry,
    visible_devices,
)

if TYPE_CHECKING:
    from conftest import Captured


def test_nvml_units_become_protocol_units() -> None:
    reading = nvml_reading(3 * 1024 * MIB, 80 * 1024 * MIB, 87, 61, 312_500)
    assert reading == {
        "memory": [3072.0, 81920.0],
        "load": 0.87,
        "temperature": 61.0,
        "power": 312.5,
    }


def test_missing_sensors_are_left_out_not_zeroed() -> None:
    assert nvml_reading(MIB, 2 * MIB, None, None, None) == {"memory": [1.0, 2.0]}


def test_amd_readings_handle_na_and_power_key_variants() -> None:
    reading = amd_reading(
        {"vram_used": 512, "vram_total": 65536},
        {"gfx_activity": 40, "umc_activity": "N/A"},
        55,
        {"current_socket_power": "N/A", "average_socket_power": 210},
    )
    assert reading == {"memory": [512.0, 65536.0], "load": 0.4, "temperature": 55.0, "power": 210.0}
    bare = amd_reading({"vram_used": 1, "vram_total": 2}, {"gfx_activity": "N/A"}, "N/A", None)
    assert bare == {"memory": [1.0, 2.0]}
    with pytest.raises(ValueError, match="no VRAM reading"):
        amd_reading({"vram_used": "N/A", "vram_total": 2}, None, None, None)


@pytest.mark.parametrize(
    ("spec", "count", "expected"),
    [
        (None, 3, [0, 1, 2]),
        ("", 3, []),
        ("2,0", 3, [2, 0]),
        (" 1 , 2 ", 3, [1, 2]),
        ("0,7,1", 3, [0]),  # the CUDA runtime stops at the first invalid entry
        ("-1", 3, []),
        ("GPU-5a1c,1", 2, ["GPU-5a1c", 1]),
        ("MIG-4b2d", 1, ["MIG-4b2d"]),
    ],
)
def test_visible_devices_follow_the_cuda_runtime(
    spec: str | None, count: int, expected: list[Any]
) -> None:
    assert visible_devices(spec, count) == expected


def test_amd_hip_indexes_into_the_rocr_selection() -> None:
    assert amd_visible_devices({"ROCR_VISIBLE_DEVICES": "2,3", "HIP_VISIBLE_DEVICES": "1"}, 4) == [
        3
    ]
    assert amd_visible_devices({"CUDA_VISIBLE_DEVICES": "1"}, 2) == [1]
    assert amd_visible_devices({}, 2) == [0, 1]


def fake_pynvml() -> types.SimpleNamespace:
    """pynvml's surface as the sampler uses it: 3 devices; device 2 has no power sensor."""
    state = {"shut": False}

    def power(handle: int) -> int:
        if handle == 2:
            raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")
        return 100_000 * (handle + 1)

    return types.SimpleNamespace(
        state=state,
        nvmlInit=lambda: None,
        nvmlShutdown=lambda: state.update(shut=True),
        nvmlDeviceGetCount=lambda: 3,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetHandleByUUID=lambda u: {"GPU-b": 1}[u],
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(used=(h + 1) * MIB, total=16 * MIB),
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=50),
        NVML_TEMPERATURE_GPU=0,
        nvmlDeviceGetTemperature=lambda h, sensor: 40 + h,
        nvmlDeviceGetPowerUsage=power,
    )


def test_nvml_sampler_keys_devices_as_the_process_sees_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nvml = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    sampler = NvmlSampler({"CUDA_VISIBLE_DEVICES": "2,GPU-b,GPU-unknown"})
    assert sampler.sample() == {
        "0": {"memory": [3.0, 16.0], "load": 0.5, "temperature": 42.0},
        "1": {"memory": [2.0, 16.0], "load": 0.5, "temperature": 41.0, "power": 200.0},
    }
    sampler.close()
    assert nvml.state["shut"]


def fake_amdsmi() -> types.SimpleNamespace:
    def temperature(handle: str, sensor: str, metric: str) -> int:
        if sensor == "edge":
            raise RuntimeError("AMDSMI_STATUS_NOT_SUPPORTED")  # MI300: hotspot only
        return 70

    return types.SimpleNamespace(
        AmdSmiTemperatureType=types.SimpleNamespace(EDGE="edge", HOTSPOT="hotspot"),
        AmdSmiTemperatureMetric=types.SimpleNamespace(CURRENT="current"),
        amdsmi_init=lambda: None,
        amdsmi_shut_down=lambda: None,
        amdsmi_get_processor_handles=lambda: ["h0", "h1", "h2"],
        amdsmi_get_gpu_vram_usage=lambda h: {"vram_used": 10, "vram_total": 100},
        amdsmi_get_gpu_activity=lambda h: {"gfx_activity": 100},
        amdsmi_get_temp_metric=temperature,
        amdsmi_get_power_info=lambda h: {"socket_power": 500},
    )


def test_amd_sampler_reads_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "amdsmi", fake_amdsmi())
    sampler = AmdSampler({"HIP_VISIBLE_DEVICES": "2"})
    reading = {"memory": [10.0, 100.0], "load": 1.0, "temperature": 70.0, "power": 500.0}
    assert sampler.sample() == {"0": reading}


class FakeSampler:
    def __init__(self, handles: dict[str, Any]) -> None:
        self.handles = handles
        self.closed = False

    def sample(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        self.closed = True


def test_open_sampler_takes_the_first_library_that_sees_a_device() -> None:
    empty, good = FakeSampler({}), FakeSampler({"0": object()})

    def missing(environ: Any) -> FakeSampler:
        raise ImportError("No module named 'pynvml'")

    assert open_sampler({}, [missing, lambda e: empty, lambda e: good]) is good
    assert empty.closed and not good.closed
    assert open_sampler({}, [missing, lambda e: empty]) is None


def test_no_visible_device_means_no_telemetry() -> None:
    assert start_telemetry(0.01, {"CUDA_VISIBLE_DEVICES": "", "ROCR_VISIBLE_DEVICES": ""}) is None


def test_monitor_emits_gpu_events_until_stopped(captured: Captured) -> None:
    calls = threading.Semaphore(0)
    closed = []

    def sample() -> dict[str, Any]:
        calls.release()
        if closed:
            raise AssertionError("sampled after close")
        return {"0": nvml_reading(MIB, 2 * MIB, 10, 30, 5000)}

    monitor = GpuMonitor(
        sample, interval=0.01, close=lambda: closed.append(True), emitter=captured.emitter
    ).start()
    for _ in range(3):
        assert calls.acquire(timeout=5)
    monitor.stop()
    assert not monitor.running
    events = captured.events("gpu")
    assert len(events) >= 3
    assert events[0]["devices"] == {
        "0": {"memory": [1.0, 2.0], "load": 0.1, "temperature": 30.0, "power": 5.0}
    }
    assert closed == [True]


def test_monitor_survives_a_failing_sample(captured: Captured) -> None:
    calls = threading.Semaphore(0)

    def sample() -> dict[str, Any]:
        calls.release()
        raise RuntimeError("driver hiccup")

    monitor = GpuMonitor(sample, interval=0.01, emitter=captured.emitter).start()
    assert calls.acquire(timeout=5) and calls.acquire(timeout=5)
    monitor.stop()
    assert captured.events() == []
