"""``mbctl render slurm`` as a library: a plan's sbatch scripts and the submit.sh that queues them in order."""

from __future__ import annotations

import itertools
import shlex
from pathlib import Path

from orchestrator.backends.base import Phase, RunContext
from orchestrator.backends.slurm.script import batch_script
from orchestrator.backends.slurm.settings import SlurmSettings
from orchestrator.errors import ConfigError
from orchestrator.plan import Plan

SUBMIT = "submit.sh"


def submit_script(plan: Plan) -> str:
    """Queue every script: jobs of one benchmark together, each benchmark after the previous one
    ended (``afterany``), as ``mbctl run`` orders them, so benchmarks never share a node's devices."""
    lines = [
        "#!/bin/bash",
        f"# mbctl: queue the {len(plan.jobs)} jobs of suite {plan.suite} ({plan.vendor}) in order.",
        "# Each benchmark starts once every job of the previous one has ended.",
        "set -euo pipefail",
        'cd "$(dirname "$0")"',
        "mkdir -p logs",
        "after=''",
    ]
    for bench, jobs in itertools.groupby(plan.jobs, key=lambda j: j.bench):
        lines += ["", f"# {bench}", "ids=''"]
        for job in jobs:
            script = shlex.quote(f"{job.id}.sbatch")
            lines.append(
                f'id=$(sbatch --parsable ${{after:+--dependency=afterany$after}} {script}) && ids="$ids:${{id%%;*}}"'
            )
            lines.append(f'echo "submitted {job.id}: ${{id%%;*}}"')
        lines.append('after="$ids"')
    return "\n".join(lines) + "\n"


def write_scripts(
    plan: Plan,
    settings: SlurmSettings,
    output: Path,
    *,
    phase: Phase,
    data_dir: Path,
    benchmarks_root: Path,
) -> list[Path]:
    """Write one ``<job>.sbatch`` per job and ``submit.sh``; the paths written.

    Paths inside the scripts are absolute: jobs' output goes to ``output/logs/<job>.<slurm id>.out``
    and the files benchmarks write to ``output/files/<job>/``.
    """
    output = Path(output).absolute()
    ctx = RunContext(
        run_id=f"{plan.suite}-{plan.vendor}",
        run_dir=output,
        data_dir=data_dir,
        benchmarks_root=benchmarks_root,
        phase=phase,
    )
    try:
        # sbatch does not create the folder of --output: a job submitted by hand would lose its log
        (output / "logs").mkdir(parents=True, exist_ok=True)
        written = []
        for job in plan.jobs:
            text = batch_script(
                job,
                ctx,
                settings,
                output=str(output / "logs" / f"{job.id}.%j.out"),
                data_dir=data_dir,
            )
            path = output / f"{job.id}.sbatch"
            path.write_text(text, encoding="utf-8")
            written.append(path)
        path = output / SUBMIT
        path.write_text(submit_script(plan), encoding="utf-8")
        path.chmod(0o755)
    except OSError as exc:
        raise ConfigError(f"cannot write scripts to {output}: {exc.strerror or exc}") from None
    return [*written, path]
