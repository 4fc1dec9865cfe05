"""``mbctl render k8s`` (a suite's manifests for ``kubectl apply -k``) and ``clean --backend kubernetes``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.console import err, out
from orchestrator.cli.options import (
    ExcludeOpt,
    ImageOpt,
    K8sConfigOpt,
    LockOpt,
    NamespaceOpt,
    PhaseChoice,
    ProfileOpt,
    RegistryAliasOpt,
    RegistryOpt,
    SelectOpt,
    SetOpt,
    SuiteOpt,
)
from orchestrator.cli.render import NodeDevicesOpt, NodesOpt, RenderVendorOpt


def render_k8s(
    vendor: RenderVendorOpt,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder to write the manifests to.")
    ],
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
    k8s_config: K8sConfigOpt = None,
    namespace: NamespaceOpt = None,
    phase: Annotated[
        PhaseChoice,
        typer.Option("--phase", help="run: the benchmarks; prepare: jobs filling the dataset PVC."),
    ] = PhaseChoice.RUN,
) -> None:
    """Write a suite's Jobs (Indexed Jobs + Services across nodes), PVC, RBAC and a kustomization."""
    from orchestrator.backends.kubernetes import load_settings
    from orchestrator.backends.kubernetes.manifests import bundle_security_level, render_bundle
    from orchestrator.backends.kubernetes.render import write_manifests
    from orchestrator.cli.render import print_skipped, render_plan

    settings = load_settings(k8s_config, namespace=namespace)
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
        context=f"vendor {vendor}",
    )
    written = write_manifests(plan, settings, output, run_phase)
    print_skipped(plan)
    level = bundle_security_level(
        [m for m in render_bundle(plan, settings, run_phase).values() if m["kind"] == "Job"]
    )
    out.print(
        f"wrote {len(written)} files to {output} ({len(plan.jobs)} jobs, namespace "
        f"{settings.namespace}, Pod Security {level})"
    )
    if plan.nodes > 1 and any(j.nodes > 1 for j in plan.jobs) and not settings.queue_name:
        err.print(
            "[yellow]note[/] multi-node Jobs without queue_name (Kueue) are not admitted as a "
            "gang: ranks may hold GPUs while waiting for each other"
        )
    out.print(f"apply with: kubectl apply -k {output}", markup=False)


def clean_kubernetes(
    run: str | None,
    *,
    everything: bool,
    dry_run: bool,
    namespace: str | None,
    kubeconfig: str | None,
    k8s_config: Path | None,
) -> None:
    """``mbctl clean --backend kubernetes``: delete the Jobs and Services runs left, by run label."""
    from rich.table import Table

    from orchestrator.backends.kubernetes import KubernetesBackend, load_settings

    backend = KubernetesBackend(load_settings(k8s_config, namespace=namespace), kubeconfig)
    found = backend.clean(run, everything=everything, dry_run=dry_run)
    where = f"namespace {backend.namespace}"
    if not found:
        out.print(f"no object of run {run} in {where}" if run else f"nothing to clean in {where}")
        return
    table = Table(box=None, pad_edge=False)
    for col in ("kind", "name", "run", "status"):
        table.add_column(col)
    for item in found:
        table.add_row(item["kind"], item["name"], item["run"] or "-", item["status"])
    out.print(table)
    verb = "would delete" if dry_run else "deleted"
    out.print(f"{verb} {len(found)} object(s) in {where}")


def register(app: typer.Typer) -> None:
    """Add ``k8s`` to the ``render`` group (which ``orchestrator.cli.render`` adds to ``app``)."""
    from orchestrator.cli.render import render_app

    render_app.command("k8s")(render_k8s)
