"""V-JEPA video self-supervised training throughput (clips/s) with transformers, FakeVideos MP4s.

A ``VJEPA2Model`` built from the ViT-H/16 configuration of V-JEPA (632M parameters, 16 frames of
224 px in 2-frame tubelets) with random weights learns to predict, from the visible tokens of a
clip, the features that an EMA target encoder gives to the masked ones: multi-block masks over
space (8 small and 2 large blocks, all frames), L1 loss on layer-normalised targets, as in
``app/vjepa/train.py``. Clips are decoded from MP4 files by DataLoader workers (16 frames, one
every 4, from a random position) and augmented with a random resized crop and a flip.
As in Meta's code (its MultiMaskWrapper), the context encoder runs once per mask generator on
that mask's visible tokens only (rotary positions of the kept tokens), and the target encoder
once on every token. benchkit's StepLoop owns precision (bf16 autocast), clipping (10), the
optimizer step and the timing. ``--devices -1`` trains with DDP over every visible device
(vjepa-gpus).
"""

from __future__ import annotations

import argparse
import copy
import math

import av
import benchkit
import data
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2
from transformers import VJEPA2Config, VJEPA2Model
from transformers.models.vjepa2.modeling_vjepa2 import apply_masks

# (blocks, fraction of the frame each covers): V-JEPA's two multi-block mask generators.
MASKS = ((8, 0.15), (2, 0.7))


# --- data -------------------------------------------------------------------------------


class VideoClips(torch.utils.data.Dataset):
    """Random clips of ``frames`` frames, one every ``stride``, decoded from the MP4 files."""

    def __init__(self, files: list[str], frames: int, stride: int, crop: int, length: int) -> None:
        self.files, self.frames, self.stride, self.length = files, frames, stride, length
        self.augment = v2.Compose(
            [
                v2.RandomResizedCrop(crop, scale=(0.3, 1.0), ratio=(0.75, 1.35), antialias=True),
                v2.RandomHorizontalFlip(),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
            ]
        )

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        span = self.frames * self.stride
        with av.open(self.files[index % len(self.files)]) as container:
            stream = container.streams.video[0]
            total = stream.frames or span
            first = int(torch.randint(0, max(total - span, 0) + 1, (1,)))
            # Seek to the keyframe before the window, then decode forward: what decord does.
            container.seek(int(first / stream.average_rate / stream.time_base), stream=stream)
            picked = []
            for frame in container.decode(stream):
                position = round(frame.time * stream.average_rate)
                if position >= first and (position - first) % self.stride == 0:
                    picked.append(frame.to_ndarray(format="rgb24"))
                    if len(picked) == self.frames:
                        break
        while len(picked) < self.frames:  # a video shorter than the window repeats its end
            picked.append(picked[-1])
        clip = torch.from_numpy(np.stack(picked)).permute(0, 3, 1, 2)  # T, C, H, W
        return self.augment(clip)


def video_loader(args: argparse.Namespace, world: int) -> torch.utils.data.DataLoader:
    root = benchkit.require_dataset(data.params(args))
    files = sorted(str(p) for p in root.glob("*.mp4"))
    # An epoch long enough that workers are not restarted during the measurement.
    length = args.batch_size * (args.warmup + args.measures + 1) * args.every * 2
    dataset = VideoClips(files, args.frames, args.stride, args.crop, length)
    sampler = torch.utils.data.DistributedSampler(dataset) if world > 1 else None
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=args.workers,
        pin_memory=torch.cuda.is_available(),
        drop_last=True,
        persistent_workers=args.workers > 0,
    )


