"""Photograph-like JPEGs for image datasets, written in parallel (numpy and PIL imported lazily).

Smooth colour fields plus sensor-like noise compress like photographs (~100 kB at 384 px,
ImageNet's average), so decoding costs what it costs on real data; pure noise would not.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any


def photo_like(rng: Any, size: int) -> Any:
    """A ``size`` x ``size`` x 3 uint8 image drawn from the numpy Generator ``rng``."""
    import numpy as np
    from PIL import Image

    coarse = rng.uniform(0, 255, size=(8, 8, 3)).astype(np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), np.float32)
    return np.clip(field + rng.normal(0, 18, field.shape), 0, 255).astype(np.uint8)


def _write_chunk(job: tuple[Path, int, int, int, int]) -> None:
    import numpy as np
    from PIL import Image

    folder, first, count, size, seed = job
    rng = np.random.default_rng([seed, first])
    for index in range(first, first + count):
        Image.fromarray(photo_like(rng, size)).save(folder / f"{index:06d}.jpg", quality=90)


def write_jpegs(folder: Path, count: int, size: int, seed: int, *, chunk: int = 64) -> None:
    """``count`` photo-like JPEGs ``000000.jpg``... in the existing ``folder``, one process a CPU.

    Deterministic from ``seed`` and ``chunk`` (each chunk of files has its own generator).
    """
    jobs = [
        (folder, start, min(chunk, count - start), size, seed) for start in range(0, count, chunk)
    ]
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        list(pool.map(_write_chunk, jobs))
