"""benchkit: the harness every mbctl benchmark runs inside (metrics protocol v1 on stdout).

Standard library only; torch, jax, numpy, pynvml and amdsmi are imported lazily when used.
"""

from __future__ import annotations

from ._version import __version__
from .cli import arg_parser, data_dir
from .datasets import fake_arrays, fake_images, fake_tokens
from .device import auto_sync, jax_sync, set_tf32, synchronizer, torch_device
from .lifecycle import Terminated, main, session, versions
from .loop import TimedLoop
from .protocol import PROTOCOL_VERSION, Emitter, emit
from .telemetry import GpuMonitor, amd_reading, nvml_reading, start_telemetry, visible_devices

__all__ = [
    "PROTOCOL_VERSION",
    "Emitter",
    "GpuMonitor",
    "Terminated",
    "TimedLoop",
    "__version__",
    "amd_reading",
    "arg_parser",
    "auto_sync",
    "data_dir",
    "emit",
    "fake_arrays",
    "fake_images",
    "fake_tokens",
    "jax_sync",
    "main",
    "nvml_reading",
    "session",
    "set_tf32",
    "start_telemetry",
    "synchronizer",
    "torch_device",
    "versions",
    "visible_devices",
]
