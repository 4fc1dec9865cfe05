"""Measure MetricsParser throughput (lines/s) on typical protocol output; prints the figures."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.metrics import MetricsParser


def _rate_lines(n: int) -> list[str]:
    t0 = 1_732_363_200.0
    return [
        json.dumps(
            {
                "mbctl": 1,
                "event": "rate",
                "t": t0 + i * 0.25,
                "value": 1234.5 + (i % 97),
                "units": "items/s",
                "task": "train",
            }
        )
        + "\n"
        for i in range(n)
    ]


def _mixed_lines(n: int) -> list[str]:
    """Realistic mix: mostly rates, some output, voir lines, telemetry and garbage."""
    rates = _rate_lines(n)
    out: list[str] = []
    for i, line in enumerate(rates):
        k = i % 10
        if k < 6:
            out.append(line)
        elif k == 6:
            out.append(f"Epoch 1 step {i}: loss=2.3 lr=1e-4\n")
        elif k == 7:
            out.append(
                '{"event": "data", "data": {"task": "train", "rate": 61.0, "units": "items/s"},'
                ' "pipe": "data"}\n'
            )
        elif k == 8:
            out.append(
                '{"mbctl": 1, "event": "gpu", "t": 1.5, "devices": {"0": {"memory": [25280.0,'
                ' 81251.2], "load": 0.98, "temperature": 48, "power": 310.5}}}\n'
            )
        else:
            out.append('{"mbctl": 1, "event": "rate", "value": oops\n')
    return out


def measure(lines: list[str], repeat: int) -> float:
    best = 0.0
    for _ in range(repeat):
        parser = MetricsParser()
        feed = parser.feed
        start = time.perf_counter()
        for line in lines:
            feed(line)
        elapsed = time.perf_counter() - start
        best = max(best, len(lines) / elapsed)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=200_000, help="lines per measurement")
    ap.add_argument("--repeat", type=int, default=5, help="measurements; the best is kept")
    args = ap.parse_args()
    rate = measure(_rate_lines(args.n), args.repeat)
    mixed = measure(_mixed_lines(args.n), args.repeat)
    print(f"rate lines:  {rate:,.0f} lines/s")
    print(f"mixed lines: {mixed:,.0f} lines/s")


if __name__ == "__main__":
    main()
