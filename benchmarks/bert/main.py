"""BERT masked-language-model training throughput (sentences/s) with transformers, synthetic sentences.

Milabench's ``huggingface`` benchmark with ``--model Bert``: ``AutoModelForMaskedLM`` of the
default ``BertConfig`` (bert-base, 110M parameters) with random weights, trained with Adam under
``--precision`` (the TF32 switch and the autocast dtype its name says: fp32, tf32, fp16, bf16,
tf32-fp16). As there, a batch's sentences are random token ids with random labels at every
position (the MLM loss over the whole sequence), the same ``--batch-size`` samples served again
and again by a DataLoader with ``--num-workers`` processes.
"""

from __future__ import annotations

import argparse

import benchkit
import torch
from transformers import BertConfig, BertForMaskedLM


def make_config(args: argparse.Namespace) -> BertConfig:
    """The default BertConfig (bert-base) with the sizes of the command line (its defaults: the same)."""
    return BertConfig(
        vocab_size=args.vocab_size,
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        intermediate_size=4 * args.hidden,
        max_position_embeddings=max(512, args.seq_len),
    )


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    device = benchkit.torch_device(args.device)
    config = make_config(args)
    model = BertForMaskedLM(config).to(device).train()
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
        "bert", __doc__.splitlines()[0], batch_size=32, warmup=5, measures=30, every=5
    )
    p.add_argument("--precision", choices=benchkit.PRECISIONS, default="tf32-fp16")
    p.add_argument("--seq-len", type=int, default=512, help="tokens per sentence")
    p.add_argument("--vocab-size", type=int, default=30522)
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--num-workers", type=int, default=8, help="DataLoader processes")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (Milabench's)")
    return p


if __name__ == "__main__":
    benchkit.main(train, parser())
