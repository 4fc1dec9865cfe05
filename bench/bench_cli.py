"""Measures `mbctl --help` (target <= 0.15 s: heavy imports stay lazy)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import Figures, measure


def main() -> Figures:
    exe = shutil.which("mbctl", path=str(Path(sys.executable).parent)) or "mbctl"
    figures = measure([exe, "--help"], repeats=10)
    print(figures.line("mbctl --help", wall=0.15))
    return figures


if __name__ == "__main__":
    main()
