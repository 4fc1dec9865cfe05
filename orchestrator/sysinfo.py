"""System description for results (MLPerf-style fields): host, OS, accelerators, software."""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path
from typing import Any

from orchestrator import __version__
from orchestrator.vendors import Detection

#: Fields a submission's system description must have (checked by ``mbctl verify``).
REQUIRED_FIELDS = (
    "host.cpu_model",
    "host.cpu_cores",
    "host.memory_gb",
    "os.name",
    "os.kernel",
    "accelerators.vendor",
    "accelerators.count",
    "software.mbctl",
    "software.python",
)
#: Required as well unless the accelerator is the CPU (MLPerf: accelerator model and memory).
ACCELERATOR_FIELDS = ("accelerators.model", "accelerators.memory_mib", "accelerators.driver")
#: A submission must name the version of at least one of these (``software.<name>``).
FRAMEWORKS = ("torch", "jax", "tensorflow")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError):
        pass
    return None


def _os_name() -> str:
    try:
        release = platform.freedesktop_os_release()
        return release.get("PRETTY_NAME", release.get("NAME", platform.system()))
    except OSError:
        return f"{platform.system()} {platform.release()}"


def describe(detection: Detection) -> dict[str, Any]:
    """The system description written into ``meta.json`` (framework versions come from the jobs)."""
    devices = detection.devices
    return {
        "host": {
            "hostname": socket.gethostname(),
            "cpu_model": _cpu_model(),
            "cpu_cores": os.cpu_count(),
            "memory_gb": _memory_gb(),
            "arch": platform.machine(),
        },
        "os": {"name": _os_name(), "kernel": platform.release()},
        "accelerators": {
            "vendor": detection.vendor.value,
            "count": len(devices),
            "model": devices[0].name if devices else None,
            "memory_mib": devices[0].memory_mib if devices else None,
            "driver": detection.driver,
            "devices": [
                {"index": d.index, "name": d.name, "memory_mib": d.memory_mib, "uuid": d.uuid}
                for d in devices
            ],
        },
        "software": {"mbctl": __version__, "python": platform.python_version()},
    }
