"""BERT masked-language-model training throughput (sentences/s) with transformers, synthetic sentences.

The model is built from a ``BertConfig`` (bert-base by default, 116M parameters) with random
weights; sentences are random token ids with 15 % of positions masked, as in BERT pre-training.
``--precision`` names the TF32 switch and the autocast dtype (fp32, tf32, fp16, bf16, tf32-fp16).
"""

from __future__ import annotations

import argparse
import contextlib

import benchkit
import torch
from transformers import BertConfig, BertForMaskedLM

IGNORE_INDEX = -100  # positions the MLM loss skips (transformers' convention)


def masked_batches(
    args: argparse.Namespace, config: BertConfig, device: torch.device
) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(args.seed)
    batches = []
    for _ in range(args.synthetic_batches):
        # Ids up to [MASK] are padding and special tokens in BERT's vocabulary.
        shape = (args.batch_size, args.seq_len)
        tokens = torch.randint(
            args.mask_token_id + 1, config.vocab_size, shape, generator=generator
        )
        chosen = torch.rand(tokens.shape, generator=generator) < args.mask_prob
        labels = torch.where(chosen, tokens, IGNORE_INDEX)
        inputs = torch.where(chosen, args.mask_token_id, tokens)
        batches.append({"input_ids": inputs.to(device), "labels": labels.to(device)})
    return batches


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    device = benchkit.torch_device(args.device)
    tf32, amp_dtype = benchkit.precision_settings(args.precision, device)
    benchkit.set_tf32(tf32)

    config = BertConfig(
        vocab_size=args.vocab_size,
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        intermediate_size=4 * args.hidden,
        max_position_embeddings=max(512, args.seq_len),
    )
    model = BertForMaskedLM(config).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)
    autocast = (
        torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
    )

    loop = benchkit.TimedLoop(
        masked_batches(args, config, device),
        batch_size=args.batch_size,
        units="sentences/s",
        warmup=args.warmup,
        measures=args.measures,
        every=args.every,
        sync=benchkit.synchronizer(device),
    )
    for batch in loop:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = model(**batch).loss
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        loop.log_loss(loss.detach())


def parser() -> argparse.ArgumentParser:
    p = benchkit.arg_parser(
        "bert", __doc__.splitlines()[0], batch_size=32, warmup=5, measures=30, every=5
    )
    p.add_argument("--precision", choices=benchkit.PRECISIONS, default="tf32-fp16")
    p.add_argument("--seq-len", type=int, default=512, help="tokens per sentence")
    p.add_argument("--vocab-size", type=int, default=30522)
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--mask-prob", type=float, default=0.15)
    p.add_argument("--mask-token-id", type=int, default=103, help="[MASK] in bert-base-uncased")
    p.add_argument("--synthetic-batches", type=int, default=8, help="distinct on-device batches")
    p.add_argument("--lr", type=float, default=1e-4)
    return p


if __name__ == "__main__":
    benchkit.main(train, parser())
