"""DINOv2 ViT-g/14 self-distillation training throughput (images/s) with transformers, on-device images.

Student and teacher are ``Dinov2Model`` backbones built from the ViT-g/14 configuration of
``dinov2/configs/train/vitg14.yaml`` (1.1B parameters, SwiGLU, layer scale, stochastic depth)
with random weights, each with a DINO projection head. Every image gives two global views
(random resized crops and flips, made on the device); the student learns to match the teacher's
centred, sharpened prototype distribution of the other view, and the teacher follows the student
by EMA: the DINO objective of the DINOv2 recipe, without its local crops and iBOT patch loss.
``--devices -1`` trains with DDP over every visible device (dinov2-giant-gpus).
"""

from __future__ import annotations

import argparse
import contextlib
import copy

import benchkit
import torch
import torch.nn.functional as F
from torch import nn
from transformers import Dinov2Config, Dinov2Model

AMP = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


# --- model ------------------------------------------------------------------------------


class DinoHead(nn.Module):
    """DINO's projection: a 3-layer MLP, an L2-normalised bottleneck, weight-normalised prototypes."""

    def __init__(
        self, dim: int, prototypes: int, hidden: int = 2048, bottleneck: int = 256
    ) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, bottleneck),
        )
        self.last = nn.utils.parametrizations.weight_norm(
            nn.Linear(bottleneck, prototypes, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(F.normalize(self.mlp(x), dim=-1))


class Dino(nn.Module):
    def __init__(self, config: Dinov2Config, prototypes: int) -> None:
        super().__init__()
        self.backbone = Dinov2Model(config)
        self.head = DinoHead(config.hidden_size, prototypes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(pixel_values=images).pooler_output)


def global_views(images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Two random resized crops (scale 0.32-1, as DINOv2's global crops) with flips per image."""
    batch, _, height, width = images.shape
    views = []
    for _ in range(2):
        crops = []
        scales = torch.empty(batch).uniform_(0.32, 1.0, generator=generator)
        for image, scale in zip(images, scales, strict=True):
            side = max(1, int(height * scale.sqrt()))
            top, left = (
                torch.randint(0, n - side + 1, (1,), generator=generator).item()
                for n in (height, width)
            )
            crop = image[:, top : top + side, left : left + side]
            if torch.rand(1, generator=generator).item() < 0.5:
                crop = crop.flip(-1)
            crops.append(
                F.interpolate(crop[None], size=(size, size), mode="bilinear", antialias=True)
            )
        views.append(torch.cat(crops))
    return torch.cat(views)


def dino_loss(
    student: torch.Tensor, teacher: torch.Tensor, center: torch.Tensor, args: argparse.Namespace
) -> torch.Tensor:
    """Cross-entropy between each view's student output and the teacher's output of the other view."""
    student_views = (student / args.student_temp).chunk(2)
    teacher_views = F.softmax((teacher - center) / args.teacher_temp, dim=-1).detach().chunk(2)
    loss = sum(
        -(t * F.log_softmax(s, dim=-1)).sum(dim=-1).mean()
        for i, t in enumerate(teacher_views)
        for j, s in enumerate(student_views)
        if i != j
    )
    return loss / 2


def train(args: argparse.Namespace) -> None:
    device, world = benchkit.init_distributed(args.device)
    torch.manual_seed(args.seed)
    benchkit.set_tf32(True)
    config = Dinov2Config(
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        mlp_ratio=4,
        use_swiglu_ffn=True,
        layerscale_value=1e-5,
        drop_path_rate=args.drop_path,
        image_size=args.crop,
        patch_size=14,
    )
    student = Dino(config, args.prototypes).to(device)
    # The mask token serves only iBOT's masked-patch loss, which this recipe leaves out; frozen,
    # DDP does not wait for a gradient it never gets.
    student.backbone.embeddings.mask_token.requires_grad_(False)
    teacher = copy.deepcopy(student).requires_grad_(False)
    if world > 1:
        student = nn.parallel.DistributedDataParallel(student)
    optimizer = torch.optim.AdamW(student.parameters(), lr=args.lr, weight_decay=0.04)
    amp = AMP[args.amp]
    autocast = torch.autocast(device.type, dtype=amp) if amp else contextlib.nullcontext()
    center = torch.zeros(args.prototypes, device=device)
    generator = torch.Generator().manual_seed(args.seed)

    images = benchkit.fake_images(
        batches=args.synthetic_batches,
        batch_size=args.batch_size,
        shape=(3, args.image_size, args.image_size),
        seed=args.seed,
        device=device,
    )
    loop = benchkit.TimedLoop(
        images,
        batch_size=args.batch_size * world,
        units="images/s",
        warmup=args.warmup,
        measures=args.measures,
        every=args.every,
        sync=benchkit.synchronizer(device),
    )
    for batch, _ in loop:
        views = global_views(batch, args.crop, generator)
        with autocast:
            student_out = student(views)
            with torch.no_grad():
                teacher_out = teacher(views)
            loss = dino_loss(student_out.float(), teacher_out.float(), center, args)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(student.parameters(), 3.0)
        optimizer.step()
        with torch.no_grad():
            online = student.module if world > 1 else student
            torch._foreach_lerp_(
                list(teacher.parameters()), list(online.parameters()), 1 - args.ema
            )
            batch_center = teacher_out.float().mean(dim=0)
            if world > 1:
                torch.distributed.all_reduce(batch_center)
                batch_center /= world
            center.lerp_(batch_center, 1 - args.center_momentum)
        loop.log_loss(loss.detach())


def parser() -> argparse.ArgumentParser:
    p = benchkit.arg_parser(
        "dinov2", __doc__.splitlines()[0], batch_size=32, warmup=3, measures=30, every=2
    )
    p.add_argument("--devices", type=int, default=1, help="DDP workers; -1: one per visible GPU")
    p.add_argument("--amp", choices=sorted(AMP), default="bf16", help="autocast dtype")
    p.add_argument("--image-size", type=int, default=256, help="side of the source images")
    p.add_argument("--crop", type=int, default=224, help="side of the global views")
    p.add_argument("--hidden", type=int, default=1536)
    p.add_argument("--layers", type=int, default=40)
    p.add_argument("--heads", type=int, default=24)
    p.add_argument("--drop-path", type=float, default=0.4)
    p.add_argument("--prototypes", type=int, default=65536, help="DINO head output dimension")
    p.add_argument("--student-temp", type=float, default=0.1)
    p.add_argument("--teacher-temp", type=float, default=0.07)
    p.add_argument("--ema", type=float, default=0.994, help="teacher momentum")
    p.add_argument("--center-momentum", type=float, default=0.9)
    p.add_argument("--synthetic-batches", type=int, default=4, help="distinct on-device batches")
    p.add_argument("--lr", type=float, default=2e-4)
    return p


if __name__ == "__main__":
    cli = parser()
    benchkit.relaunch_under_torchrun(cli.parse_args().devices)
    benchkit.silence_other_ranks()  # only rank 0 speaks the metrics protocol
    benchkit.main(train, cli)
