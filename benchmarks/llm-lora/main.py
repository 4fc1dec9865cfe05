"""LoRA fine-tuning throughput (tokens/s) of a Llama model with peft on Alpaca-shaped instructions.

The base model is a ``LlamaForCausalLM`` built from the Llama-3.1-8B configuration with random
bf16 weights (``--checkpoint`` loads a local one instead), frozen; rank-8 LoRA adapters on the
attention and MLP projections are trained with AdamW, as torchtune's
``llama3_1/8B_lora_single_device`` recipe (Milabench's llm-lora-single) does. Records are
formatted with the Alpaca prompt, tokenized and packed into ``--seq-len`` rows; the loss covers
the responses only.
"""

from __future__ import annotations

import argparse
import random

import benchkit
import data
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
IGNORE_INDEX = -100  # positions the loss skips (transformers' convention)
PROMPT = (
    "Below is an instruction that describes a task{context}. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n{input}### Response:\n"
)


def alpaca_prompt(record: dict[str, str]) -> str:
    if record["input"]:
        return PROMPT.format(
            context=", paired with an input that provides further context",
            instruction=record["instruction"],
            input=f"### Input:\n{record['input']}\n\n",
        )
    return PROMPT.format(context="", instruction=record["instruction"], input="")


def packed_rows(
    tokenizer: PreTrainedTokenizerFast, records: list[dict[str, str]], seq_len: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token and label rows of ``seq_len``: shuffled examples concatenated, as torchtune packs them."""
    records = random.Random(seed).sample(records, len(records))
    prompts = tokenizer([alpaca_prompt(r) for r in records], add_special_tokens=False)["input_ids"]
    answers = tokenizer([r["output"] for r in records], add_special_tokens=False)["input_ids"]
    tokens: list[int] = []
    labels: list[int] = []
    for prompt, answer in zip(prompts, answers, strict=True):
        example = [tokenizer.bos_token_id, *prompt, *answer, tokenizer.eos_token_id]
        tokens += example
        labels += [IGNORE_INDEX] * (len(prompt) + 1) + answer + [tokenizer.eos_token_id]
    rows = len(tokens) // seq_len
    if rows == 0:
        raise ValueError(f"the dataset holds {len(tokens)} tokens, fewer than one --seq-len row")
    shape = (rows, seq_len)
    return (
        torch.tensor(tokens[: rows * seq_len]).view(shape),
        torch.tensor(labels[: rows * seq_len]).view(shape),
    )


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
        num_key_value_heads=args.kv_heads,
        max_position_embeddings=131072,
        rope_theta=500000.0,
        rms_norm_eps=1e-5,
    )
    # Built directly in the target dtype: an 8B model in fp32 first would need 32 GB for nothing.
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    model = model.to_empty(device="cpu").to(dtype)
    model.init_weights()
    return model


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    device = benchkit.torch_device(args.device)
    root = benchkit.require_dataset(data.params(args))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(root / "tokenizer.json"),
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
    )
    tokens, labels = packed_rows(tokenizer, data.records(root), args.seq_len, args.seed)

    model = load_model(args, len(tokenizer))
    if args.checkpointing:
        # Recomputing activations in the backward pass is what lets 8B fit beside its batch.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    lora = LoraConfig(
        r=args.lora_rank,
        lora_alpha=args.lora_alpha,
        lora_dropout=0.0,
        target_modules=[
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora).to(device).train()
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.01
    )

    rows = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(tokens, labels),
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
    )
    loop = benchkit.TimedLoop(
        rows,
        batch_size=args.batch_size * args.seq_len,
        units="tokens/s",
        warmup=args.warmup,
        measures=args.measures,
        every=args.every,
        sync=benchkit.synchronizer(device),
    )
    for step, (inputs, targets) in enumerate(loop, start=1):
        inputs, targets = inputs.to(device), targets.to(device)
        loss = model(input_ids=inputs, labels=targets).loss
        (loss / args.grad_accum).backward()
        if step % args.grad_accum == 0:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        loop.log_loss(loss.detach())


def parser() -> argparse.ArgumentParser:
    p = benchkit.arg_parser(
        "llm-lora", __doc__.splitlines()[0], batch_size=8, warmup=3, measures=30, every=1
    )
    p.add_argument("--seq-len", type=int, default=1024, help="tokens per packed row")
    p.add_argument("--grad-accum", type=int, default=8, help="micro-batches per optimizer step")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    p.add_argument(
        "--checkpoint", help="local Hugging Face checkpoint folder instead of random weights"
    )
    p.add_argument(
        "--checkpointing",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="activation checkpointing",
    )
    p.add_argument("--lora-rank", type=int, default=8)
    p.add_argument("--lora-alpha", type=float, default=16.0)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--vocab-size", type=int, default=128256)
    p.add_argument("--hidden", type=int, default=4096)
    p.add_argument("--intermediate", type=int, default=14336)
    p.add_argument("--layers", type=int, default=32)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=8)
    data.add_arguments(p)
    return p


if __name__ == "__main__":
    benchkit.main(train, parser())
