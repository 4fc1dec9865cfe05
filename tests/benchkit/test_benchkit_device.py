"""Device choice, TF32 switches and the synchronisers (torch/jax parts skip when absent)."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest
from benchkit import auto_sync, jax_sync, set_tf32, synchronizer, torch_device


@pytest.fixture
def torch() -> Iterator[Any]:
    torch = pytest.importorskip("torch")
    precision = torch.get_float32_matmul_precision()
    cudnn = torch.backends.cudnn.allow_tf32
    yield torch
    torch.set_float32_matmul_precision(precision)
    torch.backends.cudnn.allow_tf32 = cudnn


def test_explicit_and_auto_devices(torch: Any) -> None:
    assert torch_device("cpu") == torch.device("cpu")
    assert torch_device("cuda:1") == torch.device("cuda", 1)  # named, not touched: no GPU needed
    expected = "cuda" if torch.cuda.is_available() else None
    assert torch_device("auto").type in ({expected} if expected else {"cpu", "xpu", "hpu"})


def test_tf32_is_set_only_on_request(torch: Any) -> None:
    torch_device("cpu", tf32=True)
    assert torch.get_float32_matmul_precision() == "high"
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    set_tf32(False)
    assert torch.get_float32_matmul_precision() == "highest"
    assert not torch.backends.cudnn.allow_tf32
    torch_device("cpu")
    assert torch.get_float32_matmul_precision() == "highest"


def test_cpu_needs_no_sync_and_cuda_syncs_its_device(
    torch: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert synchronizer("cpu")(None) is None
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", calls.append)
    synchronizer("cuda:1")("ignored")
    assert calls == [torch.device("cuda", 1)]


def test_auto_sync_blocks_on_jax_values_only_when_given(monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = []
    monkeypatch.setitem(sys.modules, "jax", types.SimpleNamespace(block_until_ready=blocked.append))
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    auto_sync(None)
    auto_sync("loss")
    assert blocked == ["loss"]


def test_auto_sync_leaves_uninitialised_gpus_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    synced = []
    idle = types.SimpleNamespace(
        is_initialized=lambda: False,
        is_available=lambda: False,
        synchronize=lambda: synced.append(0),
    )
    busy = types.SimpleNamespace(
        is_initialized=lambda: True, is_available=lambda: True, synchronize=lambda: synced.append(1)
    )
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=busy, xpu=idle, hpu=idle))
    auto_sync()
    assert synced == [1]


def test_jax_sync_waits_for_a_pytree() -> None:
    jax = pytest.importorskip("jax")
    tree = {"w": jax.numpy.ones((4, 4)) @ jax.numpy.ones((4, 4)), "n": 3}
    jax_sync(tree)
    assert float(tree["w"][0, 0]) == 4.0
