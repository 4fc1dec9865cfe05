"""StepLoop: precision, batches on the device, the optimizer step, loss flush and rates."""

from __future__ import annotations

import argparse
import subprocess
import sys
import types
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import Captured

torch = pytest.importorskip("torch")

from benchkit import StepLoop, step_marker, to_device  # noqa: E402


class Clock:
    """Advances 0.5 s per reading: every group of steps lasts a fixed, known time."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.5
        return self.now


def args(**kw: Any) -> argparse.Namespace:
    values = {"batch_size": 4, "warmup": 1, "measures": 3, "every": 2, "precision": "fp32"}
    values.update(kw)
    return argparse.Namespace(**values)


def model_and_optimizer() -> tuple[Any, Any]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def batches(n: int = 100) -> list[tuple[Any, Any]]:
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(4, 3, generator=generator), torch.randint(0, 2, (4,))) for _ in range(n)]


def make(captured: Captured, **kw: Any) -> tuple[StepLoop, Any, list[str]]:
    model, optimizer = model_and_optimizer()
    syncs: list[str] = []
    options: dict[str, Any] = {"device": "cpu", "units": "items/s", "optimizer": optimizer}
    options.update(kw)
    steps = StepLoop(
        batches(),
        args(**options.pop("args", {})),
        clock=Clock(),
        sync=lambda _: syncs.append("sync"),
        emitter=captured.emitter,
        **options,
    )
    return steps, model, syncs


def train(steps: StepLoop, model: Any) -> None:
    for images, labels in steps:
        with steps.autocast():
            loss = torch.nn.functional.cross_entropy(model(images), labels)
        steps.step(loss)


def test_rates_losses_and_early_stop_come_from_the_timed_loop(captured: Captured) -> None:
    steps, model, syncs = make(captured, world=2)
    train(steps, model)
    rates = captured.events("rate")
    # 4 items x 2 ranks per step, 2 steps per group, 0.5 s per group: 32 items/s.
    assert [r["value"] for r in rates] == [32.0, 32.0, 32.0]
    assert [r["step"] for r in rates] == [4, 6, 8]
    assert steps.rates == [32.0, 32.0, 32.0]
    # One loss per group (the warm-up group included), flushed after the clock was read.
    losses = captured.events("loss")
    assert len(losses) == 4 and all(isinstance(e["value"], float) for e in losses)
    assert captured.events("end") == [{**captured.events("end")[0], "status": "early_stop"}]
    assert len(syncs) == 5  # before the first reading, then once per group


def test_step_trains_and_zeroes_the_gradients(captured: Captured) -> None:
    steps, model, _ = make(captured)
    before = model.weight.detach().clone()
    train(steps, model)
    assert not torch.equal(before, model.weight)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(
    ("precision", "dtype", "tf32", "scaled"),
    [
        ("fp32", None, False, False),
        ("tf32", None, True, False),
        ("bf16", torch.bfloat16, False, False),
        ("tf32-fp16", torch.bfloat16, True, False),  # fp16 runs as bf16 on a CPU
    ],
)
def test_precision_sets_autocast_tf32_and_scaler(
    captured: Captured, precision: str, dtype: Any, tf32: bool, scaled: bool
) -> None:
    steps, model, _ = make(captured, precision=precision)
    assert steps.amp_dtype == dtype
    assert torch.backends.cuda.matmul.allow_tf32 is tf32
    assert steps.scaler.is_enabled() is scaled
    with steps.autocast():
        out = model(torch.randn(2, 3))
    assert out.dtype == (dtype or torch.float32)
    torch.backends.cuda.matmul.allow_tf32 = False


def test_precision_defaults_to_the_argument(captured: Captured) -> None:
    steps, _, _ = make(captured, args={"precision": "bf16"})
    assert steps.precision == "bf16" and steps.amp_dtype is torch.bfloat16


def test_clip_grad_bounds_the_update(captured: Captured) -> None:
    model, optimizer = model_and_optimizer()
    optimizer.param_groups[0]["lr"] = 1.0
    steps = StepLoop(
        [(torch.full((4, 3), 3.0), torch.tensor([0, 1, 0, 1]))],
        args(measures=1, warmup=0, every=1),
        device="cpu",
        units="items/s",
        optimizer=optimizer,
        clip_grad=1e-3,
        clock=Clock(),
        sync=lambda _: None,
        emitter=captured.emitter,
    )
    before = [p.detach().clone() for p in model.parameters()]
    train(steps, model)
    moved = torch.cat([(p - b).flatten() for p, b in zip(model.parameters(), before, strict=True)])
    assert 0 < moved.norm().item() <= 1e-3 + 1e-6


@pytest.fixture
def habana(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A stand-in for Gaudi's bridge: ``habana_frameworks.torch.core.mark_step`` records calls."""
    calls: list[str] = []
    core = types.ModuleType("habana_frameworks.torch.core")
    core.mark_step = lambda: calls.append("mark_step")  # type: ignore[attr-defined]
    for name in ("habana_frameworks", "habana_frameworks.torch"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "habana_frameworks.torch.core", core)
    return calls


