"""``mbctl list`` and ``mbctl vendors``: what can run, and on what."""

from __future__ import annotations

import json

import typer

from orchestrator.cli.console import out
from orchestrator.cli.options import Format, FormatOpt, SuiteOpt


def list_benchmarks(suite: SuiteOpt = "smoke", fmt: FormatOpt = Format.TABLE) -> None:
    """List the benchmarks of a suite with their weight, plan and unit."""
    from rich.table import Table

    from orchestrator import config

    loaded = config.load_suite(config.suite_path(suite))
    if fmt is Format.JSON:
        out.print_json(json.dumps(loaded.model_dump(mode="json")))
        return
    table = Table(title=f"suite {loaded.name}: {loaded.description}", title_justify="left")
    for col in ("benchmark", "definition", "weight", "plan", "unit", "tags", "enabled"):
        table.add_column(col, justify="right" if col == "weight" else "left")
    for b in loaded.benchmarks:
        table.add_row(
            b.name,
            b.definition,
            f"{b.weight:g}",
            str(b.plan),
            b.unit,
            ",".join(b.tags),
            "yes" if b.enabled else "no",
        )
    out.print(table)


def show_vendors(fmt: FormatOpt = Format.TABLE) -> None:
    """Show the vendor table and what was detected on this machine, and why."""
    from dataclasses import asdict

    from rich.table import Table

    from orchestrator import vendors

    found = vendors.detect()
    if fmt is Format.JSON:
        payload = {
            "detected": {
                "vendor": found.vendor.value,
                "driver": found.driver,
                "devices": [asdict(d) for d in found.devices],
                "reasons": list(found.reasons),
            },
            "vendors": [
                {
                    "vendor": s.vendor.value,
                    "title": s.title,
                    "base_image": s.base_image,
                    "visible_devices_env": list(s.visible_devices_env),
                    "k8s_resource": s.k8s_resource,
                    "telemetry": s.telemetry,
                }
                for s in vendors.VENDORS.values()
            ],
        }
        out.print_json(json.dumps(payload))
        return
    table = Table(title="vendors", title_justify="left")
    for col in (
        "vendor",
        "accelerators",
        "visible devices",
        "k8s resource",
        "telemetry",
        "base image",
    ):
        table.add_column(col)
    for s in vendors.VENDORS.values():
        mark = " [green](detected)[/]" if s.vendor is found.vendor else ""
        table.add_row(
            f"{s.vendor.value}{mark}",
            s.title,
            ", ".join(s.visible_devices_env) or "-",
            s.k8s_resource or "-",
            s.telemetry,
            s.base_image,
        )
    out.print(table)
    out.print(f"detected: [bold]{found.vendor.value}[/] with {len(found.devices)} device(s)")
    for d in found.devices:
        mem = f", {d.memory_mib} MiB" if d.memory_mib else ""
        out.print(f"  {d.index}: {d.name}{mem}{', ' + d.uuid if d.uuid else ''}", markup=False)
    for why in found.reasons:
        out.print(f"  - {why}", markup=False)


def register(app: typer.Typer) -> None:
    app.command("list")(list_benchmarks)
    app.command("vendors")(show_vendors)
