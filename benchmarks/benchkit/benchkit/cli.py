"""The command-line options every benchmark shares, and the dataset cache location."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

DATA_ENV = "MBCTL_DATA"


def arg_parser(
    bench: str,
    description: str | None = None,
    *,
    batch_size: int = 32,
    warmup: int = 3,
    measures: int = 20,
    every: int = 10,
    device: str = "auto",
    seed: int = 0,
) -> argparse.ArgumentParser:
    """A parser named ``bench`` with the common options; the benchmark adds its own to it.

    The keyword arguments are the benchmark's defaults, sized for a quick CPU run; suites pass
    larger values on the command line for accelerators.
    """
    parser = argparse.ArgumentParser(
        prog=bench,
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    common = parser.add_argument_group("benchkit (common to all benchmarks)")
    common.add_argument("--batch-size", type=int, default=batch_size, help="items per step")
    common.add_argument(
        "--warmup", type=int, default=warmup, help="measurements dropped before reporting"
    )
    common.add_argument(
        "--measures", type=int, default=measures, help="measurements reported before stopping"
    )
    common.add_argument("--every", type=int, default=every, help="steps per measurement")
    common.add_argument(
        "--device", default=device, help="auto, cpu, cuda, cuda:N, xpu, hpu (framework device)"
    )
    common.add_argument("--seed", type=int, default=seed, help="seed of weights and fake data")
    return parser


def data_dir() -> Path:
    """The dataset cache directory (``$MBCTL_DATA``, default ``./.data``), created if missing."""
    path = Path(os.environ.get(DATA_ENV) or ".data")
    path.mkdir(parents=True, exist_ok=True)
    return path
