"""DINOv2 ViT-g/14 self-supervised training throughput (global crops/s), Milabench's dinov2 workload.

The recipe of DINOv2's ``vitg14.yaml`` (Milabench's configuration), in our own torch code around
transformers' ``Dinov2Model`` (random weights): a student and an EMA teacher (momentum 0.994),
each a ViT-g/14 backbone (40 layers of 1,536, SwiGLU, layer scale, stochastic depth 0.4 that
skips the dropped samples' residual work, as DINOv2's blocks do) with separate DINO and iBOT
heads (3-layer MLP, bottleneck 384, 131,072 weight-normalised prototypes). Every image gives 2
global crops (224 px) and 8 local crops (98 px), made by DataLoader workers from FakeImageNet
JPEGs with DINOv2's augmentations; half the global crops get 10-50 % of their patches masked.
Losses: DINO (class token, student local and global crops against the teacher's other global
crop), iBOT (masked patch tokens) with Sinkhorn-Knopp teacher targets, and KoLeo (weight 0.1)
on the student's global class tokens; AdamW, gradient clipping at 3, fp16 with loss scaling
(DINOv2's compute precision). The rate counts global crops, as Milabench does.
``--devices -1`` trains with DDP (torchrun) over every visible device (dinov2-giant-gpus).
"""

from __future__ import annotations

import argparse
import copy
import math
import types
from typing import Any

import benchkit
import data
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision import transforms
from transformers import Dinov2Config, Dinov2Model

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# --- data ---------------------------------------------------------------------------------


