"""Generates the synthetic wikitext corpus and trains its tokenizer; returns at once when present."""

from __future__ import annotations

import argparse
import sys

import data


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="llama-prepare")
    parser.add_argument("--seed", type=int, default=0)
    data.add_arguments(parser)
    # prepare.py receives main.py's whole command line; only the dataset options matter here.
    args, _ = parser.parse_known_args(argv)
    spec = data.params(args)
    print(f"{spec['dataset']} ready in {data.materialise(spec, data.generate(spec))}")


if __name__ == "__main__":
    main(sys.argv[1:])