def multiblock_masks(
    grid: tuple[int, int, int], batch: int, generator: torch.Generator, device: torch.device
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(context, target) token indices per mask generator; blocks span every frame, as in V-JEPA."""
    frames, height, width = grid
    pairs = []
    for blocks, scale in MASKS:
        while True:
            covered = torch.zeros(height, width, dtype=torch.bool)
            for _ in range(blocks):
                aspect = math.exp(
                    torch.empty(1)
                    .uniform_(math.log(0.75), math.log(1.5), generator=generator)
                    .item()
                )
                area = scale * height * width
                h = min(height, max(1, round(math.sqrt(area * aspect))))
                w = min(width, max(1, round(math.sqrt(area / aspect))))
                top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
                left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
                covered[top : top + h, left : left + w] = True
            if not covered.all():  # the predictor needs some context to predict from
                break
        target = covered.flatten().repeat(frames)
        pairs.append(
            tuple(
                idx.nonzero().squeeze(1).to(device).expand(batch, -1) for idx in (~target, target)
            )
        )
    return pairs


# --- model ------------------------------------------------------------------------------


class Jepa(nn.Module):
    """Context encoder and predictor: the trained half of V-JEPA, one module for DDP."""

    def __init__(self, config: VJEPA2Config) -> None:
        super().__init__()
        self.model = VJEPA2Model(config)

    def encode_context(self, embedded: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """The encoder's layers over the kept tokens only, scattered back to their places."""
        encoder = self.model.encoder
        hidden = apply_masks(embedded, [context])
        for layer in encoder.layer:
            hidden = layer(hidden, context)[0]
        hidden = encoder.layernorm(hidden)
        # The predictor selects the context itself: hand it a full-length sequence.
        index = context.unsqueeze(-1).expand(-1, -1, hidden.size(-1))
        return hidden.new_zeros(embedded.shape).scatter(1, index, hidden)

    def forward(
        self, clips: torch.Tensor, masks: list[tuple[torch.Tensor, torch.Tensor]]
    ) -> list[torch.Tensor]:
        embedded = self.model.encoder.embeddings(clips)
        return [
            self.model.predictor(self.encode_context(embedded, c), [c], [t]).last_hidden_state
            for c, t in masks
        ]


def train(args: argparse.Namespace) -> None:
    device, world = benchkit.init_distributed(args.device)
    torch.manual_seed(args.seed)
    config = VJEPA2Config(
        crop_size=args.crop,
        frames_per_clip=args.frames,
        tubelet_size=2,
        patch_size=16,
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        pred_hidden_size=args.pred_hidden,
        pred_num_hidden_layers=args.pred_layers,
        pred_num_attention_heads=args.pred_heads,
        pred_num_mask_tokens=len(MASKS),
    )
    jepa = Jepa(config).to(device)
    target_encoder = copy.deepcopy(jepa.model.encoder).requires_grad_(False)
    online = jepa
    if world > 1:
        jepa = nn.parallel.DistributedDataParallel(jepa)
    optimizer = torch.optim.AdamW(jepa.parameters(), lr=args.lr, weight_decay=0.04)
    grid = (args.frames // 2, args.crop // 16, args.crop // 16)
    generator = torch.Generator().manual_seed(args.seed)

    steps = benchkit.StepLoop(
        video_loader(args, world),
        args,
        device=device,
        units="clips/s",
        optimizer=optimizer,
        world=world,
        clip_grad=10.0,
    )
    for clips in steps:
        masks = multiblock_masks(grid, clips.size(0), generator, device)
        with steps.autocast():
            with torch.no_grad():
                features = target_encoder(pixel_values_videos=clips).last_hidden_state
                features = F.layer_norm(features, features.shape[-1:])
            predictions = jepa(clips, masks)
            loss = sum(
                (z - apply_masks(features, [t])).abs().mean()
                for z, (_, t) in zip(predictions, masks, strict=True)
            ) / len(masks)
        steps.step(loss)
        with torch.no_grad():
            encoder = list(online.model.encoder.parameters())
            torch._foreach_lerp_(list(target_encoder.parameters()), encoder, 1 - args.ema)


def parser() -> argparse.ArgumentParser:
    p = benchkit.arg_parser(
        "vjepa", __doc__.splitlines()[0], batch_size=24, warmup=3, measures=30, every=2
    )
    p.add_argument("--devices", type=int, default=1, help="DDP workers; -1: one per visible GPU")
    p.add_argument("--precision", choices=benchkit.PRECISIONS, default="bf16")
    p.add_argument("--frames", type=int, default=16, help="frames per clip (even)")
    p.add_argument("--stride", type=int, default=4, help="source frames between clip frames")
    p.add_argument("--crop", type=int, default=224, help="side of the clip frames (multiple of 16)")
    p.add_argument("--workers", type=int, default=12, help="DataLoader processes decoding video")
    p.add_argument("--hidden", type=int, default=1280)
    p.add_argument("--layers", type=int, default=32)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--pred-hidden", type=int, default=384)
    p.add_argument("--pred-layers", type=int, default=12)
    p.add_argument("--pred-heads", type=int, default=12)
    p.add_argument("--ema", type=float, default=0.998, help="target encoder momentum")
    p.add_argument("--lr", type=float, default=6.25e-4)
    data.add_arguments(p)
    return p


if __name__ == "__main__":
    benchkit.ddp_main(train, parser())
