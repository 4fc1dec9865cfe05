"""Measures `mbctl report` on a Milabench 4×L40S-size run (145 files, ~86k lines; written once
by milabench_fixture.py under .cache/bench). Targets: <= 0.35 s and <= 60 MB."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import milabench_fixture  # noqa: E402
from measure import Figures, measure  # noqa: E402


def main() -> Figures:
    folder = milabench_fixture.write(HERE.parent / ".cache" / "bench" / "milabench-4xl40s")
    exe = shutil.which("mbctl", path=str(Path(sys.executable).parent)) or "mbctl"
    figures = measure([exe, "report", str(folder)])
    print(figures.line("mbctl report (Milabench 4xL40S, 145 files)", wall=0.35, rss_mb=60))
    return figures


if __name__ == "__main__":
    main()
