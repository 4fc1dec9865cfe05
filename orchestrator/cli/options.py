"""Options shared by several commands, declared once."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer


class Format(StrEnum):
    TABLE = "table"
    JSON = "json"


class PhaseChoice(StrEnum):
    RUN = "run"
    PREPARE = "prepare"


class ReportFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"
    MD = "md"
    HTML = "html"


SuiteOpt = Annotated[
    str,
    typer.Option(
        "--suite",
        "-s",
        metavar="NAME|FILE",
        help="Suite name (benchmarks/suites/NAME.yaml) or a YAML file.",
    ),
]
# Choices are shown in the metavar and checked by the library, whose errors name the valid
# values in one line (click's Choice would print a usage panel instead).
VENDORS = "[cpu|cuda|rocm|hpu|xpu]"
BACKENDS = "[auto|local|docker|kubernetes|slurm]"
PROFILES = "[tiny|full]"

ProfileOpt = Annotated[
    str | None,
    typer.Option(
        "--profile",
        "-p",
        metavar=PROFILES,
        help="Size profile of the suite: tiny (CPU, seconds) or full (the report's sizes). "
        "Default: tiny on the CPU, full elsewhere.",
        show_default=False,
    ),
]
VendorOpt = Annotated[
    str | None,
    typer.Option("--vendor", metavar=VENDORS, help="Accelerator vendor (default: detected)."),
]
SelectOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--select",
        metavar="NAME",
        help="Only these benchmarks or tags (repeatable, comma-separated).",
    ),
]
ExcludeOpt = Annotated[
    list[str] | None,
    typer.Option("--exclude", metavar="NAME", help="Leave out these benchmarks or tags."),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="BENCH.KEY=VALUE",
        help="Override a setting: BENCH.KEY[.SUB]=VALUE ('*' for every benchmark).",
    ),
]
DevicesOpt = Annotated[
    str | None,
    typer.Option(
        "--devices",
        metavar="N|I,J",
        help="Device count (8) or indices (0,2) to plan for (default: detected); "
        "checked against the detected devices.",
    ),
]
BackendOpt = Annotated[
    str,
    typer.Option(
        "--backend",
        "-b",
        metavar=BACKENDS,
        help="auto: docker if an engine answers and has the images, else local.",
    ),
]
ResultsOpt = Annotated[
    Path, typer.Option("--results", metavar="DIR", help="Folder that receives run folders.")
]
DataOpt = Annotated[
    Path | None,
    typer.Option(
        "--data", metavar="DIR", help="Dataset cache (default: $MBCTL_DATA or ~/.cache/mbctl/data)."
    ),
]
PythonOpt = Annotated[
    str | None,
    typer.Option(
        "--python",
        metavar="PYTHON",
        help="Interpreter with the frameworks, for the local backend (and Slurm runtime none).",
    ),
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print the plan and launch nothing.")]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]
NamespaceOpt = Annotated[
    str | None,
    typer.Option(
        "--namespace",
        help="Kubernetes namespace (kubernetes backend).",
        rich_help_panel="Kubernetes",
    ),
]
KubeconfigOpt = Annotated[
    str | None,
    typer.Option(
        "--kubeconfig",
        help="kubeconfig file (default: $KUBECONFIG, then in-cluster).",
        rich_help_panel="Kubernetes",
    ),
]
K8sConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--k8s-config",
        help="YAML of cluster settings (PVC, node selector, tolerations...).",
        rich_help_panel="Kubernetes",
    ),
]
KeepOpt = Annotated[
    bool,
    typer.Option(
        "--keep", help="Keep finished Jobs/Services for inspection.", rich_help_panel="Kubernetes"
    ),
]
LockOpt = Annotated[
    Path | None,
    typer.Option(
        "--lock",
        metavar="FILE",
        help="Run exactly the images of this lock (digests checked); from `mbctl push`.",
    ),
]
ImageOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--image", metavar="BENCH=REF", help="Image of one benchmark: BENCH=REF (repeatable)."
    ),
]
#: ``--registry`` is the one name of the registry option in every command (build, push, render).
RegistryOpt = Annotated[
    str | None,
    typer.Option(
        "--registry",
        metavar="HOST[/PATH]",
        help="Use REGISTRY/mbctl/<benchmark>:<vendor> (placeholders).",
    ),
]
#: The registry option's old name in the render commands, accepted but no longer shown.
RegistryAliasOpt = Annotated[str | None, typer.Option("--image-registry", hidden=True)]
NodesOpt = Annotated[
    int | None,
    typer.Option(
        "--nodes",
        min=1,
        help="Nodes a multi-node benchmark may span (default: what the backend can place; "
        "local and docker emulate them on this host).",
    ),
]
SlurmConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--slurm-config",
        help="YAML of Slurm site settings (partition, account, QoS, runtime, shared cache).",
        rich_help_panel="Slurm",
    ),
]
