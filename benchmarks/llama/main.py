"""Llama text-generation throughput (generated tokens/s) with transformers, prompted with wikitext-like text.

The model is a ``LlamaForCausalLM`` built from the Llama-2-7B configuration with random weights
(no checkpoint can be downloaded here; ``--checkpoint`` loads a local one instead). Each step
generates ``--new-tokens`` tokens by top-k sampling for a batch of paragraphs of the prepared
corpus, as Milabench's llama benchmark does. Random weights never emit the end-of-sequence token,
so every sequence is generated to full length and each step does the same work.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterator

import benchkit
import data
import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def load_model(args: argparse.Namespace, vocab: int) -> LlamaForCausalLM:
    dtype = DTYPES[args.dtype]
    if args.checkpoint:
        return LlamaForCausalLM.from_pretrained(args.checkpoint, dtype=dtype)
    config = LlamaConfig(
        vocab_size=max(vocab, args.vocab_size),
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.heads,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
    )
    # Built directly in the target dtype: a 7B model in fp32 first would need 28 GB for nothing.
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    model = model.to_empty(device="cpu").to(dtype)
    model.init_weights()
    return model


def prompt_batches(
    tokenizer: PreTrainedTokenizerFast,
    texts: list[str],
    args: argparse.Namespace,
    device: torch.device,
) -> Iterator[dict[str, torch.Tensor]]:
    for start in itertools.count(0, args.batch_size):
        chunk = [texts[(start + i) % len(texts)] for i in range(args.batch_size)]
        encoded = tokenizer(
            chunk, return_tensors="pt", padding=True, truncation=True, max_length=args.max_prompt
        )
        yield encoded.to(device)


@torch.inference_mode()
def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    device = benchkit.torch_device(args.device)
    root = benchkit.require_dataset(data.params(args))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(root / "tokenizer.json"),
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        # Decoder-only models continue on the right of the prompt, so pad on its left.
        padding_side="left",
    )
    tokenizer.pad_token = tokenizer.eos_token
    model = load_model(args, len(tokenizer)).to(device).eval()

    loop = benchkit.TimedLoop(
        prompt_batches(tokenizer, data.prompts(root), args, device),
        batch_size=args.batch_size * args.new_tokens,
        units="tokens/s",
        task="train",  # the scored task, as Milabench reports its inference benchmarks
        warmup=args.warmup,
        measures=args.measures,
        every=args.every,
        sync=benchkit.synchronizer(device),
    )
    for prompts in loop:
        generated = model.generate(
            **prompts,
            do_sample=True,
            top_k=10,
            max_new_tokens=args.new_tokens,
            min_new_tokens=args.new_tokens,
            pad_token_id=tokenizer.pad_token_id,
        )
        loop.step_done(generated)


def parser() -> argparse.ArgumentParser:
    p = benchkit.arg_parser(
        "llama", __doc__.splitlines()[0], batch_size=8, warmup=3, measures=30, every=1
    )
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp16")
    p.add_argument("--new-tokens", type=int, default=128, help="tokens generated per prompt")
    p.add_argument("--max-prompt", type=int, default=256, help="prompt tokens kept (truncation)")
    p.add_argument(
        "--checkpoint", help="local Hugging Face checkpoint folder instead of random weights"
    )
    p.add_argument("--vocab-size", type=int, default=32000)
    p.add_argument("--hidden", type=int, default=4096)
    p.add_argument("--intermediate", type=int, default=11008)
    p.add_argument("--layers", type=int, default=32)
    p.add_argument("--heads", type=int, default=32)
    data.add_arguments(p)
    return p


if __name__ == "__main__":
    benchkit.main(train, parser())
