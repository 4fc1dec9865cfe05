"""Synthetic datasets, deterministic from a seed, made before timing starts so it measures compute.

The batches are generated once (on the CPU, so a seed gives the same data on every device) and
cycled by :class:`benchkit.TimedLoop`; a handful of distinct batches keeps caches honest without
spending the benchmark's time on a data generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def fake_images(
    *,
    batches: int,
    batch_size: int,
    shape: Sequence[int] = (3, 32, 32),
    classes: int = 10,
    seed: int = 0,
    device: Any = "cpu",
    dtype: Any = None,
) -> list[tuple[Any, Any]]:
    """``batches`` pairs of torch (images NxCxHxW, standard normal; labels N, int64) on ``device``."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(batches):
        images = torch.randn(batch_size, *shape, generator=generator, dtype=dtype)
        labels = torch.randint(0, classes, (batch_size,), generator=generator)
        out.append((images.to(device), labels.to(device)))
    return out


def fake_tokens(
    *,
    batches: int,
    batch_size: int,
    seq_len: int,
    vocab: int,
    seed: int = 0,
    device: Any = "cpu",
) -> list[Any]:
    """``batches`` torch int64 token tensors Nxseq_len, uniform over ``vocab``, on ``device``."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randint(0, vocab, (batch_size, seq_len), generator=generator).to(device)
        for _ in range(batches)
    ]


def fake_arrays(
    *,
    batches: int,
    batch_size: int,
    features: int,
    classes: int,
    seed: int = 0,
    dtype: str = "float32",
) -> list[tuple[Any, Any]]:
    """``batches`` numpy pairs (inputs Nxfeatures standard normal; labels N, int32): for JAX & co."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [
        (
            rng.standard_normal((batch_size, features), dtype=np.float32).astype(dtype),
            rng.integers(0, classes, size=batch_size, dtype=np.int32),
        )
        for _ in range(batches)
    ]