def recorded_training(captured: Captured, device: str, calls: list[str]) -> None:
    """Two steps on ``device`` (batches left on the CPU), backward and optimizer step recorded."""
    model, optimizer = model_and_optimizer()
    model.weight.register_hook(lambda grad: calls.append("backward"))
    step = optimizer.step
    optimizer.step = lambda *a, **kw: (calls.append("optimizer.step"), step(*a, **kw))[1]
    steps = StepLoop(
        batches(2),
        args(measures=2, warmup=0, every=1),
        device=device,
        units="items/s",
        optimizer=optimizer,
        move=False,
        clock=Clock(),
        sync=lambda _: None,
        emitter=captured.emitter,
    )
    train(steps, model)


def test_hpu_steps_mark_the_graph_after_backward_and_optimizer_step(
    captured: Captured, habana: list[str]
) -> None:
    recorded_training(captured, "hpu", habana)
    one_step = ["backward", "mark_step", "optimizer.step", "mark_step"]
    assert habana == one_step * 2
    assert [e["value"] for e in captured.events("rate")] == [8.0, 8.0]


def test_other_devices_never_mark_steps(captured: Captured, habana: list[str]) -> None:
    recorded_training(captured, "cpu", habana)
    assert habana == ["backward", "optimizer.step"] * 2
    assert step_marker("cuda:1")() is None and step_marker(torch.device("xpu"))() is None
    assert habana == ["backward", "optimizer.step"] * 2


def test_a_mark_step_hook_replaces_the_vendors(captured: Captured, habana: list[str]) -> None:
    marks: list[str] = []
    steps, model, _ = make(captured, device="hpu", move=False, mark_step=lambda: marks.append("x"))
    train(steps, model)
    assert habana == [] and marks == ["x", "x"] * 8  # (1 warm-up + 3 measures) x 2 steps


def test_to_device_moves_nested_tensors_and_leaves_the_rest() -> None:
    batch = {"x": (torch.ones(2), [torch.zeros(1)]), "name": "a", "n": 3}
    moved = to_device(batch, torch.device("meta"))
    assert moved["x"][0].device.type == "meta" and moved["x"][1][0].device.type == "meta"
    assert isinstance(moved["x"], tuple) and isinstance(moved["x"][1], list)
    assert moved["name"] == "a" and moved["n"] == 3


def test_move_false_yields_batches_as_given(captured: Captured) -> None:
    steps, _, _ = make(captured, move=False, device="meta")
    first = next(iter(steps))
    assert first[0].device.type == "cpu"


def test_benchkit_import_does_not_import_torch() -> None:
    code = "import sys, benchkit; assert 'torch' not in sys.modules, 'torch imported eagerly'"
    subprocess.run([sys.executable, "-c", code], check=True)
