"""Measure benchkit's TimedLoop overhead per step against a bare loop of the same tiny torch steps.

The steps are CPU matmuls of 8 us to about 1 ms, shorter than any catalogue benchmark's step at
full size (the shortest, an fp16 8192^3 product on an H100, takes about 1.5 ms), so the overhead
measured here bounds what the harness adds to a real measurement. Protocol lines go to /dev/null
through a real file, as they go to a pipe in a run. Target: <= 1 % of the step.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks" / "benchkit"))

import torch
from benchkit import Emitter, TimedLoop, synchronizer


def bare(step: object, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step()  # type: ignore[operator]
    return time.perf_counter() - start


def harnessed(step: object, steps: int, every: int, emitter: Emitter) -> float:
    loop = TimedLoop(
        itertools.count(),
        batch_size=1,
        warmup=0,
        measures=steps // every,
        every=every,
        sync=synchronizer("cpu"),
        emitter=emitter,
    )
    start = time.perf_counter()
    for _ in loop:
        step()  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 512], help="N of N x N")
    parser.add_argument("--seconds", type=float, default=0.5, help="length of one bare run")
    parser.add_argument("--repeat", type=int, default=7, help="best of this many runs")
    args = parser.parse_args()

    torch.set_num_threads(1)  # a steady step: thread wake-ups would dwarf what is measured
    with open(os.devnull, "w") as sink:
        emitter = Emitter(sink)
        for size in args.sizes:
            a, b = torch.randn(size, size), torch.randn(size, size)
            out = torch.empty_like(a)

            def step(a: torch.Tensor = a, b: torch.Tensor = b, out: torch.Tensor = out) -> None:
                torch.matmul(a, b, out=out)

            probe = bare(step, 100) / 100
            steps = max(1000, int(args.seconds / probe) // 10 * 10)
            per_step = min(bare(step, steps) for _ in range(args.repeat)) / steps
            for every in (1, 10):
                timed = min(harnessed(step, steps, every, emitter) for _ in range(args.repeat))
                overhead = timed / steps - per_step
                print(
                    f"{size:>4}x{size:<4} matmul {per_step * 1e6:8.1f} us/step, every={every:<2}: "
                    f"TimedLoop {overhead * 1e6:+6.2f} us/step = {100 * overhead / per_step:+7.2f} % "
                    "(target <= 1 %)"
                )


if __name__ == "__main__":
    main()
