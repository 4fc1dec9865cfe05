"""LLaVA-1.5 visual question answering throughput (images/s) with transformers, image-question pairs.

A ``LlavaForConditionalGeneration`` built from the llava-1.5-7b configuration (CLIP ViT-L/14 at
336 px, a two-layer projector, a Llama-2-7B language model) with random fp16 weights
(``--checkpoint`` loads a local one instead) answers a batch of questions about images per step:
DataLoader workers decode the JPEGs and run the CLIP image processor (resize, centre crop,
normalise), the processor expands each ``<image>`` into its 576 patch tokens, and ``generate``
writes ``--new-tokens`` tokens per answer. Random weights never stop early, so every step does
the same work.
"""

from __future__ import annotations

import argparse
import json
import os

import benchkit
import data
import torch
from PIL import Image
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PROMPT = "USER: <image>\n{question} ASSISTANT:"


class Questions(torch.utils.data.Dataset):
    def __init__(self, root: str) -> None:
        with open(os.path.join(root, "questions.json")) as f:
            self.questions = json.load(f)
        self.images = sorted(
            os.path.join(root, "images", f) for f in os.listdir(os.path.join(root, "images"))
        )

    def __len__(self) -> int:
        return len(self.questions)

    def __getitem__(self, index: int) -> tuple[Image.Image, str]:
        with Image.open(self.images[index]) as image:
            return image.convert("RGB"), PROMPT.format(question=self.questions[index])


class Collate:
    """Runs the LLaVA processor in the DataLoader workers (picklable, unlike a closure)."""

    def __init__(self, processor: LlavaProcessor) -> None:
        self.processor = processor

    def __call__(self, batch: list[tuple[Image.Image, str]]) -> dict[str, torch.Tensor]:
        images, prompts = zip(*batch, strict=True)
        return dict(
            self.processor(
                images=list(images), text=list(prompts), padding=True, return_tensors="pt"
            )
        )


def make_processor(root: str, args: argparse.Namespace) -> LlavaProcessor:
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=os.path.join(root, "tokenizer.json"),
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        padding_side="left",  # generation continues on the right of every prompt
    )
    tokenizer.pad_token = tokenizer.unk_token
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    images = CLIPImageProcessor(
        size={"shortest_edge": args.vision_size},
        crop_size={"height": args.vision_size, "width": args.vision_size},
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    return LlavaProcessor(
        image_processor=images,
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # the CLS token, which the "default" strategy drops
    )


def load_model(
    args: argparse.Namespace, processor: LlavaProcessor
) -> LlavaForConditionalGeneration:
    dtype = DTYPES[args.dtype]
    if args.checkpoint:
        return LlavaForConditionalGeneration.from_pretrained(args.checkpoint, dtype=dtype)
    tokenizer = processor.tokenizer
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=args.vision_hidden,
            intermediate_size=4 * args.vision_hidden,
            num_hidden_layers=args.vision_layers,
            num_attention_heads=args.vision_heads,
            image_size=args.vision_size,
            patch_size=14,
            projection_dim=768,
            hidden_act="quick_gelu",
        ),
        text_config=LlamaConfig(
            vocab_size=max(len(tokenizer), args.vocab_size),
            hidden_size=args.hidden,
            intermediate_size=args.intermediate,
            num_hidden_layers=args.layers,
            num_attention_heads=args.heads,
            num_key_value_heads=args.heads,
            max_position_embeddings=4096,
            rms_norm_eps=1e-5,
        ),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )
    # Built directly in the target dtype: a 7B model in fp32 first would need 28 GB for nothing.
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(config)
    model = model.to_empty(device="cpu").to(dtype)
    model.init_weights()
    return model


@torch.inference_mode()
def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    device = benchkit.torch_device(args.device)
    root = str(benchkit.require_dataset(data.params(args)))
    processor = make_processor(root, args)
    model = load_model(args, processor).to(device).eval()
    dtype = DTYPES[args.dtype]

    loader = torch.utils.data.DataLoader(
        Questions(root),
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        collate_fn=Collate(processor),
        drop_last=True,
        persistent_workers=args.workers > 0,
    )
    loop = benchkit.TimedLoop(
        loader,
        batch_size=args.batch_size,
        units="images/s",
        task="train",  # the scored task, as Milabench reports its inference benchmarks
        warmup=args.warmup,
        measures=args.measures,
        every=args.every,
        sync=benchkit.synchronizer(device),
    )
    for inputs in loop:
        inputs = {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
        answers = model.generate(
            **inputs,
            do_sample=False,
            max_new_tokens=args.new_tokens,
            min_new_tokens=args.new_tokens,
            pad_token_id=processor.tokenizer.pad_token_id,
        )
        loop.step_done(answers)


def parser() -> argparse.ArgumentParser:
    p = benchkit.arg_parser(
        "llava", __doc__.splitlines()[0], batch_size=8, warmup=3, measures=30, every=1
    )
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp16")
    p.add_argument("--new-tokens", type=int, default=32, help="tokens generated per answer")
    p.add_argument(
        "--workers", type=int, default=4, help="DataLoader processes (decode + CLIP processing)"
    )
    p.add_argument(
        "--checkpoint", help="local Hugging Face checkpoint folder instead of random weights"
    )
    p.add_argument("--vision-size", type=int, default=336)
    p.add_argument("--vision-hidden", type=int, default=1024)
    p.add_argument("--vision-layers", type=int, default=24)
    p.add_argument("--vision-heads", type=int, default=16)
    p.add_argument("--vocab-size", type=int, default=32064)
    p.add_argument("--hidden", type=int, default=4096)
    p.add_argument("--intermediate", type=int, default=11008)
    p.add_argument("--layers", type=int, default=32)
    p.add_argument("--heads", type=int, default=32)
    data.add_arguments(p)
    return p


if __name__ == "__main__":
    benchkit.main(train, parser())
