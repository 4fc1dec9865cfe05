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
    typer.Option("--suite", "-s", help="Suite name (benchmarks/suites/NAME.yaml) or a YAML file."),
]
ProfileOpt = Annotated[
    str | None,
    typer.Option(
        "--profile",
        "-p",
        help="Size profile of the suite: tiny (CPU, seconds) or full (the report's sizes).",
    ),
]
VendorOpt = Annotated[
    str | None, typer.Option("--vendor", help="cpu, cuda, rocm, hpu or xpu (default: detected).")
]
SelectOpt = Annotated[
    list[str] | None,
    typer.Option("--select", help="Only these benchmarks or tags (repeatable, comma-separated)."),
]
ExcludeOpt = Annotated[
    list[str] | None, typer.Option("--exclude", help="Leave out these benchmarks or tags.")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="Override a setting: BENCH.KEY[.SUB]=VALUE ('*' for every benchmark)."
    ),
]
DevicesOpt = Annotated[
    str | None,
    typer.Option(
        "--devices", help="Device count (8) or indices (0,2) to plan for (default: detected)."
    ),
]
BackendOpt = Annotated[
    str,
    typer.Option(
        "--backend",
        "-b",
        help="auto (docker if an engine answers, else local), local, docker, kubernetes.",
    ),
]
ResultsOpt = Annotated[Path, typer.Option("--results", help="Folder that receives run folders.")]
DataOpt = Annotated[
    Path | None,
    typer.Option("--data", help="Dataset cache (default: $MBCTL_DATA or ~/.cache/mbctl/data)."),
]
PythonOpt = Annotated[
    str | None,
    typer.Option("--python", help="Interpreter with the frameworks, for the local backend."),
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
        "--lock", help="Run exactly the images of this lock (digests checked); from `mbctl push`."
    ),
]
ImageOpt = Annotated[
    list[str] | None,
    typer.Option("--image", help="Image of one benchmark: BENCH=REF (repeatable)."),
]
ImageRegistryOpt = Annotated[
    str | None,
    typer.Option(
        "--image-registry", help="Use REGISTRY/mbctl/<benchmark>:<vendor> (placeholders)."
    ),
]
NodesOpt = Annotated[
    int | None,
    typer.Option(
        "--nodes",
        min=1,
        help="Nodes a multi-node benchmark may span (default: what the backend can place; "
        "local and docker emulate them on this host).",
    ),
]
