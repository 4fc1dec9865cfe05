"""What a precision name (``fp32``, ``tf32``, ``fp16``, ``bf16``, ``tf32-fp16``) asks of torch."""

from __future__ import annotations

from typing import Any

PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "tf32-fp16")


def precision_settings(precision: str, device: Any) -> tuple[bool, Any]:
    """TF32 switch and autocast dtype (or None) as the precision's name says (tf32-fp16: both).

    CPUs have no fast fp16 kernels, so there fp16 autocasts to bf16, as Milabench does.
    """
    import torch

    amp = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision.rsplit("-", 1)[-1])
    if amp is torch.float16 and device.type == "cpu":
        amp = torch.bfloat16
    return precision.startswith("tf32"), amp
