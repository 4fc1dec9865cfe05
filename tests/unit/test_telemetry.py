"""Host GPU telemetry without a GPU: unit conversions, fake vendor libraries, the sampler thread."""

from __future__ import annotations

import json
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

from orchestrator.telemetry import (
    TELEMETRY_FILE,
    AmdSmiSource,
    NvmlSource,
    Reading,
    amdsmi_reading,
    nvml_reading,
    open_source,
    record,
    recording,
)

MIB = 1 << 20


def test_nvml_units() -> None:
    assert nvml_reading(1, "GPU-aaa", "H100", 2048 * MIB, 81920 * MIB, 87, 61, 312_500) == {
        "index": "1",
        "uuid": "GPU-aaa",
        "name": "H100",
        "memory": [2048.0, 81920.0],
        "load": 0.87,
        "temperature": 61.0,
        "power": 312.5,
    }
    # sensors the device lacks are left out, never reported as 0
    assert nvml_reading(0, None, None, None, None, None, None, None) == {"index": "0"}


def test_amdsmi_units_and_missing_sensors() -> None:
    full = amdsmi_reading(
        0,
        "a1b2",
        "MI300X",
        {"vram_used": 1024, "vram_total": 196592},
        {"gfx_activity": 45, "umc_activity": 3},
        70,
        {"average_socket_power": "N/A", "current_socket_power": 550},
    )
    assert full == {
        "index": "0",
        "uuid": "a1b2",
        "name": "MI300X",
        "memory": [1024.0, 196592.0],
        "load": 0.45,
        "temperature": 70.0,
        "power": 550.0,
    }
    bare = amdsmi_reading(2, None, None, None, {"gfx_activity": "N/A"}, "N/A", None)
    assert bare == {"index": "2"}


def test_record_is_a_gpu_event_keyed_by_uuid_then_index() -> None:
    line = record(12.5, "cuda", [{"index": "0", "uuid": "GPU-a"}, {"index": "1"}])
    assert line == {
        "event": "gpu",
        "t": 12.5,
        "source": "host",
        "vendor": "cuda",
        "devices": {"GPU-a": {"index": "0", "uuid": "GPU-a"}, "index:1": {"index": "1"}},
    }


def fake_pynvml() -> types.ModuleType:
    """The part of nvidia-ml-py the sampler calls, for two GPUs; GPU 1 has no power sensor."""
    nvml: Any = types.ModuleType("pynvml")
    nvml.NVML_TEMPERATURE_GPU = 0
    nvml.shutdowns = 0

    class NVMLError(Exception):
        pass

    def power(handle: int) -> int:
        if handle == 1:
            raise NVMLError("Not Supported")
        return 250_000

    def shutdown() -> None:
        nvml.shutdowns += 1

    nvml.nvmlInit = lambda: None
    nvml.nvmlShutdown = shutdown
    nvml.nvmlDeviceGetCount = lambda: 2
    nvml.nvmlDeviceGetHandleByIndex = lambda i: i
    nvml.nvmlDeviceGetUUID = lambda h: f"GPU-{h}"
    nvml.nvmlDeviceGetName = lambda h: b"NVIDIA H100 80GB HBM3"
    nvml.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(
        used=(h + 1) * 1024 * MIB, total=81559 * MIB
    )
    nvml.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=50 * h, memory=0)
    nvml.nvmlDeviceGetTemperature = lambda h, sensor: 40 + h
    nvml.nvmlDeviceGetPowerUsage = power
    return nvml


def fake_amdsmi() -> types.ModuleType:
    smi: Any = types.ModuleType("amdsmi")

    class AmdSmiException(Exception):
        pass

    smi.AmdSmiTemperatureType = types.SimpleNamespace(EDGE="edge", HOTSPOT="hotspot")
    smi.AmdSmiTemperatureMetric = types.SimpleNamespace(CURRENT="current")

    def temperature(handle: str, sensor: str, metric: str) -> Any:
        if sensor == "edge":  # MI300-class: no edge sensor
            raise AmdSmiException("not supported")
        return 55

    smi.amdsmi_init = lambda: None
    smi.amdsmi_shut_down = lambda: None
    smi.amdsmi_get_processor_handles = lambda: ["h0"]
    smi.amdsmi_get_gpu_device_uuid = lambda h: "uuid-0"
    smi.amdsmi_get_gpu_asic_info = lambda h: {"market_name": "MI300X"}
    smi.amdsmi_get_gpu_vram_usage = lambda h: {"vram_used": 10, "vram_total": 100}
    smi.amdsmi_get_gpu_activity = lambda h: {"gfx_activity": 20}
    smi.amdsmi_get_temp_metric = temperature
    smi.amdsmi_get_power_info = lambda h: {"average_socket_power": 300}
    return smi


