"""Training throughput (images/s) of a small CNN with SGD on synthetic 3x32x32 images, 10 classes."""

from __future__ import annotations

import argparse

import benchkit
import torch
from torch import nn

AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def make_model(width: int, classes: int) -> nn.Module:
    return nn.Sequential(
        conv_block(3, width),
        conv_block(width, width),
        nn.MaxPool2d(2),
        conv_block(width, 2 * width),
        conv_block(2 * width, 2 * width),
        nn.MaxPool2d(2),
        conv_block(2 * width, 4 * width),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * width, classes),
    )


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    device = benchkit.torch_device(args.device, tf32=args.dtype == "tf32")
    model = make_model(args.width, args.classes).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    criterion = nn.CrossEntropyLoss()

    amp_dtype = AMP_DTYPES.get(args.dtype)
    # Loss scaling only matters for fp16 gradients; for other dtypes the scaler is a pass-through.
    scaler = torch.amp.GradScaler(device.type, enabled=args.dtype == "fp16")

    data = benchkit.fake_images(
        batches=args.batches,
        batch_size=args.batch_size,
        classes=args.classes,
        seed=args.seed,
        device=device,
    )
    if args.channels_last:
        data = [(x.to(memory_format=torch.channels_last), y) for x, y in data]

    model.train()
    loop = benchkit.TimedLoop(
        data,
        batch_size=args.batch_size,
        warmup=args.warmup,
        measures=args.measures,
        every=args.every,
        sync=benchkit.synchronizer(device),
    )
    for images, labels in loop:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = criterion(model(images), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        loop.log_loss(loss.detach())


def parser() -> argparse.ArgumentParser:
    p = benchkit.arg_parser("convnet", __doc__, batch_size=32, warmup=3, measures=20, every=10)
    p.add_argument("--dtype", choices=["fp32", "tf32", *AMP_DTYPES], default="fp32")
    p.add_argument("--width", type=int, default=16, help="channels of the first conv layer")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--batches", type=int, default=8, help="distinct synthetic batches, cycled")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    return p


if __name__ == "__main__":
    benchkit.main(train, parser())
