"""Training throughput (images/s) of a small CNN with SGD on synthetic 3x32x32 images, 10 classes."""

from __future__ import annotations

import argparse

import benchkit
import torch
from torch import nn


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
    device = benchkit.torch_device(args.device)
    model = make_model(args.width, args.classes).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    criterion = nn.CrossEntropyLoss()

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
    steps = benchkit.StepLoop(
        data, args, device=device, units="items/s", optimizer=optimizer, precision=args.dtype
    )
    for images, labels in steps:
        with steps.autocast():
            loss = criterion(model(images), labels)
        steps.step(loss)


def parser() -> argparse.ArgumentParser:
    p = benchkit.arg_parser("convnet", __doc__, batch_size=32, warmup=3, measures=20, every=10)
    p.add_argument("--dtype", choices=benchkit.PRECISIONS, default="fp32", help="precision")
    p.add_argument("--width", type=int, default=16, help="channels of the first conv layer")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--batches", type=int, default=8, help="distinct synthetic batches, cycled")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    return p


if __name__ == "__main__":
    benchkit.main(train, parser())
