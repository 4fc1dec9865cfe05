"""``mbctl render slurm`` as a library: a plan's sbatch scripts and the submit.sh that queues them in order."""

from __future__ import annotations

import itertools
import shlex
from pathlib import Path

from orchestrator.backends.base import Phase, RunContext
from orchestrator.backends.slurm.script import batch_script, job_name, sbatch_options
from orchestrator.backends.slurm.settings import SlurmSettings
from orchestrator.errors import ConfigError
from orchestrator.plan import Job, Plan

SUBMIT = "submit.sh"


def _groups(plan: Plan) -> list[tuple[str, list[Job]]]:
    return [
        (bench, list(jobs)) for bench, jobs in itertools.groupby(plan.jobs, key=lambda j: j.bench)
    ]


def submit_script(plan: Plan, *, array: bool = False) -> str:
    """Queue every script: jobs of one benchmark together, each benchmark after the previous one
    ended (``afterany``), as ``mbctl run`` orders them, so benchmarks never share a node's devices.
    With ``array``, each benchmark is one job array."""
    lines = [
        "#!/bin/bash",
        f"# mbctl: queue the {len(plan.jobs)} jobs of suite {plan.suite} ({plan.vendor}) in order.",
        "# Each benchmark starts once every job of the previous one has ended.",
        "set -euo pipefail",
        'cd "$(dirname "$0")"',
        "mkdir -p logs",
        "after=''",
    ]
    for bench, jobs in _groups(plan):
        lines += ["", f"# {bench}", "ids=''"]
        names = (
            [(bench, f"{bench}.array.sbatch")]
            if array
            else [(j.id, f"{j.id}.sbatch") for j in jobs]
        )
        for name, script in names:
            lines.append(
                f'id=$(sbatch --parsable ${{after:+--dependency=afterany$after}} {shlex.quote(script)}) && ids="$ids:${{id%%;*}}"'
            )
            lines.append(f'echo "submitted {name}: ${{id%%;*}}"')
        lines.append('after="$ids"')
    return "\n".join(lines) + "\n"


def array_script(
    bench: str, jobs: list[Job], settings: SlurmSettings, folder: Path, run_id: str
) -> str:
    """One job array for the jobs of one benchmark: task ``i`` runs the script of job ``i``.

    The jobs of a benchmark ask for the same resources (one device each, or the same count), so
    the array asks for what its first job does; each task runs that job's own script with bash,
    where its ``#SBATCH`` lines are comments and its ``srun`` uses the task's allocation.
    """
    options = sbatch_options(
        jobs[0],
        settings,
        name=job_name(run_id, bench),
        output=str(folder / "logs" / f"{bench}.%A_%a.out"),
    )
    scripts = ["  " + shlex.quote(str(folder / f"{j.id}.sbatch")) for j in jobs]
    return (
        "\n".join(
            [
                "#!/bin/bash",
                f"# mbctl: the {len(jobs)} job(s) of benchmark {bench} as one array; task i runs job i.",
                f"# submit by hand with: sbatch {bench}.array.sbatch",
                *(f"#SBATCH {o}" for o in options),
                f"#SBATCH --array=0-{len(jobs) - 1}",
                "set -euo pipefail",
                "",
                "scripts=(",
                *scripts,
                ")",
                'exec bash "${scripts[$SLURM_ARRAY_TASK_ID]}"',
            ]
        )
        + "\n"
    )


def write_scripts(
    plan: Plan,
    settings: SlurmSettings,
    output: Path,
    *,
    phase: Phase,
    data_dir: Path,
    benchmarks_root: Path,
    array: bool = False,
) -> list[Path]:
    """Write one ``<job>.sbatch`` per job (and with ``array`` one ``<bench>.array.sbatch`` per
    benchmark) and ``submit.sh``; the paths written.

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
        if array:
            for bench, jobs in _groups(plan):
                path = output / f"{bench}.array.sbatch"
                path.write_text(
                    array_script(bench, jobs, settings, output, ctx.run_id), encoding="utf-8"
                )
                written.append(path)
        path = output / SUBMIT
        path.write_text(submit_script(plan, array=array), encoding="utf-8")
        path.chmod(0o755)
    except OSError as exc:
        raise ConfigError(f"cannot write scripts to {output}: {exc.strerror or exc}") from None
    return [*written, path]
