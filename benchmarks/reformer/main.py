"""Reformer masked-language-model training throughput (sentences/s) with transformers, synthetic text.

Milabench's ``huggingface`` benchmark with ``--model Reformer``: ``AutoModelForMaskedLM`` of the
default ``ReformerConfig`` (6M parameters: 6 layers alternating local and LSH attention,
reversible residuals, axial position embeddings over 4,096-symbol sequences, a 320-symbol
vocabulary) with 128 LSH buckets, trained with Adam under ``--precision``. As there, a batch's
sentences are random symbols with random labels at every position (the MLM loss over the whole
sequence), the same ``--batch-size`` samples served again and again by a DataLoader with
``--num-workers`` processes, and the loss is not masked.
"""

from __future__ import annotations

import argparse
import math

import benchkit
import torch
from transformers import ReformerConfig, ReformerForMaskedLM

DEFAULTS = ReformerConfig()


def make_config(args: argparse.Namespace) -> ReformerConfig:
    """The default ReformerConfig with the sizes of the command line (its defaults: the same)."""
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
        # The default leaves the bucket count to be inferred on the first forward pass, which
        # changes the model mid-run; Milabench sets 128 (what that inference gives at 4,096).
        num_buckets=args.buckets,
    )


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    device = benchkit.torch_device(args.device)
    config = make_config(args)
    model = ReformerForMaskedLM(config).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps = benchkit.StepLoop(
        benchkit.random_token_batches(
            vocab=config.vocab_size,
            seq_len=args.seq_len,
            batch_size=args.batch_size,
            workers=args.num_workers,
            seed=args.seed,
        ),
        args,
        device=device,
        units="sentences/s",
        optimizer=optimizer,
    )
    for batch in steps:
        with steps.autocast():
            loss = model(**batch).loss
        steps.step(loss)


def parser() -> argparse.ArgumentParser:
    p = benchkit.arg_parser(
        "reformer", __doc__.splitlines()[0], batch_size=32, warmup=5, measures=30, every=5
    )
    p.add_argument("--precision", choices=benchkit.PRECISIONS, default="tf32-fp16")
    p.add_argument(
        "--seq-len",
        type=int,
        default=DEFAULTS.max_position_embeddings,
        help="symbols per sentence (a square)",
    )
    p.add_argument(
        "--layers",
        type=int,
        default=len(DEFAULTS.attn_layers),
        help="alternating local/LSH attention layers",
    )
    p.add_argument("--hidden", type=int, default=DEFAULTS.hidden_size)
    p.add_argument("--heads", type=int, default=DEFAULTS.num_attention_heads)
    p.add_argument("--head-size", type=int, default=DEFAULTS.attention_head_size)
    p.add_argument(
        "--chunk",
        type=int,
        default=DEFAULTS.lsh_attn_chunk_length,
        help="local and LSH attention chunk length",
    )
    p.add_argument("--buckets", type=int, default=128, help="LSH hash buckets")
    p.add_argument("--num-workers", type=int, default=8, help="DataLoader processes")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (Milabench's)")
    return p


if __name__ == "__main__":
    benchkit.main(train, parser())
