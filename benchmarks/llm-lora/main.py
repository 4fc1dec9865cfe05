"""Llama fine-tuning throughput (tokens/s): LoRA or full, one device, DDP or FSDP, Alpaca rows.

What Milabench's ``llm`` benchmarks run with torchtune's recipes, written with transformers, peft
and torch.distributed. The model is a ``LlamaForCausalLM`` built from the Llama-3.1 8B or 70B
configuration with random bf16 weights (``--checkpoint`` loads a local one instead):

- ``--finetune lora``: the base model frozen, LoRA adapters (rank 8, alpha 16) on ``q_proj`` and
  ``v_proj`` only, no MLP (torchtune's ``llama3_8B_lora_single_device`` config; the 70B config
  adds ``k_proj`` at rank 16, alpha 32), AdamW lr 3e-4, weight decay 0.01;
- ``--finetune full``: every weight trained, AdamW lr 2e-5 (``llama3_70B_full``).

``--parallel ddp`` replicates the model on every worker (``lora_finetune_distributed`` on the 8B
config); ``--parallel fsdp`` shards it with FSDP2: the model is built on the meta device and each
worker materialises only its shards, which is how a 70B model fits. Workers are started by
torchrun, one per device (``--devices``) and per node (the ``MBCTL_*`` multi-node variables).
Alpaca records are formatted with the Alpaca prompt and tokenized one per row, unpacked, each
batch padded to its longest row; the loss covers the responses only; activation checkpointing
as the configs enable it. The rate counts the tokens of the padded batches of every worker.
"""

from __future__ import annotations

import argparse
import contextlib

import benchkit
import data
import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
IGNORE_INDEX = -100  # positions the loss skips (transformers' convention)
PROMPT = (
    "Below is an instruction that describes a task{context}. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n{input}### Response:\n"
)
#: Llama-3.1 shapes (hidden, MLP, layers, heads, KV heads); vocabulary 128,256 for both.
MODELS = {
    "llama3.1-8b": (4096, 14336, 32, 32, 8),
    "llama3.1-70b": (8192, 28672, 80, 64, 8),
}


def alpaca_prompt(record: dict[str, str]) -> str:
    if record["input"]:
        return PROMPT.format(
            context=", paired with an input that provides further context",
            instruction=record["instruction"],
            input=f"### Input:\n{record['input']}\n\n",
        )
    return PROMPT.format(context="", instruction=record["instruction"], input="")


class AlpacaRows(torch.utils.data.Dataset):
    """One tokenized example per row (``<s> prompt response </s>``), cut at ``max_len``."""

    def __init__(
        self, tokenizer: PreTrainedTokenizerFast, records: list[dict[str, str]], max_len: int
    ) -> None:
        prompts = tokenizer([alpaca_prompt(r) for r in records], add_special_tokens=False)
        answers = tokenizer([r["output"] for r in records], add_special_tokens=False)
        self.rows: list[tuple[list[int], list[int]]] = []
        for prompt, answer in zip(prompts["input_ids"], answers["input_ids"], strict=True):
            tokens = [tokenizer.bos_token_id, *prompt, *answer, tokenizer.eos_token_id]
            labels = [IGNORE_INDEX] * (len(prompt) + 1) + answer + [tokenizer.eos_token_id]
            self.rows.append((tokens[:max_len], labels[:max_len]))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[list[int], list[int]]:
        return self.rows[index]


def pad_batch(pad_id: int, rows: list[tuple[list[int], list[int]]]) -> tuple[torch.Tensor, ...]:
    """Tokens and labels padded to the batch's longest row, as torchtune's padded_collate does."""
    longest = max(len(tokens) for tokens, _ in rows)
    tokens = torch.full((len(rows), longest), pad_id)
    labels = torch.full((len(rows), longest), IGNORE_INDEX)
    for i, (row, target) in enumerate(rows):
        tokens[i, : len(row)] = torch.tensor(row)
        labels[i, : len(target)] = torch.tensor(target)
    return tokens, labels


def model_config(args: argparse.Namespace, vocab: int) -> LlamaConfig:
    hidden, intermediate, layers, heads, kv_heads = MODELS[args.model]
    return LlamaConfig(
        vocab_size=max(vocab, args.vocab_size),
        hidden_size=args.hidden or hidden,
        intermediate_size=args.intermediate or intermediate,
        num_hidden_layers=args.layers or layers,
        num_attention_heads=args.heads or heads,
        num_key_value_heads=args.kv_heads or kv_heads,
        max_position_embeddings=131072,
        rope_theta=500000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
    )


def build_model(args: argparse.Namespace, vocab: int) -> torch.nn.Module:
    """The model to train, on the meta device when FSDP will shard it, else on the CPU."""
    dtype = DTYPES[args.dtype]
    if args.checkpoint:
        device = "meta" if args.parallel == "fsdp" else "cpu"
        with torch.device(device):
            model = LlamaForCausalLM.from_pretrained(args.checkpoint, dtype=dtype)
    else:
        # Built without storage: an 8B model in fp32 first would need 32 GB for nothing, a 70B
        # one in bf16 140 GB, which only FSDP's shards (140 GB / workers) may hold.
        with torch.device("meta"):
            model = LlamaForCausalLM(model_config(args, vocab)).to(dtype)
        if args.parallel != "fsdp":
            model = model.to_empty(device="cpu")
            model.init_weights()
    if args.checkpointing:
        # Recomputing activations in the backward pass is what lets the model fit beside its batch.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    if args.finetune == "lora":
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=args.lora_rank,
            lora_alpha=args.lora_alpha,
            lora_dropout=0.0,
            target_modules=args.lora_targets.split(","),
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lora)
    return model


