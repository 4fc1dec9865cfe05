"""Dense matrix-multiply throughput of torch on one device, in TFLOPS, as Milabench's flops benchmark.

The workload of Milabench's ``flops``: ``x`` (m x n) is multiplied by the n x n identity into
``y`` and back into ``x`` (two products, no allocation, 4 m n^2 flops); ``--every`` such pairs
make one measurement (Milabench's ``--number``), ``--measures`` of them are reported (its
``--repeat``). ``--dtype fp32 --tf32`` is Milabench's tf32 entry (``--dtype tf32`` says the same).
"""

from __future__ import annotations

import argparse
import itertools

import benchkit
import torch

DTYPES = {
    "fp32": torch.float32,
    "tf32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}


def train(args: argparse.Namespace) -> None:
    tf32 = args.tf32 or args.dtype == "tf32"
    device = benchkit.torch_device(args.device, tf32=tf32)
    dtype = DTYPES[args.dtype]
    m, n = args.m or args.size, args.n or args.size

    generator = torch.Generator().manual_seed(args.seed)
    a = torch.eye(n).to(device, dtype)
    x = torch.randn((m, n), generator=generator).to(device, dtype)
    y = torch.zeros_like(x)

    # One step is Milabench's dual-out pair of products: 2 m n^2 flops each.
    tflop_per_step = 4 * m * n * n / 1e12
    loop = benchkit.TimedLoop(
        itertools.count(),
        batch_size=tflop_per_step,
        units="TFLOPS",
        warmup=args.warmup,
        measures=args.measures,
        every=args.every,
        sync=benchkit.synchronizer(device),
    )
    for _ in loop:
        torch.mm(x, a, out=y)
        torch.mm(y, a, out=x)


def parser() -> argparse.ArgumentParser:
    p = benchkit.arg_parser("matmul", __doc__.splitlines()[0], warmup=3, measures=20, every=20)
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    p.add_argument("--tf32", action="store_true", help="allow TensorFloat-32 for fp32 products")
    # CPUs without native half-precision kernels run fp16/bf16 ~100x slower: keep N small here.
    p.add_argument("--size", type=int, default=256, help="m and n unless given")
    p.add_argument("--m", type=int, help="rows of x (default --size)")
    p.add_argument("--n", type=int, help="columns of x, side of the identity (default --size)")
    return p


if __name__ == "__main__":
    benchkit.main(train, parser())
