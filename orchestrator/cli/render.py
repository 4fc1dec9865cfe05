"""The ``mbctl render`` group: deployment files (Compose, Kubernetes) written from a plan."""

from __future__ import annotations

import typer

render_app = typer.Typer(
    name="render",
    help="Write deployment files for a suite: `render compose`, `render k8s`.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(render_app, name="render")