def shard(
    model: torch.nn.Module, device: torch.device, finetune: str, *, offload: bool
) -> torch.nn.Module:
    """FSDP2 over the decoder layers and the root, then materialise this worker's shards.

    ``offload`` keeps the shards, their gradients and the optimizer step on the CPU
    (torchtune's ``fsdp_cpu_offload``, which the 70B full fine-tune needs to fit in 8 x 80 GB).
    """
    from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy, fully_shard

    policy = CPUOffloadPolicy(pin_memory=device.type == "cuda") if offload else OffloadPolicy()
    base = model.get_base_model() if finetune == "lora" else model
    for layer in base.model.layers:
        fully_shard(layer, offload_policy=policy)
    fully_shard(model, offload_policy=policy)
    model.to_empty(device="cpu" if offload else device)
    with torch.no_grad():
        # Random weights for the shards this worker holds; the rotary tables are buffers,
        # recomputed by init_weights. LoRA's B starts at zero as peft initialises it.
        base.init_weights()
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.zero_()
            elif "lora_A" in name:
                param.normal_(0.0, 0.02)
    return model


def train(args: argparse.Namespace) -> None:
    device, world = benchkit.init_distributed(args.device)
    rank = torch.distributed.get_rank() if world > 1 else 0
    torch.manual_seed(args.seed)
    root = benchkit.require_dataset(data.params(args))
    tokenizer = benchkit.pretrained_tokenizer(root / "tokenizer.json")
    rows = AlpacaRows(tokenizer, data.records(root), args.seq_len)

    model = build_model(args, len(tokenizer))
    if args.parallel == "fsdp":
        model = shard(model, device, args.finetune, offload=args.offload == "cpu")
    else:
        model = model.to(device)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=args.weight_decay)
    if args.parallel == "ddp" and world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)

    sampler = (
        torch.utils.data.DistributedSampler(rows, seed=args.seed, drop_last=True)
        if world > 1
        else torch.utils.data.RandomSampler(rows, generator=torch.Generator().manual_seed(rank))
    )
    loader = torch.utils.data.DataLoader(
        rows,
        batch_size=args.batch_size,
        sampler=sampler,
        drop_last=True,
        collate_fn=lambda batch: pad_batch(tokenizer.eos_token_id, batch),
    )
    # Every worker's batch is padded to its own longest row: this worker's count stands for each.
    loop = benchkit.TimedLoop(
        loader,
        batch_size=args.batch_size * args.seq_len * world,
        units="tokens/s",
        warmup=args.warmup,
        measures=args.measures,
        every=args.every,
        sync=benchkit.synchronizer(device),
        work=lambda batch: batch[0].numel() * world,
    )
    for step, (inputs, targets) in enumerate(loop, start=1):
        inputs, targets = inputs.to(device), targets.to(device)
        last = step % args.grad_accum == 0
        # DDP reduces gradients on the last micro-batch of an optimizer step only
        ddp = isinstance(model, torch.nn.parallel.DistributedDataParallel)
        quiet = model.no_sync() if ddp and not last else contextlib.nullcontext()
        with quiet:
            loss = model(input_ids=inputs, labels=targets).loss
            (loss / args.grad_accum).backward()
        if last:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        loop.log_loss(loss.detach())
    if world > 1:
        torch.distributed.destroy_process_group()


def parser() -> argparse.ArgumentParser:
    p = benchkit.arg_parser(
        "llm-lora", __doc__.splitlines()[0], batch_size=8, warmup=3, measures=30, every=1
    )
    p.add_argument("--model", choices=sorted(MODELS), default="llama3.1-8b")
    p.add_argument("--finetune", choices=("lora", "full"), default="lora")
    p.add_argument(
        "--parallel",
        choices=("none", "ddp", "fsdp"),
        default="none",
        help="replicate (ddp) or shard (fsdp) over the torchrun workers",
    )
    p.add_argument("--devices", type=int, default=1, help="workers per node; -1: every GPU")
    p.add_argument("--seq-len", type=int, default=2048, help="longest row (longer are cut)")
    p.add_argument("--grad-accum", type=int, default=8, help="micro-batches per optimizer step")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    p.add_argument(
        "--offload",
        choices=("none", "cpu"),
        default="none",
        help="cpu: FSDP shards, gradients and optimizer step on the CPU",
    )
    p.add_argument(
        "--checkpoint", help="local Hugging Face checkpoint folder instead of random weights"
    )
    p.add_argument(
        "--checkpointing",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="activation checkpointing",
    )
    p.add_argument("--lora-targets", default="q_proj,v_proj", help="projections given adapters")
    p.add_argument("--lora-rank", type=int, default=8)
    p.add_argument("--lora-alpha", type=float, default=16.0)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--vocab-size", type=int, default=128256)
    p.add_argument("--hidden", type=int, help="override the model's width")
    p.add_argument("--intermediate", type=int, help="override the MLP width")
    p.add_argument("--layers", type=int, help="override the number of layers")
    p.add_argument("--heads", type=int, help="override the attention heads")
    p.add_argument("--kv-heads", type=int, help="override the key-value heads")
    data.add_arguments(p)
    return p


if __name__ == "__main__":
    benchkit.ddp_main(train, parser())
