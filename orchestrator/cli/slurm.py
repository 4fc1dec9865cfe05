"""``mbctl render slurm``: a suite's sbatch scripts (one per job) and a submit.sh, to read, edit and submit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.console import err, out
from orchestrator.cli.options import (
    DataOpt,
    ExcludeOpt,
    ImageOpt,
    ImageRegistryOpt,
    LockOpt,
    PhaseChoice,
    ProfileOpt,
    PythonOpt,
    SelectOpt,
    SetOpt,
    SlurmConfigOpt,
    SuiteOpt,
)


def render_slurm(
    vendor: Annotated[
        str,
        typer.Option("--vendor", help="cpu, cuda, rocm, hpu or xpu: the cluster's accelerators."),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder to write the scripts to.")],
    suite: SuiteOpt = "standard",
    profile: ProfileOpt = None,
    select: SelectOpt = None,
    exclude: ExcludeOpt = None,
    overrides: SetOpt = None,
    devices: Annotated[
        str | None,
        typer.Option(
            "--devices", help="Accelerators per node: a count (8) or indices (0,1); none on cpu."
        ),
    ] = None,
    nodes: Annotated[
        int, typer.Option("--nodes", min=1, help="Nodes a multi-node benchmark may span.")
    ] = 1,
    image_registry: ImageRegistryOpt = None,
    lock: LockOpt = None,
    image: ImageOpt = None,
    slurm_config: SlurmConfigOpt = None,
    data: DataOpt = None,
    python: PythonOpt = None,
    phase: Annotated[
        PhaseChoice,
        typer.Option(
            "--phase", help="run: the benchmarks; prepare: fill the shared dataset cache."
        ),
    ] = PhaseChoice.RUN,
    array: Annotated[
        bool,
        typer.Option(
            "--array", help="Also one job array per benchmark; submit.sh submits the arrays."
        ),
    ] = False,
) -> None:
    """Write one sbatch script per job of a suite and a submit.sh that queues them in order."""
    from orchestrator import config, workflow
    from orchestrator.backends.base import Phase
    from orchestrator.backends.slurm import Runtime, load_settings
    from orchestrator.backends.slurm.render import SUBMIT, write_scripts
    from orchestrator.errors import ConfigError, ImageError
    from orchestrator.images import image_refs
    from orchestrator.plan import make_plan, parse_devices

    settings = load_settings(slurm_config)
    if python is not None:
        settings = settings.model_copy(update={"python": python})
    chosen = config.load_selected(
        suite,
        overrides=overrides or (),
        profile=profile,
        select=select or (),
        exclude=exclude or (),
    )
    refs = (
        image_refs(chosen, vendor, registry=image_registry, lock=lock, explicit=image or ())
        if settings.runtime is not Runtime.NONE
        else {}
    )
    plan = make_plan(
        chosen,
        vendor=vendor,
        devices=parse_devices(devices) if devices else (),
        nodes=nodes,
        images=refs,
    )
    run_phase = Phase(phase.value)
    if run_phase is Phase.PREPARE:
        planned = len(plan.jobs)
        plan = workflow.preparation_plan(plan, config.benchmarks_root())
        if planned and not plan.jobs:
            raise ConfigError("nothing to prepare: no benchmark of the selection has a prepare.py")
    if not plan.jobs:
        raise ConfigError(
            "nothing to render: every benchmark was skipped",
            hint="; ".join(f"{s.bench}: {s.reason}" for s in plan.skipped) or "empty selection",
        )
    missing = sorted({j.bench for j in plan.jobs if not j.image})
    if settings.runtime is not Runtime.NONE and missing:
        raise ImageError(
            f"no image for {', '.join(missing)} (runtime {settings.runtime.value})",
            hint="pass --lock images.lock.yaml, --image BENCH=REF or --image-registry",
        )
    data_dir = (data or settings.data_dir or workflow.default_data_dir()).absolute()
    written = write_scripts(
        plan,
        settings,
        output,
        phase=run_phase,
        data_dir=data_dir,
        benchmarks_root=config.benchmarks_root(),
        array=array,
    )
    for s in plan.skipped:
        err.print(f"[yellow]skipped[/] {s.bench}: {s.reason}")
    out.print(
        f"wrote {len(written)} files to {output} ({len(plan.jobs)} jobs, runtime {settings.runtime.value})"
    )
    out.print(f"submit with: {output / SUBMIT}", markup=False)


def register(app: typer.Typer) -> None:
    """Add ``slurm`` to the ``render`` group."""
    app.command("slurm")(render_slurm)
