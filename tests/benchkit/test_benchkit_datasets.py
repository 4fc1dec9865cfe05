"""Synthetic datasets: shapes, label ranges, and determinism from the seed."""

from __future__ import annotations

import pytest
from benchkit import fake_arrays, fake_images, fake_tokens


def test_fake_images_are_deterministic_per_seed() -> None:
    torch = pytest.importorskip("torch")
    a = fake_images(batches=2, batch_size=4, shape=(3, 8, 8), classes=5, seed=1)
    b = fake_images(batches=2, batch_size=4, shape=(3, 8, 8), classes=5, seed=1)
    c = fake_images(batches=2, batch_size=4, shape=(3, 8, 8), classes=5, seed=2)
    assert len(a) == 2 and a[0][0].shape == (4, 3, 8, 8) and a[0][1].dtype == torch.int64
    assert all(
        torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b, strict=True)
    )
    assert not torch.equal(a[0][0], c[0][0])
    assert not torch.equal(a[0][0], a[1][0])  # distinct batches, not one repeated
    assert int(a[0][1].min()) >= 0 and int(a[0][1].max()) < 5


def test_fake_images_dtype() -> None:
    torch = pytest.importorskip("torch")
    ((x, _),) = fake_images(batches=1, batch_size=2, shape=(1, 2, 2), dtype=torch.bfloat16)
    assert x.dtype == torch.bfloat16


def test_fake_tokens() -> None:
    torch = pytest.importorskip("torch")
    tokens = fake_tokens(batches=3, batch_size=2, seq_len=16, vocab=100, seed=0)
    assert [t.shape for t in tokens] == [(2, 16)] * 3
    assert torch.equal(tokens[0], fake_tokens(batches=1, batch_size=2, seq_len=16, vocab=100)[0])
    assert int(tokens[0].max()) < 100


def test_fake_arrays() -> None:
    np = pytest.importorskip("numpy")
    data = fake_arrays(batches=2, batch_size=8, features=5, classes=3, seed=4)
    x, y = data[0]
    assert (x.shape, x.dtype, y.shape, y.dtype) == ((8, 5), np.float32, (8,), np.int32)
    again = fake_arrays(batches=2, batch_size=8, features=5, classes=3, seed=4)
    assert np.array_equal(x, again[0][0]) and np.array_equal(data[1][1], again[1][1])
    assert y.min() >= 0 and y.max() < 3