def test_nvml_source_reads_every_host_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    source = NvmlSource()
    first, second = source.read()
    assert first == {
        "index": "0",
        "uuid": "GPU-0",
        "name": "NVIDIA H100 80GB HBM3",
        "memory": [1024.0, 81559.0],
        "load": 0.0,
        "temperature": 40.0,
        "power": 250.0,
    }
    assert "power" not in second and second["load"] == 0.5
    source.close()
    assert nvml.shutdowns == 1  # type: ignore[attr-defined]


def test_amdsmi_source_falls_back_to_the_hotspot_sensor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "amdsmi", fake_amdsmi())
    (only,) = AmdSmiSource().read()
    assert only == {
        "index": "0",
        "uuid": "uuid-0",
        "name": "MI300X",
        "memory": [10.0, 100.0],
        "load": 0.2,
        "temperature": 55.0,
        "power": 300.0,
    }


def test_open_source_per_vendor(monkeypatch: pytest.MonkeyPatch) -> None:
    assert open_source("cpu") == (None, "host telemetry: none for cpu")
    assert open_source("hpu")[0] is None
    monkeypatch.setitem(sys.modules, "amdsmi", None)  # import fails
    source, note = open_source("rocm")
    assert source is None and note.startswith("host telemetry: off (amdsmi unavailable:")
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml())
    source, note = open_source("cuda")
    assert isinstance(source, NvmlSource) and note == "host telemetry: pynvml (nvidia-ml-py)"


class Counting:
    """A source whose readings count up, and that fails once (a sample is skipped, not fatal)."""

    def __init__(self) -> None:
        self.calls = 0
        self.closed = False

    def read(self) -> list[Reading]:
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("driver hiccup")
        return [{"index": "0", "uuid": "GPU-x", "load": self.calls / 100}]

    def close(self) -> None:
        self.closed = True


def test_recording_samples_until_the_block_ends(tmp_path: Path) -> None:
    source = Counting()
    with recording(tmp_path, "cuda", interval=0.02, source=source) as sampler:
        assert sampler is not None
        deadline = time.monotonic() + 5
        while sampler.samples < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert source.closed
    lines = [json.loads(line) for line in (tmp_path / TELEMETRY_FILE).read_text().splitlines()]
    assert len(lines) == sampler.samples >= 3
    assert all(line["event"] == "gpu" and line["vendor"] == "cuda" for line in lines)
    assert [line["devices"]["GPU-x"]["load"] for line in lines[:2]] == [0.01, 0.03]
    assert sampler.error is None


def test_recording_does_nothing_without_a_sampler(tmp_path: Path) -> None:
    with recording(tmp_path, "cpu") as sampler:
        assert sampler is None
    assert not (tmp_path / TELEMETRY_FILE).exists()


def test_telemetry_file_is_not_a_job_file(tmp_path: Path) -> None:
    """Reports list a run's jobs by its top-level *.jsonl files: telemetry must not be one."""
    from orchestrator.results import RunDir

    run = RunDir.create(tmp_path, {"suite": {"name": "t"}})
    with recording(run.path, "cuda", interval=0.01, source=Counting()):
        time.sleep(0.05)
    assert (run.path / TELEMETRY_FILE).is_file()
    assert run.job_ids() == []


def test_an_unwritable_folder_stops_sampling_quietly(tmp_path: Path) -> None:
    """Telemetry never stops a run: a folder it cannot write is noted on the sampler."""
    (tmp_path / "telemetry").write_text("a file where the folder should be")
    source = Counting()
    with recording(tmp_path, "cuda", interval=0.01, source=source) as sampler:
        assert sampler is not None
    assert sampler.samples == 0 and sampler.error is not None
    assert sampler.error.startswith(f"cannot write {tmp_path / TELEMETRY_FILE}")
    assert source.closed
