"""The ``mbctl render`` group: deployment files (Compose, Kubernetes, Slurm) written from a plan.

Also what its commands share: the plan of the selected suite with its images, and the
skipped-benchmark lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.cli.options import VENDORS, PhaseChoice

if TYPE_CHECKING:
    from orchestrator.backends.base import Phase
    from orchestrator.errors import OrchestratorError
    from orchestrator.plan import Plan

render_app = typer.Typer(
    name="render",
    help="Write deployment files for a suite: `render compose`, `render k8s`, `render slurm`.",
    no_args_is_help=True,
)

#: The accelerators of the machines the files are for (required: nothing is detected here).
RenderVendorOpt = Annotated[
    str,
    typer.Option("--vendor", metavar=VENDORS, help="The accelerators of the machines to run on."),
]
#: Devices of each node of a cluster (Kubernetes, Slurm), not of this host.
NodeDevicesOpt = Annotated[
    str | None,
    typer.Option(
        "--devices", help="Accelerators per node: a count (8) or indices (0,1); none on cpu."
    ),
]
NodesOpt = Annotated[
    int, typer.Option("--nodes", min=1, help="Nodes a multi-node benchmark may span.")
]

#: What every render command says when a job has no image.
IMAGE_HINT = (
    "pass --lock images.lock.yaml (from mbctl build + mbctl push), "
    "--registry HOST/PATH (placeholder tags) or --image BENCH=REF"
)


def render_plan(
    *,
    vendor: str,
    suite: str,
    profile: str | None,
    select: Sequence[str] | None,
    exclude: Sequence[str] | None,
    overrides: Sequence[str] | None,
    devices: str | None,
    nodes: int = 1,
    registry: str | None,
    lock: Path | None,
    image: Sequence[str] | None,
    phase: PhaseChoice,
    images: bool = True,
    context: str,
    image_error: type[OrchestratorError] | None = None,
) -> tuple[Plan, Phase]:
    """The plan a render command writes, and its phase: the selected suite planned for
    ``vendor`` with its images (unless ``images`` is false: the jobs run without containers).

    Raises when nothing is left to render, or (``image_error``, default ConfigError) when a job
    has no image; ``context`` says what asked for them (``vendor cpu``, ``runtime podman``).
    """
    from orchestrator import config, workflow
    from orchestrator.backends.base import Phase
    from orchestrator.errors import ConfigError
    from orchestrator.images import image_refs
    from orchestrator.plan import make_plan, parse_devices

    chosen = config.load_selected(
        suite,
        overrides=overrides or (),
        profile=profile,
        select=select or (),
        exclude=exclude or (),
    )
    refs = (
        image_refs(chosen, vendor, registry=registry, lock=lock, explicit=image or ())
        if images
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
    missing = sorted({job.bench for job in plan.jobs if not job.image})
    if images and missing:
        raise (image_error or ConfigError)(
            f"no image for {', '.join(missing)} ({context})", hint=IMAGE_HINT
        )
    return plan, run_phase


def print_skipped(plan: Plan) -> None:
    """One warning line per benchmark the plan skipped, and why."""
    from rich.markup import escape

    from orchestrator.cli.console import err

    for s in plan.skipped:
        err.print(f"[yellow]skipped[/] {escape(s.bench)}: {escape(s.reason)}")


def register(app: typer.Typer) -> None:
    from orchestrator.cli import slurm

    slurm.register(render_app)
    app.add_typer(render_app, name="render")
