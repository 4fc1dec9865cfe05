"""Reformer causal language-model training throughput (sentences/s) with transformers, synthetic text.

The default ``ReformerConfig`` is the 6M-parameter model of the report: 6 layers alternating local
and LSH attention, reversible residuals, axial position embeddings over 4,096-token sequences
(64 x 64) and a 320-symbol character vocabulary. Sentences are random symbols; the loss is the
next-symbol prediction of ``ReformerModelWithLMHead``.
"""

from __future__ import annotations

import argparse
import contextlib
import math

import benchkit
import torch
from transformers import ReformerConfig, ReformerModelWithLMHead


def make_config(args: argparse.Namespace) -> ReformerConfig:
    side = math.isqrt(args.seq_len)
    if side * side != args.seq_len or args.seq_len % args.chunk:
        raise ValueError(
            f"--seq-len {args.seq_len} must be a square (axial position embeddings) "
            f"and a multiple of --chunk {args.chunk}"
        )
    return ReformerConfig(
        attn_layers=[("local", "lsh")[i % 2] for i in range(args.layers)],
        hidden_size=args.hidden,
        feed_forward_size=2 * args.hidden,
        num_attention_heads=args.heads,
        attention_head_size=args.head_size,
        axial_pos_shape=(side, side),
        axial_pos_embds_dim=(args.hidden // 4, args.hidden - args.hidden // 4),
        max_position_embeddings=args.seq_len,
        lsh_attn_chunk_length=args.chunk,
        local_attn_chunk_length=args.chunk,
        # Recent transformers leave the bucket count to be inferred on the first forward pass,
        # which changes the model mid-run; 128 is what that inference gives at 4,096 tokens.
        num_buckets=args.buckets,
        is_decoder=True,
    )


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    device = benchkit.torch_device(args.device)
    tf32, amp_dtype = benchkit.precision_settings(args.precision, device)
    benchkit.set_tf32(tf32)

    config = make_config(args)
    model = ReformerModelWithLMHead(config).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)
    autocast = (
        torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
    )

    sentences = benchkit.fake_tokens(
        batches=args.synthetic_batches,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        vocab=config.vocab_size,
        seed=args.seed,
        device=device,
    )
    loop = benchkit.TimedLoop(
        sentences,
        batch_size=args.batch_size,
        units="sentences/s",
        warmup=args.warmup,
        measures=args.measures,
        every=args.every,
        sync=benchkit.synchronizer(device),
    )
    for tokens in loop:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = model(input_ids=tokens, labels=tokens).loss
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        loop.log_loss(loss.detach())


def parser() -> argparse.ArgumentParser:
    p = benchkit.arg_parser(
        "reformer", __doc__.splitlines()[0], batch_size=64, warmup=5, measures=30, every=5
    )
    p.add_argument("--precision", choices=benchkit.PRECISIONS, default="tf32-fp16")
    p.add_argument("--seq-len", type=int, default=4096, help="symbols per sentence (a square)")
    p.add_argument("--layers", type=int, default=6, help="alternating local/LSH attention layers")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--head-size", type=int, default=64)
    p.add_argument("--chunk", type=int, default=64, help="local and LSH attention chunk length")
    p.add_argument("--buckets", type=int, default=128, help="LSH hash buckets")
    p.add_argument("--synthetic-batches", type=int, default=4, help="distinct on-device batches")
    p.add_argument("--lr", type=float, default=1e-4)
    return p


if __name__ == "__main__":
    benchkit.main(train, parser())
