"""What a precision name (``fp32``, ``tf32``, ``fp16``, ``bf16``, ``tf32-fp16``) asks of torch."""

from __future__ import annotations

from typing import Any

PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "tf32-fp16")


def precision_settings(precision: str, device: Any) -> tuple[bool, Any]:
    """TF32 switch and autocast dtype (or None) as the precision's name says (tf32-fp16: both).

    fp16 is float16 on CUDA and ROCm only: CPUs have no fast fp16 kernels, so there it autocasts to
    bf16 as Milabench does, and mbctl does the same on Gaudi and Intel GPUs (see device.half_dtype).
    """
    import torch

    from .device import half_dtype

    amp = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision.rsplit("-", 1)[-1])
    if amp is torch.float16:
        amp = half_dtype(device)
    return precision.startswith("tf32"), amp
