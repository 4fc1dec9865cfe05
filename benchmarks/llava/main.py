"""LLaVA-1.5 throughput (images/s) with transformers: Milabench's fine-tuning step, or batched answering.

A ``LlavaForConditionalGeneration`` built from the llava-1.5-7b configuration (CLIP ViT-L/14 at
336 px, a two-layer projector, a Llama-2-7B language model) with random weights
(``--checkpoint`` loads a local one instead), on image-question pairs shaped like The
Cauldron's A-OKVQA.

``--workload train`` is Milabench's llava-single: the model in bf16 without autocast, AdamW
(lr 5e-5) over every parameter; each step takes one image and its conversation
(``<image>\nHuman: ...\nAssistant: ...``) from a shuffling DataLoader whose workers decode the
JPEGs, runs the LLaVA processor on it in the loop (CLIP processing, 576 image tokens), and takes
a full fine-tuning step: the language-model loss on the whole sequence (padding ignored),
backward, gradients clipped to norm 1, optimizer step.
``--workload generate`` answers batches of questions: the processor runs in the DataLoader
workers and ``generate`` writes exactly ``--new-tokens`` tokens per answer.
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
)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PROMPT = "USER: <image>\n{question} ASSISTANT:"


class Questions(torch.utils.data.Dataset):
    """(image, text) pairs: the question prompt (generate) or the whole conversation (train)."""

    def __init__(self, root: str, conversation: bool) -> None:
        with open(os.path.join(root, "questions.json")) as f:
            turns = json.load(f)
        if conversation:  # Milabench's apply_chat_template of one A-OKVQA turn
            self.texts = [
                f"<image>\nHuman: {t['user']}\nAssistant: {t['assistant']}" for t in turns
            ]
        else:
            self.texts = [PROMPT.format(question=t["question"]) for t in turns]
        self.images = sorted(
            os.path.join(root, "images", f) for f in os.listdir(os.path.join(root, "images"))
        )

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> tuple[Image.Image, str]:
        with Image.open(self.images[index]) as image:
            return image.convert("RGB"), self.texts[index]


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
    # Generation continues on the right of every prompt, so pad on its left.
    tokenizer = benchkit.pretrained_tokenizer(
        os.path.join(root, "tokenizer.json"), padding_side="left"
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


def make_config(args: argparse.Namespace, processor: LlavaProcessor) -> LlavaConfig:
    """llava-1.5-7b's configuration (CLIP ViT-L/14-336, Llama-2-7B) at the given sizes."""
    tokenizer = processor.tokenizer
    return LlavaConfig(
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


def load_model(
    args: argparse.Namespace, processor: LlavaProcessor, device: torch.device
) -> LlavaForConditionalGeneration:
    dtype = DTYPES[args.dtype]
    if args.checkpoint:
        return LlavaForConditionalGeneration.from_pretrained(args.checkpoint, dtype=dtype).to(
            device
        )
    # Allocated once, in the target dtype and on the device, then initialised there.
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(make_config(args, processor)).to(dtype)
    model = model.to_empty(device=device)
    model.init_weights()
    return model


def first(batch: list[tuple[Image.Image, str]]) -> tuple[Image.Image, str]:
    """Milabench's collate keeps PIL images as they are; its step uses the batch's first pair."""
    return batch[0]


def fine_tune(args: argparse.Namespace, root: str, device: torch.device) -> None:
    processor = make_processor(root, args)
    model = load_model(args, processor, device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    loader = torch.utils.data.DataLoader(
        Questions(root, conversation=True),
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        collate_fn=first,
        persistent_workers=args.workers > 0,
    )
    # The weights are already in --dtype: no autocast, as Milabench's Accelerator("no").
    steps = benchkit.StepLoop(
        loader,
        args,
        device=device,
        units="images/s",
        optimizer=optimizer,
        precision="fp32",
        clip_grad=args.clip_grad,
        move=False,
    )
    pad = processor.tokenizer.pad_token_id
    for image, text in steps:
        inputs = processor(text=text, images=image, return_tensors="pt", padding=True)
        inputs["labels"] = inputs["input_ids"].masked_fill(inputs["input_ids"] == pad, -100)
        inputs = {k: v.to(device) for k, v in inputs.items()}
        steps.step(model(**inputs).loss)


@torch.inference_mode()
def answer(args: argparse.Namespace, root: str, device: torch.device) -> None:
    processor = make_processor(root, args)
    model = load_model(args, processor, device).eval()
    dtype = DTYPES[args.dtype]
    loader = torch.utils.data.DataLoader(
        Questions(root, conversation=False),
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


def train(args: argparse.Namespace) -> None:
    if args.workload == "train" and args.batch_size != 1:
        raise ValueError("--workload train takes one image per step (Milabench's): --batch-size 1")
    torch.manual_seed(args.seed)
    device = benchkit.torch_device(args.device)
    root = str(benchkit.require_dataset(data.params(args)))
    (fine_tune if args.workload == "train" else answer)(args, root, device)


def parser() -> argparse.ArgumentParser:
    p = benchkit.arg_parser(
        "llava", __doc__.splitlines()[0], batch_size=1, warmup=3, measures=30, every=1
    )
    p.add_argument(
        "--workload",
        choices=["train", "generate"],
        default="train",
        help="Milabench's fine-tuning step or batched answering",
    )
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    p.add_argument("--lr", type=float, default=5e-5, help="train: AdamW learning rate")
    p.add_argument("--clip-grad", type=float, default=1.0, help="train: gradient norm clip")
    p.add_argument(
        "--new-tokens", type=int, default=32, help="generate: tokens generated per answer"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=4,
        help="DataLoader processes (decode; generate: CLIP processing too)",
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
