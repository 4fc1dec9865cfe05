"""Llama inference throughput with transformers: Milabench's text-generation pipeline, or batched generate.

The model is a ``LlamaForCausalLM`` built from the Llama-2-7B configuration (Milabench's
``llama2_7b_chat_hf.config``) with random weights (no checkpoint can be downloaded here;
``--checkpoint`` loads a local one instead), prompted with the paragraphs of the prepared
wikitext-103-shaped corpus in order.

``--workload pipeline`` is Milabench's llama benchmark: one paragraph at a time through
``transformers.pipeline("text-generation")`` (top-k 10 sampling, ``max_length`` 400 tokens
including the prompt, stopping at the end-of-sequence token), with the model in fp32 as
Milabench's runs (its pipeline's ``torch_dtype`` does not convert a model object); the unit of
work is Milabench's: the prompt's tokens plus the characters of the returned text (prompt and
continuation), in ``Tok/s``.
``--workload generate`` batches ``--batch-size`` prompts into one ``generate`` call of exactly
``--new-tokens`` tokens each and counts generated tokens (tokens/s).
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterator

import benchkit
import data
import torch
import transformers
from tokenizers import processors
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def make_config(args: argparse.Namespace, vocab: int) -> LlamaConfig:
    """Llama-2-7b-chat's configuration (Milabench's llama2_7b_chat_hf.config) at the given sizes."""
    return LlamaConfig(
        vocab_size=max(vocab, args.vocab_size),
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.heads,
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
    )


def load_model(args: argparse.Namespace, vocab: int, device: torch.device) -> LlamaForCausalLM:
    dtype = DTYPES[args.dtype]
    if args.checkpoint:
        return LlamaForCausalLM.from_pretrained(args.checkpoint, dtype=dtype).to(device)
    # Allocated once, in the target dtype and on the device, then initialised there.
    with torch.device("meta"):
        model = LlamaForCausalLM(make_config(args, vocab)).to(dtype)
    model = model.to_empty(device=device)
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


def generate(
    args: argparse.Namespace,
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    texts: list[str],
    device: torch.device,
) -> None:
    loop = benchkit.TimedLoop(
        prompt_batches(tokenizer, texts, args, device),
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


def fitting(texts: list[str], tokenizer: PreTrainedTokenizerFast, limit: int) -> Iterator[str]:
    """The prompts shorter than ``limit`` tokens: generate refuses a prompt of ``max_length``."""
    for text in texts:
        if len(tokenizer(text)["input_ids"]) < limit:
            yield text


def milabench_work(
    tokenizer: PreTrainedTokenizerFast, prompt: str, sequences: list[dict[str, str]]
) -> int:
    """Milabench's count for one pipeline call: the prompt's tokens, plus the characters of the
    returned texts (the prompt and its continuation, as the pipeline returns full texts)."""
    return len(tokenizer(prompt)["input_ids"]) + sum(len(s["generated_text"]) for s in sequences)


def pipeline(
    args: argparse.Namespace,
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    texts: list[str],
    device: torch.device,
) -> None:
    generator = transformers.pipeline(
        "text-generation", model=model, tokenizer=tokenizer, device=device
    )
    loop = benchkit.TimedLoop(
        fitting(texts, tokenizer, args.max_length),
        batch_size=1,  # replaced below by each step's count (the work differs from step to step)
        units="Tok/s",
        task="train",
        warmup=args.warmup,
        measures=args.measures,
        every=args.every,
        sync=benchkit.synchronizer(device),
    )
    group_work = 0
    for text in loop:
        sequences = generator(
            text,
            do_sample=True,
            top_k=10,
            num_return_sequences=1,
            eos_token_id=tokenizer.eos_token_id,
            max_length=args.max_length,
        )
        group_work += milabench_work(tokenizer, text, sequences)
        in_group = loop.steps % args.every + 1
        # TimedLoop rates batch_size x steps of the group: hand it the group's mean work.
        loop.batch_size = group_work / in_group
        if in_group == args.every:
            group_work = 0


@torch.inference_mode()
def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    device = benchkit.torch_device(args.device)
    root = benchkit.require_dataset(data.params(args))
    # Decoder-only models continue on the right of the prompt, so pad on its left.
    tokenizer = benchkit.pretrained_tokenizer(root / "tokenizer.json", padding_side="left")
    tokenizer.pad_token = tokenizer.eos_token
    # Llama's tokenizer starts every text with <s>; this one is taught to.
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tokenizer.bos_token_id)]
    )
    model = load_model(args, len(tokenizer), device).eval()
    workload = pipeline if args.workload == "pipeline" else generate
    workload(args, model, tokenizer, data.prompts(root), device)


def parser() -> argparse.ArgumentParser:
    p = benchkit.arg_parser(
        "llama", __doc__.splitlines()[0], batch_size=1, warmup=3, measures=30, every=1
    )
    p.add_argument(
        "--workload",
        choices=["pipeline", "generate"],
        default="pipeline",
        help="Milabench's one-prompt pipeline (Tok/s) or batched generate (tokens/s)",
    )
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    p.add_argument(
        "--max-length", type=int, default=400, help="pipeline: prompt and continuation tokens"
    )
    p.add_argument(
        "--new-tokens", type=int, default=128, help="generate: tokens generated per prompt"
    )
    p.add_argument(
        "--max-prompt", type=int, default=256, help="generate: prompt tokens kept (truncation)"
    )
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