def _jitter_gray() -> list[Any]:
    return [
        transforms.RandomApply([transforms.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
        transforms.RandomGrayscale(p=0.2),
    ]


def _blur(p: float) -> Any:
    return transforms.RandomApply([transforms.GaussianBlur(9, sigma=(0.1, 2.0))], p=p)


class MultiCrop:
    """DINOv2's DataAugmentationDINO: 2 global and ``local`` local crops of one image."""

    def __init__(self, args: argparse.Namespace) -> None:
        bicubic = transforms.InterpolationMode.BICUBIC
        finish = [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]

        def crop(size: int, scale: tuple[float, float]) -> list[Any]:
            return [
                transforms.RandomResizedCrop(size, scale=scale, interpolation=bicubic),
                transforms.RandomHorizontalFlip(),
                *_jitter_gray(),
            ]

        global_crop = crop(args.crop, (0.32, 1.0))
        self.global1 = transforms.Compose([*global_crop, _blur(1.0), *finish])
        solarize = transforms.RandomSolarize(threshold=128, p=0.2)
        self.global2 = transforms.Compose([*global_crop, _blur(0.1), solarize, *finish])
        self.local = transforms.Compose([*crop(args.local_crop, (0.05, 0.32)), _blur(0.5), *finish])
        self.local_crops = args.local_crops

    def __call__(self, image: Image.Image) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        local = [self.local(image) for _ in range(self.local_crops)]
        return [self.global1(image), self.global2(image)], local


class Collate:
    """Stacks crops view-major and draws iBOT masks for half of the global crops."""

    def __init__(self, patches: int, probability: float = 0.5, ratio=(0.1, 0.5)) -> None:
        self.patches = patches
        self.probability = probability
        self.ratio = ratio

    def __call__(self, samples: list[Any]) -> dict[str, torch.Tensor]:
        views = [crops for crops, _label in samples]  # (global crops, local crops) per image
        global_crops = torch.stack([g[i] for i in range(2) for g, _ in views])
        local_crops = torch.stack([c[i] for i in range(len(views[0][1])) for _, c in views])
        n = global_crops.size(0)
        masked = int(n * self.probability)
        masks = torch.zeros(n, self.patches, dtype=torch.bool)
        # Ratios spread over [min, max] as DINOv2's collate does; random patches stand in for
        # its blocks (the same number of masked tokens, hence the same work).
        for i, ratio in enumerate(torch.linspace(*self.ratio, masked + 1)[:masked].tolist()):
            masks[i, torch.randperm(self.patches)[: int(self.patches * ratio)]] = True
        order = torch.randperm(n)
        return {"global": global_crops, "local": local_crops, "masks": masks[order]}


# --- model --------------------------------------------------------------------------------


def _subset_residual(x: torch.Tensor, branch: Any, rate: float) -> torch.Tensor:
    """DINOv2's stochastic depth: the residual of a random (1 - rate) share of the samples."""
    batch = x.size(0)
    keep = max(int(batch * (1 - rate)), 1)
    index = torch.randperm(batch, device=x.device)[:keep]
    residual = branch(x[index]).to(x.dtype)
    return torch.index_add(x.flatten(1), 0, index, residual.flatten(1), alpha=batch / keep).view_as(
        x
    )


def _layer_forward(
    self: Any, hidden: torch.Tensor, attention_mask: Any = None, **kw: Any
) -> torch.Tensor:
    def attention(x: torch.Tensor) -> torch.Tensor:
        return self.layer_scale1(
            self.attention(self.norm1(x), attention_mask=attention_mask, **kw)[0]
        )

    def ffn(x: torch.Tensor) -> torch.Tensor:
        return self.layer_scale2(self.mlp(self.norm2(x)))

    if self.training and self.sample_drop > 0:
        hidden = _subset_residual(hidden, attention, self.sample_drop)
        return _subset_residual(hidden, ffn, self.sample_drop)
    hidden = hidden + attention(hidden)
    return hidden + ffn(hidden)


class Head(nn.Module):
    """DINO's projection: 3-layer MLP, L2-normalised bottleneck, weight-normalised prototypes."""

    def __init__(self, dim: int, prototypes: int, bottleneck: int, hidden: int = 2048) -> None:
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
    """Backbone with DINO and iBOT heads; returns the tensors the three losses need."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__()
        config = Dinov2Config(
            hidden_size=args.hidden,
            num_hidden_layers=args.layers,
            num_attention_heads=args.heads,
            mlp_ratio=4,
            use_swiglu_ffn=True,
            layerscale_value=1e-5,
            drop_path_rate=0.0,
            image_size=args.crop,
            patch_size=14,
        )
        self.backbone = Dinov2Model(config)
        for layer in self.backbone.encoder.layer:
            layer.sample_drop = args.drop_path
            layer.forward = types.MethodType(_layer_forward, layer)
        self.dino_head = Head(args.hidden, args.prototypes, args.bottleneck)
        self.ibot_head = Head(args.hidden, args.prototypes, args.bottleneck)

    def forward(
        self, global_crops: torch.Tensor, local_crops: torch.Tensor | None, masks: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The student (``local_crops`` given) sees its global crops masked; the teacher does
        not. Both score the patch tokens at the masked positions."""
        student = local_crops is not None
        tokens = self.backbone(
            pixel_values=global_crops, bool_masked_pos=masks if student else None
        ).last_hidden_state
        out = {"cls": tokens[:, 0], "global": self.dino_head(tokens[:, 0])}
        out["patches"] = self.ibot_head(tokens[:, 1:][masks])
        if student:
            out["local"] = self.dino_head(self.backbone(pixel_values=local_crops).pooler_output)
        return out


# --- losses -------------------------------------------------------------------------------


@torch.no_grad()
def sinkhorn_knopp(
    logits: torch.Tensor, temp: float, world: int, iterations: int = 3
) -> torch.Tensor:
    """DINOv2's teacher targets: a doubly normalised assignment over every rank's samples."""
    q = torch.exp(logits.float() / temp).t()
    count = torch.tensor(q.size(1), device=q.device, dtype=q.dtype)
    total = q.sum()
    if world > 1:
        torch.distributed.all_reduce(count)
        torch.distributed.all_reduce(total)
    q /= total
    for _ in range(iterations):
        rows = q.sum(dim=1, keepdim=True)
        if world > 1:
            torch.distributed.all_reduce(rows)
        q /= rows * q.size(0)
        q /= q.sum(dim=0, keepdim=True) * count
    return (q * count).t()


def cross_entropy(targets: torch.Tensor, student: torch.Tensor, temp: float = 0.1) -> torch.Tensor:
    return -(targets * F.log_softmax(student.float() / temp, dim=-1)).sum(dim=-1).mean()


def koleo(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Kozachenko-Leonenko entropy estimate: spreads the class tokens of a batch apart."""
    x = F.normalize(x.float(), dim=-1, eps=eps)
    with torch.no_grad():
        dots = x @ x.t()
        dots.fill_diagonal_(-1)
        nearest = dots.argmax(dim=1)
    return -torch.log(F.pairwise_distance(x, x[nearest], eps=eps) + eps).mean()


def losses(
    student: dict[str, torch.Tensor],
    teacher: dict[str, torch.Tensor],
    args: argparse.Namespace,
    world: int,
) -> torch.Tensor:
    dino_targets = sinkhorn_knopp(teacher["global"], args.teacher_temp, world).chunk(2)
    swapped = torch.cat([dino_targets[1], dino_targets[0]])  # each global crop learns the other
    local = student["local"].chunk(args.local_crops)
    dino = sum(cross_entropy(t, s) for s in local for t in dino_targets) + 2 * cross_entropy(
        swapped, student["global"]
    )
    dino = dino / (2 * args.local_crops + 2)
    ibot = cross_entropy(
        sinkhorn_knopp(teacher["patches"], args.teacher_temp, world), student["patches"]
    )
    spread = sum(koleo(c) for c in student["cls"].chunk(2))
    return dino + ibot + 0.1 * spread


# --- training -----------------------------------------------------------------------------


def train(args: argparse.Namespace) -> None:
    device, world = benchkit.init_distributed(args.device)
    torch.manual_seed(args.seed)
    student = Dino(args).to(device)
    # DINOv2's teacher is built without stochastic depth: eval mode skips it.
    teacher = copy.deepcopy(student).requires_grad_(False).eval()
    online = student
    if world > 1:
        student = nn.parallel.DistributedDataParallel(student)
    # DINOv2's scaling rule: base_lr for a batch of 1,024, scaled by the square root.
    lr = args.lr * math.sqrt(args.batch_size * world / 1024)
    optimizer = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.04)

    patches = (args.crop // 14) ** 2
    loader = data.train_loader(
        args,
        pin_memory=torch.cuda.is_available(),
        transform=MultiCrop(args),
        collate_fn=Collate(patches),
    )
    # Milabench counts the global crops of a step (2 per image), on every rank.
    steps = benchkit.StepLoop(
        loader,
        args,
        device=device,
        units="images/s",
        optimizer=optimizer,
        world=world,
        batch_size=2 * args.batch_size,
        clip_grad=3.0,
    )
    for batch in steps:
        with steps.autocast():
            with torch.no_grad():
                targets = teacher(batch["global"], None, batch["masks"])
            outputs = student(batch["global"], batch["local"], batch["masks"])
            loss = losses(outputs, targets, args, world)
        steps.step(loss)
        with torch.no_grad():
            torch._foreach_lerp_(
                list(teacher.parameters()), list(online.parameters()), 1 - args.ema
            )


def parser() -> argparse.ArgumentParser:
    p = benchkit.arg_parser(
        "dinov2", __doc__.splitlines()[0], batch_size=32, warmup=3, measures=30, every=2
    )
    p.add_argument("--devices", type=int, default=1, help="DDP workers; -1: one per visible GPU")
    p.add_argument("--precision", choices=benchkit.PRECISIONS, default="fp16")
    p.add_argument("--workers", type=int, default=10, help="DataLoader processes making crops")
    p.add_argument("--crop", type=int, default=224, help="side of the global crops")
    p.add_argument("--local-crop", type=int, default=98, help="side of the local crops")
    p.add_argument("--local-crops", type=int, default=8, help="local crops per image")
    p.add_argument("--hidden", type=int, default=1536)
    p.add_argument("--layers", type=int, default=40)
    p.add_argument("--heads", type=int, default=24)
    p.add_argument("--drop-path", type=float, default=0.4, help="stochastic depth rate")
    p.add_argument("--prototypes", type=int, default=131072, help="DINO and iBOT head outputs")
    p.add_argument("--bottleneck", type=int, default=384, help="heads' bottleneck dimension")
    p.add_argument("--teacher-temp", type=float, default=0.07)
    p.add_argument("--ema", type=float, default=0.994, help="teacher momentum")
    p.add_argument("--lr", type=float, default=2e-4, help="AdamW rate for a batch of 1,024")
    data.add_arguments(p)
    return p


if __name__ == "__main__":
    benchkit.ddp_main(train, parser())
