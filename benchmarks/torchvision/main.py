"""Image-classification training throughput (images/s) of a torchvision model, as a researcher runs it.

``--loader jpeg`` reads FakeImageNet JPEGs through a DataLoader that decodes and augments on the
fly (RandomResizedCrop, flip, ToTensor, Normalize), so CPU and I/O are part of the measure, as in
Milabench's resnet50; ``--loader synthetic`` feeds fixed random tensors already on the device
(resnet50-noio), which isolates the accelerator.
"""

from __future__ import annotations

import argparse
import contextlib

import benchkit
import data
import torch
import torchvision
from torch import nn


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    device = benchkit.torch_device(args.device)
    tf32, amp_dtype = benchkit.precision_settings(args.precision, device)
    benchkit.set_tf32(tf32)
    torch.backends.cudnn.benchmark = True

    model = torchvision.models.get_model(args.model, weights=None, num_classes=args.classes)
    model = model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4)
    criterion = nn.CrossEntropyLoss()
    # Loss scaling matters only for fp16 gradients; with other precisions it passes through.
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)
    autocast = (
        torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
    )

    if args.loader == "jpeg":
        batches = data.train_loader(args, pin_memory=torch.cuda.is_available())
    else:
        batches = benchkit.fake_images(
            batches=args.synthetic_batches,
            batch_size=args.batch_size,
            shape=(3, args.crop, args.crop),
            classes=args.classes,
            seed=args.seed,
            device=device,
        )

    loop = benchkit.TimedLoop(
        batches,
        batch_size=args.batch_size,
        units="images/s",
        warmup=args.warmup,
        measures=args.measures,
        every=args.every,
        sync=benchkit.synchronizer(device),
    )
    for images, labels in loop:
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = criterion(model(images), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        loop.log_loss(loss.detach())


def parser() -> argparse.ArgumentParser:
    p = benchkit.arg_parser(
        "torchvision", __doc__.splitlines()[0], batch_size=256, warmup=5, measures=30, every=5
    )
    p.add_argument("--model", default="resnet50", help="a torchvision.models name")
    p.add_argument("--precision", choices=benchkit.PRECISIONS, default="tf32-fp16")
    p.add_argument("--loader", choices=["jpeg", "synthetic"], default="jpeg")
    p.add_argument("--crop", type=int, default=224, help="training resolution after augmentation")
    p.add_argument("--workers", type=int, default=8, help="DataLoader processes decoding JPEGs")
    p.add_argument("--synthetic-batches", type=int, default=8, help="distinct on-device batches")
    p.add_argument("--lr", type=float, default=0.01)
    data.add_arguments(p)
    return p


if __name__ == "__main__":
    benchkit.main(train, parser())
