"""Every suite entry's command line, in every profile, parses with its benchmark's own parser.

The tiny run proves the tiny argv; this catches a misspelt option that only the full profile
passes, without running anything that needs an accelerator.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from orchestrator import config

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

# Imports each definition's main.py in turn (each folder has its own data.py, so the module cache
# is cleared between folders) and parses every command line given for it.
PARSE_ALL = """
import json, sys
from pathlib import Path
jobs, failures = json.load(sys.stdin), []
for folder, argvs in jobs.items():
    for name in ("main", "data"):
        sys.modules.pop(name, None)
    sys.path.insert(0, folder)
    import main
    for argv in argvs:
        try:
            main.parser().parse_args(argv)
        except SystemExit:
            failures.append([Path(folder).name, argv])
    sys.path.remove(folder)
print(json.dumps(failures))
"""


@pytest.mark.slow
def test_every_profile_argv_parses(bench_python: Path) -> None:
    jobs: dict[str, list[list[str]]] = {}
    for suite in ("standard", "precision"):
        for profile in (None, "tiny", "full"):
            loaded = config.load_suite(BENCHMARKS / "suites" / f"{suite}.yaml", profile=profile)
            for bench in (b for b in loaded.benchmarks if b.status == "ready"):
                folder = str(BENCHMARKS / bench.definition)
                jobs.setdefault(folder, []).append(list(bench.command_args()))
    proc = subprocess.run(
        [str(bench_python), "-c", PARSE_ALL],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(BENCHMARKS / "benchkit")},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.splitlines()[-1]) == []
