"""``mbctl clean``: remove the containers (or Kubernetes Jobs) mbctl left behind, labelled ``mbctl.run``."""

from __future__ import annotations

from typing import Annotated

import typer

from orchestrator.cli.console import out
from orchestrator.cli.options import K8sConfigOpt, KubeconfigOpt, NamespaceOpt


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
    backend: Annotated[
        str, typer.Option("--backend", help="docker, or kubernetes (Jobs and Services).")
    ] = "docker",
    namespace: NamespaceOpt = None,
    kubeconfig: KubeconfigOpt = None,
    k8s_config: K8sConfigOpt = None,
) -> None:
    """Remove containers (or Kubernetes Jobs) of mbctl runs: by default the stopped ones a crashed run left."""
    from rich.table import Table

    if backend == "kubernetes":
        from orchestrator.cli.k8s import clean_kubernetes

        clean_kubernetes(run, everything=everything, dry_run=dry_run, namespace=namespace,
                         kubeconfig=kubeconfig, k8s_config=k8s_config)  # fmt: skip
        return
    if backend != "docker":
        from orchestrator.errors import ConfigError

        raise ConfigError(
            f"--backend {backend}: nothing to clean there", hint="docker or kubernetes"
        )

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
