"""benchkit: the harness every mbctl benchmark runs inside (metrics protocol v1 on stdout).

Standard library only; torch, jax, numpy, pynvml and amdsmi are imported lazily when used.
"""

from __future__ import annotations

from . import fakeimagenet
from ._version import __version__
from .cache import dataset_dir, is_prepared, materialise, prepare_main, require_dataset
from .cli import arg_parser, data_dir
from .datasets import fake_arrays, fake_images, fake_tokens
from .device import (
    DeviceMismatch,
    auto_sync,
    device_count,
    device_facts,
    dist_backend,
    half_dtype,
    jax_sync,
    lightning_accelerator,
    planned_vendor,
    set_rank_device,
    set_tf32,
    step_marker,
    synchronizer,
    torch_device,
)
from .distributed import init_distributed, relaunch_under_torchrun, silence_other_ranks
from .images import photo_like, write_jpegs
from .lifecycle import Terminated, ddp_main, main, session, versions
from .loop import TimedLoop
from .precision import PRECISIONS, precision_settings
from .protocol import PROTOCOL_VERSION, Emitter, emit
from .steps import StepLoop, to_device
from .telemetry import GpuMonitor, amd_reading, nvml_reading, start_telemetry, visible_devices
from .text import (
    SPECIAL_TOKENS,
    Lexicon,
    RepeatedSamples,
    pretrained_tokenizer,
    random_token_batches,
    train_tokenizer,
    train_tokenizer_on,
)

__all__ = [
    "PRECISIONS",
    "PROTOCOL_VERSION",
    "SPECIAL_TOKENS",
    "DeviceMismatch",
    "Emitter",
    "GpuMonitor",
    "Lexicon",
    "RepeatedSamples",
    "StepLoop",
    "Terminated",
    "TimedLoop",
    "__version__",
    "amd_reading",
    "arg_parser",
    "auto_sync",
    "data_dir",
    "dataset_dir",
    "ddp_main",
    "device_count",
    "device_facts",
    "dist_backend",
    "emit",
    "fake_arrays",
    "fake_images",
    "fake_tokens",
    "fakeimagenet",
    "half_dtype",
    "init_distributed",
    "is_prepared",
    "jax_sync",
    "lightning_accelerator",
    "main",
    "materialise",
    "nvml_reading",
    "photo_like",
    "planned_vendor",
    "precision_settings",
    "prepare_main",
    "pretrained_tokenizer",
    "random_token_batches",
    "relaunch_under_torchrun",
    "require_dataset",
    "session",
    "set_rank_device",
    "set_tf32",
    "silence_other_ranks",
    "start_telemetry",
    "step_marker",
    "synchronizer",
    "to_device",
    "torch_device",
    "train_tokenizer",
    "train_tokenizer_on",
    "versions",
    "visible_devices",
    "write_jpegs",
]
