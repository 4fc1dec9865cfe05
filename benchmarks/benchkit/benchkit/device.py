"""Device choice and the synchronisers that make a clock reading mean "the device has finished"."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any, Callable

Sync = Callable[[Any], object]
"""Waits until the work that produced its argument (or all queued device work) has finished."""


def _load_habana() -> bool:
    # Gaudi registers torch.hpu only once its bridge is imported.
    if importlib.util.find_spec("habana_frameworks") is None:
        return False
    importlib.import_module("habana_frameworks.torch.core")
    return True


def set_tf32(enabled: bool) -> None:
    """Allow (or forbid) TensorFloat-32 for float32 matmuls and cuDNN convolutions."""
    import torch

    torch.set_float32_matmul_precision("high" if enabled else "highest")
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def torch_device(arg: str = "auto", *, tf32: bool | None = None) -> Any:
    """The torch device for ``--device``: ``auto`` prefers cuda (ROCm builds too), xpu, hpu, cpu.

    ``tf32`` True/False sets TensorFloat-32 explicitly; None leaves torch's defaults alone.
    """
    import torch

    if tf32 is not None:
        set_tf32(tf32)
    if arg != "auto":
        if arg.split(":")[0] == "hpu":
            _load_habana()
        return torch.device(arg)
    if torch.cuda.is_available():
        return torch.device("cuda")
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        return torch.device("xpu")
    if _load_habana():
        hpu = getattr(torch, "hpu", None)
        if hpu is not None and hpu.is_available():
            return torch.device("hpu")
    return torch.device("cpu")


def _no_sync(_: Any = None) -> None:
    return None


def synchronizer(device: Any) -> Sync:
    """The synchroniser for one torch device (``torch.device`` or its string); no-op for cpu."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":

        def cuda_sync(_: Any = None) -> None:
            torch.cuda.synchronize(device)

        return cuda_sync
    if device.type in ("xpu", "hpu", "mps"):
        backend = getattr(torch, device.type)

        def backend_sync(_: Any = None) -> None:
            backend.synchronize()

        return backend_sync
    return _no_sync


def jax_sync(value: Any) -> None:
    """Block until every JAX array in ``value`` (any pytree) is computed."""
    # Resolved at call time: jax is optional for the harness (and its stubs leave this untyped).
    importlib.import_module("jax").block_until_ready(value)


def _torch_backends_in_use(torch: Any) -> list[Any]:
    # Only backends this process already initialised: synchronising an unused GPU would create
    # a context on it (memory, seconds of start-up) just to wait for nothing.
    backends = []
    if torch.cuda.is_initialized():
        backends.append(torch.cuda)
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and getattr(xpu, "is_initialized", lambda: False)():
        backends.append(xpu)
    hpu = getattr(torch, "hpu", None)
    if hpu is not None and hpu.is_available():
        backends.append(hpu)
    return backends


def auto_sync(value: Any = None) -> None:
    """Synchronise whatever the process uses: JAX values handed in, initialised torch devices."""
    if value is not None and "jax" in sys.modules:
        sys.modules["jax"].block_until_ready(value)
    torch = sys.modules.get("torch")
    if torch is not None:
        for backend in _torch_backends_in_use(torch):
            backend.synchronize()
