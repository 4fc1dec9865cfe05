"""Dense matrix-multiply throughput of torch on one device, in TFLOPS, for a chosen precision."""

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
    device = benchkit.torch_device(args.device, tf32=args.dtype == "tf32")
    dtype = DTYPES[args.dtype]
    shape = (args.batch_size, args.size, args.size) if args.batch_size > 1 else (args.size,) * 2

    generator = torch.Generator().manual_seed(args.seed)
    a = torch.randn(shape, generator=generator).to(device, dtype)
    b = torch.randn(shape, generator=generator).to(device, dtype)
    c = torch.empty_like(a)

    # One step is one (batched) N x N x N product: N^3 multiply-adds, 2 N^3 flops per matrix.
    tflop_per_step = 2 * args.batch_size * args.size**3 / 1e12
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
        torch.matmul(a, b, out=c)


def parser() -> argparse.ArgumentParser:
    p = benchkit.arg_parser(
        "matmul",
        __doc__,
        batch_size=1,
        warmup=3,
        measures=20,
        every=20,
    )
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    # CPUs without native half-precision kernels run fp16/bf16 ~100x slower: keep N small here.
    p.add_argument("--size", type=int, default=256, help="N of the N x N matrices")
    return p


if __name__ == "__main__":
    benchkit.main(train, parser())
