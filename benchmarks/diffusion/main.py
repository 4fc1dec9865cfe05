"""Stable Diffusion 2 training throughput (images/s) with diffusers and transformers, image-caption pairs.

The text-to-image fine-tuning step of diffusers' ``train_text_to_image.py`` (what Milabench's
diffusion benchmarks run): images are decoded and augmented by DataLoader workers, encoded to
latents by a frozen ``AutoencoderKL``, noised at a random DDPM timestep, and a
``UNet2DConditionModel`` conditioned on a frozen ``CLIPTextModel``'s caption embeddings learns to
predict the noise (MSE), with AdamW under bf16 autocast. All three models are built from the
stable-diffusion-2-base configurations with random weights (865M + 340M + 84M parameters).
``--devices -1`` trains with DDP over every visible device (diffusion-gpus).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os

import benchkit
import data
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from PIL import Image
from torch import nn
from torchvision import transforms
from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast

AMP = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


# --- data -------------------------------------------------------------------------------


class CaptionedImages(torch.utils.data.Dataset):
    def __init__(
        self, root: str, tokenizer: PreTrainedTokenizerFast, resolution: int, max_tokens: int
    ) -> None:
        self.images = sorted(
            os.path.join(root, "images", f) for f in os.listdir(os.path.join(root, "images"))
        )
        with open(os.path.join(root, "captions.json")) as f:
            captions = json.load(f)
        self.tokens = tokenizer(
            captions,
            max_length=max_tokens,
            padding="max_length",
            truncation=True,
            return_tensors="pt",
        ).input_ids
        self.augment = transforms.Compose(
            [
                transforms.Resize(resolution, interpolation=transforms.InterpolationMode.BILINEAR),
                transforms.RandomCrop(resolution),
                transforms.ToTensor(),
                transforms.Normalize([0.5], [0.5]),
            ]
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        with Image.open(self.images[index]) as image:
            return self.augment(image.convert("RGB")), self.tokens[index]


def pair_loader(
    args: argparse.Namespace, tokenizer: PreTrainedTokenizerFast, world: int
) -> torch.utils.data.DataLoader:
    dataset = CaptionedImages(
        str(benchkit.require_dataset(data.params(args))),
        tokenizer,
        args.resolution,
        args.max_tokens,
    )
    rank = torch.distributed.get_rank() if world > 1 else 0
    # The dataset is small (1,221 pairs): every rank draws with replacement, as Milabench does, so
    # an epoch outlasts the measurement (a DistributedSampler would restart every few steps).
    sampler = torch.utils.data.RandomSampler(
        dataset,
        replacement=True,
        num_samples=args.batch_size * 1000,
        generator=torch.Generator().manual_seed(args.seed + rank),
    )
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=args.batch_size,
        sampler=sampler,
        num_workers=args.workers,
        pin_memory=torch.cuda.is_available(),
        drop_last=True,
        persistent_workers=args.workers > 0,
    )


# --- models -----------------------------------------------------------------------------


def channels(text: str) -> tuple[int, ...]:
    return tuple(int(c) for c in text.split(","))


def build_models(
    args: argparse.Namespace, vocab: int
) -> tuple[CLIPTextModel, AutoencoderKL, UNet2DConditionModel]:
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab,
            hidden_size=args.text_hidden,
            intermediate_size=4 * args.text_hidden,
            num_hidden_layers=args.text_layers,
            num_attention_heads=args.text_heads,
            max_position_embeddings=args.max_tokens,
            hidden_act="gelu",
        )
    )
    vae_channels = channels(args.vae_channels)
    vae = AutoencoderKL(
        block_out_channels=vae_channels,
        down_block_types=("DownEncoderBlock2D",) * len(vae_channels),
        up_block_types=("UpDecoderBlock2D",) * len(vae_channels),
        latent_channels=4,
        layers_per_block=2,
        norm_num_groups=min(32, vae_channels[0]),
        sample_size=args.resolution,
    )
    unet_channels = channels(args.unet_channels)
    blocks = len(unet_channels)
    unet = UNet2DConditionModel(
        sample_size=args.resolution // 2 ** (len(vae_channels) - 1),
        block_out_channels=unet_channels,
        down_block_types=("CrossAttnDownBlock2D",) * (blocks - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (blocks - 1),
        layers_per_block=2,
        # SD 2 keeps 64 channels per attention head (5, 10, 20, 20 heads at 320 ... 1280).
        attention_head_dim=tuple(max(1, c // 64) for c in unet_channels),
        cross_attention_dim=args.text_hidden,
        use_linear_projection=True,
        norm_num_groups=min(32, unet_channels[0]),
    )
    return text_encoder, vae, unet


def train(args: argparse.Namespace) -> None:
    device, world = benchkit.init_distributed(args.device)
    torch.manual_seed(args.seed)
    benchkit.set_tf32(True)
    root = benchkit.require_dataset(data.params(args))
    tokenizer = benchkit.pretrained_tokenizer(root / "tokenizer.json")
    tokenizer.pad_token = tokenizer.eos_token
    text_encoder, vae, unet = build_models(args, len(tokenizer))
    amp = AMP[args.amp]
    # The frozen models run in the mixed-precision dtype, as train_text_to_image.py casts them.
    frozen_dtype = amp or torch.float32
    text_encoder.requires_grad_(False).to(device, frozen_dtype)
    vae.requires_grad_(False).to(device, frozen_dtype)
    unet.to(device).train()
    model = nn.parallel.DistributedDataParallel(unet) if world > 1 else unet
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-2)
    scheduler = DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012
    )
    autocast = torch.autocast(device.type, dtype=amp) if amp else contextlib.nullcontext()
    scaler = torch.amp.GradScaler(device.type, enabled=amp is torch.float16)

    loop = benchkit.TimedLoop(
        pair_loader(args, tokenizer, world),
        batch_size=args.batch_size * world,
        units="images/s",
        warmup=args.warmup,
        measures=args.measures,
        every=args.every,
        sync=benchkit.synchronizer(device),
    )
    for pixels, tokens in loop:
        pixels = pixels.to(device, frozen_dtype, non_blocking=True)
        tokens = tokens.to(device, non_blocking=True)
        with torch.no_grad():
            latents = vae.encode(pixels).latent_dist.sample() * args.vae_scale
            conditioning = text_encoder(tokens, return_dict=False)[0]
        noise = torch.randn_like(latents)
        timesteps = torch.randint(
            0, scheduler.config.num_train_timesteps, (latents.size(0),), device=device
        )
        noisy = scheduler.add_noise(latents, noise, timesteps)
        with autocast:
            prediction = model(noisy, timesteps, conditioning, return_dict=False)[0]
        loss = F.mse_loss(prediction.float(), noise.float())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        loop.log_loss(loss.detach())


def parser() -> argparse.ArgumentParser:
    p = benchkit.arg_parser(
        "diffusion", __doc__.splitlines()[0], batch_size=32, warmup=3, measures=30, every=2
    )
    p.add_argument("--devices", type=int, default=1, help="DDP workers; -1: one per visible GPU")
    p.add_argument("--amp", choices=sorted(AMP), default="bf16", help="mixed-precision dtype")
    p.add_argument("--resolution", type=int, default=512, help="training image side")
    p.add_argument("--workers", type=int, default=8, help="DataLoader processes decoding JPEGs")
    p.add_argument("--max-tokens", type=int, default=77, help="caption tokens (CLIP's context)")
    p.add_argument("--unet-channels", default="320,640,1280,1280", help="UNet block widths")
    p.add_argument("--vae-channels", default="128,256,512,512", help="VAE block widths")
    p.add_argument("--vae-scale", type=float, default=0.18215, help="latent scaling factor")
    p.add_argument("--text-hidden", type=int, default=1024, help="OpenCLIP ViT-H text width")
    p.add_argument("--text-layers", type=int, default=23)
    p.add_argument("--text-heads", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-4)
    data.add_arguments(p)
    return p


if __name__ == "__main__":
    benchkit.ddp_main(train, parser())
