"""``mbctl render slurm``: a suite's sbatch scripts (one per job) and a submit.sh, to read, edit and submit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.console import out
from orchestrator.cli.options import (
    DataOpt,
    ExcludeOpt,
    ImageOpt,
    LockOpt,
    PhaseChoice,
    ProfileOpt,
    PythonOpt,
    RegistryAliasOpt,
    RegistryOpt,
    SelectOpt,
    SetOpt,
    SlurmConfigOpt,
    SuiteOpt,
)
from orchestrator.cli.render import NodeDevicesOpt, NodesOpt, RenderVendorOpt


def render_slurm(
    vendor: RenderVendorOpt,
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder to write the scripts to.")],
    suite: SuiteOpt = "standard",
    profile: ProfileOpt = None,
    select: SelectOpt = None,
    exclude: ExcludeOpt = None,
    overrides: SetOpt = None,
    devices: NodeDevicesOpt = None,
    nodes: NodesOpt = 1,
    registry: RegistryOpt = None,
    image_registry: RegistryAliasOpt = None,
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
    from orchestrator.backends.slurm import Runtime, load_settings
    from orchestrator.backends.slurm.render import SUBMIT, write_scripts
    from orchestrator.cli.render import print_skipped, render_plan
    from orchestrator.errors import ImageError

    settings = load_settings(slurm_config)
    if python is not None:
        settings = settings.model_copy(update={"python": python})
    plan, run_phase = render_plan(
        vendor=vendor,
        suite=suite,
        profile=profile,
        select=select,
        exclude=exclude,
        overrides=overrides,
        devices=devices,
        nodes=nodes,
        registry=registry or image_registry,
        lock=lock,
        image=image,
        phase=phase,
        # without a container runtime the jobs run the benchmarks' own environments
        images=settings.runtime is not Runtime.NONE,
        context=f"runtime {settings.runtime.value}",
        image_error=ImageError,
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
    print_skipped(plan)
    out.print(
        f"wrote {len(written)} files to {output} ({len(plan.jobs)} jobs, runtime {settings.runtime.value})"
    )
    out.print(f"submit with: {output / SUBMIT}", markup=False)


def register(app: typer.Typer) -> None:
    """Add ``slurm`` to the ``render`` group."""
    app.command("slurm")(render_slurm)
