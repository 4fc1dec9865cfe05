"""Measures `mbctl report` on a Milabench 4×L40S-size run (145 files, ~86k lines; written once
by milabench_fixture.py under .cache/bench). Targets: <= 0.35 s and <= 60 MB.

A one-file run of the same shape is measured beside it: what every report costs whatever its
size (interpreter, CLI and its argument parsing, rich), so the difference is the reading and
scoring of the data."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import milabench_fixture  # noqa: E402
from measure import Figures, measure  # noqa: E402


def _one_file(folder: Path, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    first = min(folder.glob("*.data"))
    if not (into / first.name).is_file():
        shutil.copyfile(first, into / first.name)
    return into


def main() -> Figures:
    cache = HERE.parent / ".cache" / "bench"
    folder = milabench_fixture.write(cache / "milabench-4xl40s")
    exe = shutil.which("mbctl", path=str(Path(sys.executable).parent)) or "mbctl"
    figures = measure([exe, "report", str(folder)])
    print(figures.line("mbctl report (Milabench 4xL40S, 145 files)", wall=0.35, rss_mb=60))
    base = measure([exe, "report", str(_one_file(folder, cache / "milabench-1file"))])
    print(
        f"  of which start-up (a 1-file run): cpu {base.cpu * 1000:.0f} ms; "
        f"reading and scoring 145 files: cpu {(figures.cpu - base.cpu) * 1000:.0f} ms"
    )
    return figures


if __name__ == "__main__":
    main()
