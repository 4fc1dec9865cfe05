"""Test layers: markers are auto-skipped when their resource is missing, but never in CI."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def docker_available() -> str | None:
    """None when a Docker engine answers, else why not."""
    try:
        import docker
    except ImportError:
        return "the docker SDK is not installed"
    try:
        docker.from_env(timeout=5).ping()
    except Exception as exc:  # any failure to reach the engine means "skip the docker layer"
        return f"no Docker engine ({exc.__class__.__name__}); run `make docker-up`"
    return None


@functools.cache
def k8s_available() -> str | None:
    for module in ("kubernetes", "kubernetes_validate"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed"
    return None


@functools.cache
def gpu_available() -> str | None:
    if shutil.which("nvidia-smi") or shutil.which("rocm-smi") or shutil.which("hl-smi"):
        try:
            subprocess.run(["nvidia-smi", "-L"], check=True, capture_output=True, timeout=20)
            return None
        except (OSError, subprocess.SubprocessError):
            pass
    return "no accelerator on this machine"


@functools.cache
def slurm_available() -> str | None:
    """None when slurmctld answers ``scontrol ping``, else why not."""
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"no Slurm ({exc.__class__.__name__}); run `make slurm-up`"
    if "UP" not in ping.stdout:
        return "slurmctld does not answer; run `make slurm-up`"
    return None


CHECKS = {"docker": docker_available, "k8s": k8s_available, "slurm": slurm_available}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    in_ci = bool(os.environ.get("CI"))
    for item in items:
        for marker, check in CHECKS.items():
            # CI installs what these layers need: there the test runs, and fails, rather than skip
            if marker in item.keywords and not in_ci and (why := check()):
                item.add_marker(pytest.mark.skip(reason=why))
        if "gpu" in item.keywords and (why := gpu_available()):
            item.add_marker(pytest.mark.skip(reason=why))
