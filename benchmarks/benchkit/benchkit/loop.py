"""The timed training loop: synchronised group timing, warm-up, early stop, rate/loss/progress events."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any, Callable, Generic, TypeVar

from .device import Sync, auto_sync
from .protocol import Emitter, default_emitter

T = TypeVar("T")


class TimedLoop(Generic[T]):
    """Iterate over ``iterable`` while measuring throughput, the way the metrics protocol wants it.

    Steps are timed in groups of ``every``. At the end of each group the device is synchronised
    (``sync`` is called with the last value given to :meth:`step_done` or :meth:`log_loss`; the
    default is :func:`benchkit.auto_sync`) and only then is the clock read, so queued
    asynchronous work is inside the measurement. Every group emits the pending ``loss``; the
    first ``warmup`` groups are otherwise dropped, each later one emits ``rate`` (``batch_size *
    every`` over its seconds, ``step`` = steps so far) and ``progress``. After ``measures`` of
    them the loop emits ``end`` with status ``early_stop`` and stops.

    The iterable is restarted when it runs out, so the number of measurements decides the
    length; one that yields nothing on a new pass (an exhausted iterator), or ``cycle=False``,
    ends the loop with ``end`` status ``done``.

    ``batch_size`` is the work per step in ``units``: images for ``items/s``, or TFLOP per step
    for ``units="TFLOPS"`` (with e.g. ``itertools.count()`` as the iterable). Where it varies
    from step to step (tokens of batches padded to their longest row), ``work(item)`` gives
    each step's instead.
    """

    def __init__(
        self,
        iterable: Iterable[T],
        *,
        batch_size: float,
        warmup: int = 3,
        measures: int = 20,
        every: int = 10,
        units: str = "items/s",
        task: str = "train",
        sync: Sync | None = None,
        cycle: bool = True,
        clock: Callable[[], float] = time.perf_counter,
        emitter: Emitter | None = None,
        work: Callable[[T], float] | None = None,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if warmup < 0 or measures < 1 or every < 1:
            raise ValueError(
                f"need warmup >= 0, measures >= 1, every >= 1; got {warmup}, {measures}, {every}"
            )
        self._iterable = iterable
        self.batch_size = batch_size
        self.warmup = warmup
        self.measures = measures
        self.every = every
        self.units = units
        self.task = task
        self._sync = auto_sync if sync is None else sync
        self._cycle = cycle
        self._clock = clock
        self._emitter = default_emitter() if emitter is None else emitter
        self._work = work
        self._last: Any = None
        self._loss: Any = None
        self.steps = 0
        self.rates: list[float] = []
        self.status: str | None = None

    def step_done(self, value: Any = None) -> None:
        """Hand over the step's result: the synchroniser blocks on it at the next clock reading."""
        self._last = value

    def log_loss(self, loss: Any) -> None:
        """Record the step's loss (float, tensor or array) without reading it now.

        Reading a device tensor forces a synchronisation; the loss is converted and emitted only
        at measurement boundaries, after the clock was read. It also becomes the value to block on.
        """
        self._loss = loss
        self._last = loss

    def _items(self) -> Iterator[T]:
        while True:
            empty = True
            for item in self._iterable:
                empty = False
                yield item
            if empty or not self._cycle:
                return

    def _flush_loss(self) -> None:
        if self._loss is not None:
            self._emitter.emit("loss", value=float(self._loss), task=self.task)
            self._loss = None

    def __iter__(self) -> Iterator[T]:
        groups = 0
        in_group = 0
        done = 0.0
        self._sync(self._last)
        start = self._clock()
        for item in self._items():
            yield item
            self.steps += 1
            in_group += 1
            done += self.batch_size if self._work is None else self._work(item)
            if in_group < self.every:
                continue
            self._sync(self._last)
            elapsed = self._clock() - start
            if elapsed <= 0:
                continue  # a clock coarser than the group: extend the group until it ticks
            rate = done / elapsed
            groups += 1
            in_group = 0
            done = 0.0
            self._flush_loss()
            if groups > self.warmup:
                self.rates.append(rate)
                self._emitter.emit(
                    "rate", value=rate, units=self.units, task=self.task, step=self.steps
                )
                self._emitter.emit("progress", step=len(self.rates), total=self.measures)
                if len(self.rates) >= self.measures:
                    self.status = "early_stop"
                    self._emitter.emit("end", status=self.status)
                    return
            # Restarted after the bookkeeping: emitting is not part of the work being measured.
            start = self._clock()
        self._sync(self._last)
        self._flush_loss()
        self.status = "done"
        self._emitter.emit("end", status=self.status)
