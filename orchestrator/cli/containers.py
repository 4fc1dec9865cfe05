"""``mbctl clean``: remove the containers mbctl left behind (labelled ``mbctl.run``), and nothing else."""

from __future__ import annotations

from typing import Annotated

import typer

from orchestrator.cli.console import out


def clean(
    run: Annotated[
        str | None,
        typer.Option("--run", help="Only the containers of this run id (running ones too)."),
    ] = None,
    everything: Annotated[
        bool, typer.Option("--all", help="Also containers still running (stops runs in progress).")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be removed; remove nothing.")
    ] = False,
) -> None:
    """Remove containers of mbctl runs: by default the stopped ones a crashed run left."""
    from rich.table import Table

    from orchestrator.backends import docker

    client = docker.connect()
    found = docker.clean(client, run_id=run, everything=everything, dry_run=dry_run)
    kept = [] if run or everything else [c for c in docker.leftovers(client) if c.running]
    if kept:
        out.print(f"{len(kept)} running mbctl container(s) kept: pass --all, or --run ID")
    if not found:
        out.print(
            "nothing to clean: no stopped mbctl container"
            if not run
            else f"no container of run {run}"
        )
        return
    table = Table(box=None, pad_edge=False)
    for col in ("container", "name", "run", "job", "status"):
        table.add_column(col)
    for item in found:
        table.add_row(item.id, item.name, item.run, item.job or "-", item.status)
    out.print(table)
    verb = "would remove" if dry_run else "removed"
    out.print(f"{verb} {len(found)} container(s)")


def register(app: typer.Typer) -> None:
    app.command("clean")(clean)
