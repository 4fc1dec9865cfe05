"""Device truth: the job's device comes from the planned vendor ($MBCTL_VENDOR), never a CPU fallback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from benchkit import device, lifecycle
from benchkit.device import DeviceMismatch

from tests.benchkit.conftest import Captured

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def torch() -> Any:
    return pytest.importorskip("torch")


def test_planned_vendor_comes_from_the_environment() -> None:
    assert device.planned_vendor({}) is None
    assert device.planned_vendor({"MBCTL_VENDOR": "ROCm"}) == "rocm"
    with pytest.raises(DeviceMismatch, match="MBCTL_VENDOR='gpu' is not a vendor"):
        device.planned_vendor({"MBCTL_VENDOR": "gpu"})


def test_cpu_plan_gives_the_cpu(torch: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MBCTL_VENDOR", "cpu")
    assert device.torch_device("auto") == torch.device("cpu")


@pytest.mark.parametrize(
    ("vendor", "title"), [("rocm", "ROCm"), ("cuda", "CUDA"), ("xpu", "Intel XPU")]
)
def test_accelerator_plan_on_a_cpu_host_refuses(
    torch: Any, monkeypatch: pytest.MonkeyPatch, vendor: str, title: str
) -> None:
    if torch.cuda.is_available():
        pytest.skip("this host has a GPU")
    monkeypatch.setenv("MBCTL_VENDOR", vendor)
    where = re.escape(f"torch {torch.__version__} at {os.path.dirname(torch.__file__)}")
    with pytest.raises(
        DeviceMismatch, match=rf"^{where} sees no {title} device \(.+planned for {vendor}"
    ):
        device.torch_device("auto")


def test_explicit_cpu_contradicting_the_plan_is_refused(
    torch: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MBCTL_VENDOR", "rocm")
    with pytest.raises(DeviceMismatch, match="--device cpu contradicts the plan"):
        device.torch_device("cpu")


def test_start_event_records_the_device(
    torch: Any, captured: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MBCTL_VENDOR", "cpu")
    with lifecycle.session("probe", argv=["probe"], telemetry=None, emitter=captured.emitter):
        pass
    facts = captured.events("start")[0]["device"]
    assert facts["vendor"] == "cpu" and facts["type"] == "cpu" and facts["count"] == 1
    framework = facts["framework"]
    assert framework["name"] == "torch" and framework["version"] == torch.__version__
    assert framework["path"] == os.path.dirname(torch.__file__)
    assert set(facts) == {"vendor", "type", "name", "count", "driver", "runtime", "framework"}


def test_session_fails_with_one_error_when_the_planned_device_is_missing(
    torch: Any, captured: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    if torch.cuda.is_available():
        pytest.skip("this host has a GPU")
    monkeypatch.setenv("MBCTL_VENDOR", "rocm")
    session = lifecycle.session("probe", argv=["probe"], telemetry=None, emitter=captured.emitter)
    with pytest.raises(SystemExit) as stopped, session:
        raise AssertionError("the body must not run")  # pragma: no cover
    assert stopped.value.code == 1
    assert captured.names() == ["start", "error"]
    assert "device" not in captured.events("start")[0]
    error = captured.events("error")[0]
    assert error["type"] == "DeviceMismatch" and "sees no ROCm device" in error["message"]


def test_hpu_sync_marks_the_step_then_waits(torch: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    core = types.ModuleType("habana_frameworks.torch.core")
    core.mark_step = lambda: calls.append("mark_step")  # type: ignore[attr-defined]
    for name in ("habana_frameworks", "habana_frameworks.torch"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "habana_frameworks.torch.core", core)
    hpu = types.SimpleNamespace(synchronize=lambda: calls.append("synchronize"))
    monkeypatch.setattr(torch, "hpu", hpu, raising=False)
    device.synchronizer("hpu")(None)
    assert calls == ["mark_step", "synchronize"]
    hpu.is_available = lambda: True  # type: ignore[attr-defined]
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    calls.clear()
    device.auto_sync()
    assert calls == ["mark_step", "synchronize"]


def test_distributed_settings_per_vendor(torch: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        sys.modules,
        "habana_frameworks.torch.distributed.hccl",
        types.ModuleType("habana_frameworks.torch.distributed.hccl"),
    )
    assert [device.dist_backend(t) for t in ("cuda:1", "hpu", "xpu", "cpu")] == [
        "nccl",
        "hccl",
        "ccl",
        "gloo",
    ]
    assert device.device_count("cpu") == 1
    assert device.device_count("cuda") == torch.cuda.device_count()
    assert device.set_rank_device("cpu", 3) == torch.device("cpu")
    assert device.set_rank_device("hpu", 3) == torch.device("hpu")  # one module per process
    monkeypatch.setenv("MBCTL_VENDOR", "rocm")
    assert device.lightning_accelerator() == "cuda"
    assert device.half_dtype("cuda") is torch.float16
    assert device.half_dtype("hpu") is device.half_dtype("cpu") is torch.bfloat16


def _matmul(vendor: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], list[Any]]:
    env = {
        **os.environ,
        "PYTHONPATH": str(BENCHMARKS / "benchkit"),
        "MBCTL_VENDOR": vendor,
        "MBCTL_DATA": str(tmp_path),
    }
    argv = ["--size", "32", "--warmup", "1", "--measures", "2", "--every", "1"]
    proc = subprocess.run(
        [sys.executable, "main.py", *argv],
        cwd=BENCHMARKS / "matmul",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"mbctl"')]
    return proc, events


@pytest.mark.slow
def test_real_benchmark_planned_for_cpu_and_for_rocm(torch: Any, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this host has a GPU")
    ok, events = _matmul("cpu", tmp_path)
    assert ok.returncode == 0, ok.stderr
    start = next(e for e in events if e["event"] == "start")
    assert start["device"]["type"] == "cpu" and start["device"]["framework"]["name"] == "torch"
    assert any(e["event"] == "rate" for e in events)

    refused, events = _matmul("rocm", tmp_path)
    assert refused.returncode == 1
    assert [e["event"] for e in events] == ["start", "error"]
    assert refused.stderr.strip().splitlines() == [
        f"error: torch {torch.__version__} at {os.path.dirname(torch.__file__)} sees no ROCm "
        "device (it is not a ROCm build (torch.version.hip is unset)), but the job was planned "
        "for rocm: run it on a rocm host with the rocm image, or plan it with --vendor cpu"
    ]
