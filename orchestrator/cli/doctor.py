"""``mbctl doctor``: can this host (or an image) run a vendor's benchmarks? A pass/fail table with fixes."""

from __future__ import annotations

from typing import Annotated

import typer

from orchestrator.cli.console import err, out
from orchestrator.cli.options import DataOpt, PythonOpt, VendorOpt

ImageOpt = Annotated[
    str | None,
    typer.Option("--image", help="Check the framework and telemetry inside this image instead."),
]


def doctor(
    vendor: VendorOpt = None,
    image: ImageOpt = None,
    python: PythonOpt = None,
    data: DataOpt = None,
) -> None:
    """Check engine, device runtime, devices, framework on the device, telemetry and the dataset cache."""
    from rich.markup import escape
    from rich.table import Table

    from orchestrator import doctor as library
    from orchestrator import vendors
    from orchestrator.workflow import default_data_dir

    chosen = vendors.get(vendor).vendor if vendor else vendors.detect().vendor
    checks = library.diagnose(
        chosen, image=image, python=python, data_dir=(data or default_data_dir()).resolve()
    )
    table = Table(
        title=f"mbctl doctor: {chosen.value}" + (f" in {image}" if image else " on this host")
    )
    for col in ("check", "result", "detail", "fix"):
        table.add_column(col, overflow="fold")
    for check in checks:
        mark = "[green]pass[/]" if check.ok else "[red]FAIL[/]"
        table.add_row(check.name, mark, escape(check.detail), escape(check.fix))
    out.print(table)
    failed = [c.name for c in checks if not c.ok]
    if failed:
        raise library.DoctorFailed(
            f"{len(failed)} of {len(checks)} checks failed for {chosen.value}: {', '.join(failed)}"
        )
    err.print(f"all {len(checks)} checks passed for {chosen.value}")


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
