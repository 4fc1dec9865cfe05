"""``mbctl render compose``: a suite's jobs as a Compose file, one service per job."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.console import out
from orchestrator.cli.options import (
    DevicesOpt,
    ExcludeOpt,
    ImageOpt,
    LockOpt,
    PhaseChoice,
    ProfileOpt,
    RegistryAliasOpt,
    RegistryOpt,
    SelectOpt,
    SetOpt,
    SuiteOpt,
)
from orchestrator.cli.render import RenderVendorOpt


def render_compose(
    vendor: RenderVendorOpt,
    output: Annotated[Path, typer.Option("--output", "-o", help="Compose file to write.")],
    suite: SuiteOpt = "smoke",
    profile: ProfileOpt = None,
    select: SelectOpt = None,
    exclude: ExcludeOpt = None,
    overrides: SetOpt = None,
    devices: DevicesOpt = None,
    image: ImageOpt = None,
    lock: LockOpt = None,
    registry: RegistryOpt = None,
    image_registry: RegistryAliasOpt = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", help="Dataset cache on the host (default: $MBCTL_DATA or ./data at `up`)."
        ),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(
            "--user", help="uid:gid the jobs run as (default: yours; $MBCTL_USER at `up`)."
        ),
    ] = None,
    shm_size: Annotated[
        str, typer.Option("--shm-size", help="Size of /dev/shm where the vendor has its own.")
    ] = "8g",
    phase: Annotated[
        PhaseChoice,
        typer.Option("--phase", help="run: the benchmarks; prepare: fill the dataset cache."),
    ] = PhaseChoice.RUN,
) -> None:
    """Write a Compose file with one service per job (profile = benchmark), GPUs exposed per vendor."""
    from pydantic import ValidationError

    from orchestrator import compose, vendors
    from orchestrator.backends.docker import DockerSettings
    from orchestrator.cli.render import print_skipped, render_plan
    from orchestrator.errors import ConfigError

    try:
        settings = DockerSettings(shm_size=shm_size, **({"user": user} if user else {}))
    except ValidationError as exc:
        problem = exc.errors(include_url=False)[0]
        raise ConfigError(
            f"--{problem['loc'][0]}".replace("_", "-") + f": {problem['msg']}"
        ) from None
    plan, run_phase = render_plan(
        vendor=vendor,
        suite=suite,
        profile=profile,
        select=select,
        exclude=exclude,
        overrides=overrides,
        devices=devices,
        registry=registry or image_registry,
        lock=lock,
        image=image,
        phase=phase,
        context=f"vendor {vendor}",
    )
    host = vendors.HostFacts.probe() if vendors.get(vendor).vendor is vendors.Vendor.ROCM else None
    document = compose.render_compose(
        plan, settings, host=host, data=str(data.resolve()) if data else None, phase=run_phase
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(compose.dump_compose(document))
    print_skipped(plan)
    first = next(iter(document["services"].values()))["profiles"][0]
    out.print(
        f"wrote {output} ({len(plan.jobs)} services, vendor {plan.vendor}, suite {plan.suite})"
    )
    out.print(
        f"run one benchmark with: docker-compose -f {output} --profile {first} up", markup=False
    )


def register(app: typer.Typer) -> None:
    """Add ``compose`` to the ``render`` group (which ``orchestrator.cli.render`` adds to ``app``)."""
    from orchestrator.cli.render import render_app

    render_app.command("compose")(render_compose)
