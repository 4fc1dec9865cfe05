"""The training step loop torch benchmarks share: precision, batches to the device, optimizer step,
loss flush and rate (through :class:`~benchkit.loop.TimedLoop`), so a main.py keeps model and data.

torch is imported when a :class:`StepLoop` is built, never at import time.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterable, Iterator
from typing import Any, Callable

from .device import Sync, set_tf32, step_marker, synchronizer
from .loop import TimedLoop
from .precision import precision_settings
from .protocol import Emitter


def to_device(batch: Any, device: Any) -> Any:
    """``batch`` with every tensor in it (tuples, lists, dicts nest) moved to ``device``.

    Non-blocking: the copy overlaps the previous step when the loader pins its memory.
    """
    if hasattr(batch, "to") and hasattr(batch, "device"):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, tuple | list):
        return type(batch)(to_device(item, device) for item in batch)
    if isinstance(batch, dict):
        return {key: to_device(value, device) for key, value in batch.items()}
    return batch


class StepLoop:
    """Iterate over training batches on ``device`` and do the rest of a training step.

    ``for batch in steps`` yields each batch moved to the device (``move=False`` leaves it as
    the loader gives it), timed by a :class:`TimedLoop` built from ``args.warmup``,
    ``args.measures`` and ``args.every``: device synchronised before each clock reading, warm-up
    groups dropped, one ``rate`` event per group of ``batch_size * world`` items, the loss
    emitted at group boundaries only, ``end`` after the last measurement (early stop).

    ``precision`` (default ``args.precision``, else fp32) is one of :data:`benchkit.PRECISIONS`:
    it sets TF32 and the autocast dtype (fp16 on a CPU runs as bf16), and an fp16 autocast gets
    a GradScaler. In the loop body, run the forward pass under ``with steps.autocast():`` and
    hand the loss to :meth:`step`, which does backward, gradient clipping, the optimizer step
    and zeroing the gradients, then records the loss without reading it (no sync).

    On hpu, :meth:`step` calls ``mark_step`` (default: :func:`~benchkit.device.step_marker`,
    Gaudi's ``htcore.mark_step``; a no-op on other devices) after the backward pass and after
    the optimizer step, as Habana's lazy mode asks of a training loop.
    """

    def __init__(
        self,
        batches: Iterable[Any],
        args: argparse.Namespace,
        *,
        device: Any,
        units: str,
        optimizer: Any = None,
        precision: str | None = None,
        batch_size: float | None = None,
        world: int = 1,
        clip_grad: float | None = None,
        move: bool = True,
        sync: Sync | None = None,
        task: str = "train",
        clock: Callable[[], float] = time.perf_counter,
        emitter: Emitter | None = None,
        work: Callable[[Any], float] | None = None,
        mark_step: Callable[[], object] | None = None,
    ) -> None:
        import torch

        self.device = torch.device(device)
        self.mark_step = step_marker(self.device) if mark_step is None else mark_step
        self.optimizer = optimizer
        self.precision = precision or getattr(args, "precision", "fp32")
        tf32, self.amp_dtype = precision_settings(self.precision, self.device)
        set_tf32(tf32)
        # Loss scaling matters only for fp16 gradients; bf16 and fp32 need none.
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp_dtype is torch.float16
        )
        self.clip_grad = clip_grad
        self._move = move
        self.loop: TimedLoop[Any] = TimedLoop(
            batches,
            batch_size=(args.batch_size if batch_size is None else batch_size) * world,
            warmup=args.warmup,
            measures=args.measures,
            every=args.every,
            units=units,
            task=task,
            sync=synchronizer(self.device) if sync is None else sync,
            clock=clock,
            emitter=emitter,
            work=work,
        )

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loop:
            yield to_device(batch, self.device) if self._move else batch

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The forward pass's autocast context for the precision (none for fp32 and tf32)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        import torch

        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def step(self, loss: Any) -> None:
        """Backward (scaled for fp16), clip, optimizer step, zero the gradients; log the loss.

        A graph boundary (:attr:`mark_step`) follows the backward pass and the optimizer step.
        """
        self.scaler.scale(loss).backward()
        self.mark_step()
        if self.clip_grad is not None:
            import torch

            self.scaler.unscale_(self.optimizer)
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.mark_step()
        self.optimizer.zero_grad(set_to_none=True)
        self.log_loss(loss)

    def log_loss(self, loss: Any) -> None:
        """Record a loss for the next measurement boundary (detached; read only there)."""
        self.loop.log_loss(loss.detach() if hasattr(loss, "detach") else loss)

    @property
    def rates(self) -> list[float]:
        return self.loop.rates
