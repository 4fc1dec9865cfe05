"""Made-up English for the text datasets: a Zipf-distributed lexicon and a BPE tokenizer trainer.

Nothing can be downloaded in a benchmark, so text datasets are generated from pronounceable
made-up words drawn with Zipf's law; the tokenizer is trained on the generated corpus (the
``tokenizers`` package is imported only when training, ``transformers`` only when loading).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]


class Lexicon:
    """Pronounceable made-up words drawn with Zipf's law, as word frequencies are in English."""

    ONSETS = ("", "b", "c", "d", "f", "g", "h", "l", "m", "n", "p", "r", "s", "t", "st", "ch")
    VOWELS = ("a", "e", "i", "o", "u", "ea", "io", "ou")
    CODAS = ("", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ng")

    def __init__(self, size: int, rng: random.Random) -> None:
        words: set[str] = set()
        while len(words) < size:
            syllables = min(1 + int(rng.expovariate(0.9)), 5)
            words.add(
                "".join(
                    rng.choice(self.ONSETS) + rng.choice(self.VOWELS) + rng.choice(self.CODAS)
                    for _ in range(syllables)
                )
            )
        # Short words are the frequent ones, as in natural language.
        self.words = sorted(words, key=lambda w: (len(w), w))
        self.cumulative = list(itertools.accumulate(1.0 / (rank + 1) for rank in range(size)))
        self.rng = rng

    def sample(self, count: int) -> list[str]:
        return self.rng.choices(self.words, cum_weights=self.cumulative, k=count)


def train_tokenizer(texts: Path, vocab: int, out: Path) -> None:
    """Train a byte-level BPE tokenizer of ``vocab`` tokens on the file ``texts``, save to ``out``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train([str(texts)], trainer)
    tokenizer.save(str(out))


def train_tokenizer_on(texts: Iterable[str], vocab: int, out: Path) -> None:
    """:func:`train_tokenizer` on ``texts`` joined by newlines, through a ``corpus.txt`` beside
    ``out`` that is removed afterwards (training reads files; a dataset keeps its own format)."""
    corpus = out.with_name("corpus.txt")
    corpus.write_text("\n".join(texts))
    try:
        train_tokenizer(corpus, vocab, out)
    finally:
        corpus.unlink()


def pretrained_tokenizer(path: str | Path, **options: Any) -> Any:
    """The tokenizer :func:`train_tokenizer` saved at ``path`` as a transformers
    ``PreTrainedTokenizerFast``, its unknown, start and end tokens named; ``options`` (e.g.
    ``padding_side="left"``) go to the constructor."""
    from transformers import PreTrainedTokenizerFast

    unk, bos, eos = SPECIAL_TOKENS
    return PreTrainedTokenizerFast(
        tokenizer_file=str(path), bos_token=bos, eos_token=eos, unk_token=unk, **options
    )


class RepeatedSamples:
    """``len(samples)`` fixed samples served ``repeat`` times over (Milabench's SyntheticData):
    a map-style dataset for torch's DataLoader, with no torch import of its own."""

    def __init__(self, samples: list[Any], repeat: int = 100000) -> None:
        self.samples = samples
        self.repeat = repeat

    def __len__(self) -> int:
        return len(self.samples) * self.repeat

    def __getitem__(self, index: int) -> Any:
        return self.samples[index % len(self.samples)]


def random_token_batches(
    *, vocab: int, seq_len: int, batch_size: int, workers: int, seed: int
) -> Any:
    """The huggingface benchmarks' data, as Milabench makes it: one batch of random token ids
    with random labels at every position, served again and again by a DataLoader."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    samples = [
        {
            "input_ids": torch.randint(0, vocab, (seq_len,), generator=generator),
            "labels": torch.randint(0, vocab, (seq_len,), generator=generator),
        }
        for _ in range(batch_size)
    ]
    return torch.utils.data.DataLoader(
        RepeatedSamples(samples), batch_size=batch_size, num_workers=workers
    )
