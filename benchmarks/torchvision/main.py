"""Image-classification training throughput (images/s) of a torchvision model, as Milabench runs it.

``--loader pytorch`` reads FakeImageNet JPEGs through a DataLoader that decodes and augments on
the fly (RandomResizedCrop, flip, ToTensor, Normalize), so CPU and I/O are part of the measure,
as in Milabench's resnet50; ``--loader synthetic_fixed`` feeds one fixed random batch already on
the device (resnet50-noio), which isolates the accelerator. Plain SGD and cross-entropy, as
Milabench's torchvision benchmark; benchkit's StepLoop owns precision, timing and the step.
"""

from __future__ import annotations

import argparse

import benchkit
import data
import torch
import torchvision
from torch import nn


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    device = benchkit.torch_device(args.device)
    torch.backends.cudnn.benchmark = True

    model = torchvision.models.get_model(args.model, weights=None, num_classes=args.classes)
    model = model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    criterion = nn.CrossEntropyLoss()

    if args.loader == "pytorch":
        batches = data.train_loader(args, pin_memory=torch.cuda.is_available())
    else:
        batches = benchkit.fake_images(
            batches=1,
            batch_size=args.batch_size,
            shape=(3, args.crop, args.crop),
            classes=args.classes,
            seed=args.seed,
            device=device,
        )

    steps = benchkit.StepLoop(batches, args, device=device, units="images/s", optimizer=optimizer)
    for images, labels in steps:
        with steps.autocast():
            loss = criterion(model(images), labels)
        steps.step(loss)


def parser() -> argparse.ArgumentParser:
    p = benchkit.arg_parser(
        "torchvision", __doc__.splitlines()[0], batch_size=256, warmup=5, measures=30, every=5
    )
    p.add_argument("--model", default="resnet50", help="a torchvision.models name")
    p.add_argument("--precision", choices=benchkit.PRECISIONS, default="tf32-fp16")
    p.add_argument(
        "--loader",
        choices=["pytorch", "synthetic_fixed"],
        default="pytorch",
        help="pytorch: JPEGs through a DataLoader; synthetic_fixed: one batch on the device",
    )
    p.add_argument("--crop", type=int, default=224, help="training resolution after augmentation")
    p.add_argument("--workers", type=int, default=8, help="DataLoader processes decoding JPEGs")
    p.add_argument("--lr", type=float, default=0.01)
    data.add_arguments(p)
    return p


if __name__ == "__main__":
    benchkit.main(train, parser())
