"""Image-classification training throughput (images/s) of ResNet152 with PyTorch Lightning, FakeImageNet JPEGs.

A ``LightningModule`` around torchvision's resnet152 (cross-entropy, Adam at 1e-3, bf16-mixed,
TF32 allowed, as Milabench's lightning benchmark) trained by ``Trainer.fit`` on a DataLoader that
decodes and augments JPEGs on the fly. ``--devices 1`` is the per-GPU benchmark (lightning);
``--devices -1`` relaunches under torchrun with one worker per visible device (lightning-gpus),
where Lightning's DDP picks up the torchrun environment, and the rate counts the images of all
ranks. A callback advances benchkit's timed loop at each batch, so the measure covers what
``fit`` does: data loading, forward, backward, optimizer and DDP traffic.
"""

from __future__ import annotations

import argparse
import itertools
import os
from typing import Any

import benchkit
import data
import lightning as L
import torch
import torchvision
from torch import nn


class Classifier(L.LightningModule):
    def __init__(self, model: str, classes: int, lr: float) -> None:
        super().__init__()
        self.model = torchvision.models.get_model(model, weights=None, num_classes=classes)
        self.criterion = nn.CrossEntropyLoss()
        self.lr = lr

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        images, labels = batch
        return self.criterion(self.model(images), labels)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


class Throughput(L.Callback):
    """Advances a benchkit.TimedLoop once per batch and stops ``fit`` when it has its measurements.

    Every rank keeps one (they stop together); only rank 0's output reaches the orchestrator.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.loop: Any = None
        self.ticks: Any = None

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.loop = benchkit.TimedLoop(
            itertools.count(),  # endless: the trainer, not the loop, supplies the batches
            batch_size=self.args.batch_size * trainer.world_size,
            units="images/s",
            warmup=self.args.warmup,
            measures=self.args.measures,
            every=self.args.every,
            sync=benchkit.synchronizer(module.device),
        )
        self.ticks = iter(self.loop)

    def on_train_batch_start(
        self, trainer: L.Trainer, module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if next(self.ticks, None) is None and trainer.is_global_zero:
            trainer.should_stop = True

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self.loop.log_loss(outputs["loss"].detach())
        # Every rank must see the same decision, or the others would wait forever in DDP.
        trainer.should_stop = trainer.strategy.broadcast(trainer.should_stop)


def train(args: argparse.Namespace) -> None:
    L.seed_everything(args.seed, verbose=False)
    benchkit.set_tf32(True)
    # the planned vendor's device or a clear error (never a quiet CPU run), and its accelerator
    benchkit.torch_device(args.device)
    accelerator = benchkit.lightning_accelerator("cpu" if args.device == "cpu" else "auto")
    # Under torchrun (lightning-gpus) each worker is one device; Lightning reads the rest
    # (ranks, master address) from torchrun's environment.
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=local_world,
        num_nodes=world // local_world,
        strategy="ddp" if world > 1 else "auto",
        precision=args.precision,
        max_epochs=-1,
        callbacks=[Throughput(args)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    torch.backends.cudnn.benchmark = True
    trainer.fit(Classifier(args.model, args.classes, args.lr), data.train_loader(args))


def parser() -> argparse.ArgumentParser:
    p = benchkit.arg_parser(
        "lightning", __doc__.splitlines()[0], batch_size=256, warmup=5, measures=30, every=5
    )
    p.add_argument("--model", default="resnet152", help="a torchvision.models name")
    p.add_argument(
        "--devices", type=int, default=1, help="torchrun workers (DDP); -1: one per visible GPU"
    )
    p.add_argument(
        "--precision",
        default="bf16-mixed",
        help="Lightning precision: 32-true, 16-mixed, bf16-mixed",
    )
    p.add_argument("--crop", type=int, default=224, help="training resolution after augmentation")
    p.add_argument("--workers", type=int, default=8, help="DataLoader processes per rank")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    data.add_arguments(p)
    return p


if __name__ == "__main__":
    benchkit.ddp_main(train, parser())
