"""The ``mbctl render`` group: deployment files (Compose, Kubernetes) written from a plan."""

from __future__ import annotations

import typer

render_app = typer.Typer(
    name="render",
    help="Write deployment files for a suite: `render compose`, `render k8s`, `render slurm`.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    from orchestrator.cli import slurm

    slurm.register(render_app)
    app.add_typer(render_app, name="render")
