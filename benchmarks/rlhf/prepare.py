"""Generates the synthetic prompts and trains their tokenizer; returns at once when present."""

from __future__ import annotations

import sys

import benchkit
import data

if __name__ == "__main__":
    # prepare.py receives main.py's whole command line; only the dataset options matter here.
    benchkit.prepare_main(
        sys.argv[1:],
        prog="rlhf-prepare",
        add_arguments=data.add_arguments,
        params=data.params,
        generate=data.generate,
    )
