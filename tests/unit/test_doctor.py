"""``mbctl doctor``: the checks as data, and the CLI's table and exit code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from orchestrator import doctor
from orchestrator.cli.main import app
from orchestrator.errors import BackendUnavailable

pytest.importorskip("torch")


class FakeEngine:
    def version(self) -> dict[str, str]:
        return {"Version": "99.0"}

    def info(self) -> dict[str, Any]:
        return {"Runtimes": {"runc": {}}}


def test_cpu_passes_on_this_host(tmp_path: Path) -> None:
    checks = doctor.diagnose("cpu", data_dir=tmp_path / "data", connect=FakeEngine)
    assert [c.name for c in checks] == [
        "engine",
        "runtime",
        "devices",
        "framework",
        "telemetry",
        "dataset cache",
    ]
    assert all(c.ok for c in checks), checks
    assert "torch" in checks[3].detail and "runs on 1 ×" in checks[3].detail


def test_cuda_fails_here_with_the_reasons_and_fixes(tmp_path: Path) -> None:
    checks = {c.name: c for c in doctor.diagnose("cuda", data_dir=tmp_path, connect=FakeEngine)}
    if checks["devices"].ok:
        pytest.skip("this host has an NVIDIA GPU")
    assert checks["engine"].ok and checks["dataset cache"].ok
    assert not checks["runtime"].ok and "no 'nvidia' runtime" in checks["runtime"].detail
    assert "nvidia-ctk runtime configure" in checks["runtime"].fix
    assert not checks["devices"].ok and checks["devices"].detail.startswith("cuda: ")
    assert not checks["framework"].ok and "sees no CUDA device" in checks["framework"].detail
    assert not checks["telemetry"].ok and "pynvml" in checks["telemetry"].detail
    assert all(c.fix for c in checks.values() if not c.ok)


def test_unreachable_engine_and_unwritable_cache(tmp_path: Path) -> None:
    def unreachable() -> Any:
        raise BackendUnavailable("Docker engine not reachable at unix:///x", hint="start dockerd")

    blocked = tmp_path / "file"
    blocked.write_text("")
    checks = {
        c.name: c for c in doctor.diagnose("cpu", data_dir=blocked / "d", connect=unreachable)
    }
    assert (checks["engine"].ok, checks["engine"].fix) == (False, "start dockerd")
    assert not checks["dataset cache"].ok and "MBCTL_DATA" in checks["dataset cache"].fix


@pytest.mark.docker
def test_cli_cpu_passes_and_cuda_fails(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["doctor", "--vendor", "cpu", "--data", str(tmp_path)])
    assert ok.exit_code == 0, ok.output
    assert "FAIL" not in ok.output and "all 6 checks passed for cpu" in ok.output
    failed = runner.invoke(app, ["doctor", "--vendor", "cuda", "--data", str(tmp_path)])
    if "NVML found" in failed.output:
        pytest.skip("this host has an NVIDIA GPU")
    assert failed.exit_code == 1
    assert (
        "error: 4 of 6 checks failed for cuda: runtime, devices, framework, telemetry"
        in failed.output
    )
