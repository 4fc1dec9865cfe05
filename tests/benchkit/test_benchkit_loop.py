"""TimedLoop: synchronised group timing, warm-up, early stop, cycling, lazy loss."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pytest
from benchkit import TimedLoop

if TYPE_CHECKING:
    from conftest import Captured


class FakeClock:
    """Time advances when a step says so, plus ``tick`` per reading; readings are logged."""

    def __init__(self, log: list[Any], tick: float) -> None:
        self.now = 100.0
        self.tick = tick
        self.log = log

    def __call__(self) -> float:
        self.log.append("clock")
        self.now += self.tick
        return self.now


def make_loop(
    captured: Captured, iterable: Iterable[Any], *, tick: float = 0.0, **kwargs: Any
) -> tuple[TimedLoop[Any], FakeClock, list[Any]]:
    log: list[Any] = []
    clock = FakeClock(log, tick)
    options: dict[str, Any] = {"batch_size": 8, "warmup": 2, "measures": 3, "every": 4}
    options.update(kwargs)
    loop = TimedLoop(
        iterable,
        clock=clock,
        sync=lambda value: log.append(("sync", value)),
        emitter=captured.emitter,
        **options,
    )
    return loop, clock, log


def test_rates_count_items_over_synchronised_seconds(captured: Captured) -> None:
    loop, clock, _ = make_loop(captured, range(1000))
    for _ in loop:
        clock.now += 0.5
    rates = captured.events("rate")
    # 8 items per step, 0.5 s per step: 16 items/s whatever `every` is.
    assert [r["value"] for r in rates] == [16.0, 16.0, 16.0]
    assert {(r["units"], r["task"]) for r in rates} == {("items/s", "train")}
    assert [r["step"] for r in rates] == [12, 16, 20]
    assert loop.steps == 20 and loop.rates == [16.0, 16.0, 16.0]


def test_warmup_measurements_are_dropped(captured: Captured) -> None:
    loop, clock, _ = make_loop(captured, range(1000))
    for step in loop:
        clock.now += 10.0 if step < 8 else 1.0  # the two warm-up groups are slow
    assert [r["value"] for r in captured.events("rate")] == [8.0, 8.0, 8.0]


def test_early_stop_after_measures_ends_the_iteration(captured: Captured) -> None:
    loop, _, _ = make_loop(captured, range(1000), tick=1.0)
    assert list(loop) == list(range(20))
    names = captured.names()
    assert names == ["rate", "progress"] * 3 + ["end"]
    assert captured.events("end")[0]["status"] == "early_stop" == loop.status
    assert [(p["step"], p["total"]) for p in captured.events("progress")] == [
        (1, 3),
        (2, 3),
        (3, 3),
    ]


def test_sync_runs_before_every_clock_reading_with_the_last_value(captured: Captured) -> None:
    loop, _, log = make_loop(captured, range(1000), tick=1.0, warmup=0, measures=2, every=2)
    for step in loop:
        loop.step_done(f"out{step}")
    # Initial reading, then one per group; the value blocked on is the group's last result.
    assert log == [
        ("sync", None),
        "clock",
        ("sync", "out1"),
        "clock",
        "clock",
        ("sync", "out3"),
        "clock",
    ]


def test_short_iterables_are_cycled_until_enough_measurements(captured: Captured) -> None:
    loop, _, _ = make_loop(captured, [1, 2, 3], tick=1.0, warmup=1, measures=4, every=2)
    assert list(loop) == [1, 2, 3] * 3 + [1]
    assert captured.events("end")[0]["status"] == "early_stop"


def test_an_iterator_that_runs_out_ends_with_done(captured: Captured) -> None:
    loop, clock, _ = make_loop(captured, iter(range(5)), warmup=0, measures=10, every=2)
    for _ in loop:
        clock.now += 1.0
        loop.log_loss(0.5)
    assert len(captured.events("rate")) == 2
    assert captured.names()[-2:] == ["loss", "end"]  # the partial group's loss is not lost
    assert captured.events("end")[0]["status"] == "done" == loop.status


def test_cycle_false_stops_at_the_end_of_the_data(captured: Captured) -> None:
    loop, _, _ = make_loop(captured, [1, 2, 3], cycle=False)
    assert list(loop) == [1, 2, 3]
    assert captured.names() == ["end"]


class LazyLoss:
    """A device scalar: reading it (float) would synchronise, so count the readings."""

    reads = 0

    def __init__(self, value: float) -> None:
        self.value = value

    def __float__(self) -> float:
        LazyLoss.reads += 1
        return self.value


def test_loss_is_read_only_at_measurement_boundaries(captured: Captured) -> None:
    LazyLoss.reads = 0
    loop, clock, log = make_loop(captured, range(1000), warmup=1, measures=2, every=5)
    for step in loop:
        clock.now += 1.0
        loop.log_loss(LazyLoss(float(step)))
    losses = captured.events("loss")
    # One per group, warm-up included (a diverging warm-up must still be seen): 3 groups.
    assert [e["value"] for e in losses] == [4.0, 9.0, 14.0]
    assert LazyLoss.reads == 3
    assert all(e["task"] == "train" for e in losses)
    # log_loss also makes the loss the value the synchroniser blocks on.
    assert isinstance(log[2][1], LazyLoss)


def test_nan_loss_is_emitted_as_nan(captured: Captured) -> None:
    loop, _, _ = make_loop(captured, range(10), tick=1.0, warmup=0, measures=1, every=1)
    for _ in loop:
        loop.log_loss(math.nan)
    assert math.isnan(captured.events("loss")[0]["value"])


def test_flops_style_units(captured: Captured) -> None:
    loop, clock, _ = make_loop(
        captured, itertools.count(), batch_size=0.5, units="TFLOPS", warmup=0, measures=1
    )
    for _ in loop:
        clock.now += 0.25
    assert captured.events("rate")[0]["value"] == 2.0
    assert captured.events("rate")[0]["units"] == "TFLOPS"


def test_a_clock_that_did_not_tick_extends_the_group(captured: Captured) -> None:
    loop, clock, _ = make_loop(captured, range(1000), warmup=0, measures=1, every=2)
    for step in loop:
        clock.now += 1.0 if step == 2 else 0.0
    # Steps 0-1 took no measurable time: the group runs on to step 2 (24 items in 1 s).
    assert [(r["value"], r["step"]) for r in captured.events("rate")] == [(24.0, 3)]


@pytest.mark.parametrize(
    "bad",
    [{"batch_size": 0}, {"warmup": -1}, {"measures": 0}, {"every": 0}],
)
def test_invalid_settings_are_refused(captured: Captured, bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        make_loop(captured, range(3), **bad)


def test_real_clock_gives_positive_rates(captured: Captured) -> None:
    loop = TimedLoop(
        range(100), batch_size=4, warmup=1, measures=2, every=5, emitter=captured.emitter
    )
    for _ in loop:
        sum(range(1000))
    assert len(loop.rates) == 2 and all(rate > 0 for rate in loop.rates)


def test_work_per_step_replaces_a_fixed_batch_size(captured: Captured) -> None:
    # batches padded to their own longest row: each step's tokens, not batch_size, are counted
    loop, clock, _ = make_loop(
        captured, [10, 30] * 100, warmup=0, measures=2, every=2, work=lambda item: item * 4
    )
    for _ in loop:
        clock.now += 1.0
    # (10 + 30) * 4 tokens per 2 s group, whatever batch_size says
    assert [r["value"] for r in captured.events("rate")] == [80.0, 80.0]
