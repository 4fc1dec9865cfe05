"""Slurm site settings (``--slurm-config`` YAML): partition, account, QoS, runtime, shared paths."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    StringConstraints,
    field_validator,
)

from orchestrator.config import load_model

#: A partition, account, QoS, reservation or GPU type name: no spaces or shell characters.
SlurmName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.:+-]*$")]
#: Memory as sbatch reads it: a number with an optional K/M/G/T suffix.
MemSize = Annotated[str, StringConstraints(pattern=r"^[0-9]+[KMGT]?$")]


class Runtime(StrEnum):
    """How a job's process starts on the compute node."""

    NONE = "none"  # a site virtualenv: ``python main.py`` from the benchmark folder
    PYXIS = "pyxis"  # srun --container-image (enroot)
    APPTAINER = "apptainer"  # apptainer exec docker://...
    PODMAN = "podman"  # podman run


class GpuRequest(StrEnum):
    """How accelerators are asked for: ``--gpus-per-node=N`` or the older ``--gres=gpu:N``."""

    GPUS_PER_NODE = "gpus-per-node"
    GRES = "gres"


class SlurmSettings(BaseModel):
    """Where and how jobs run on a Slurm cluster; every field has a default for a plain cluster."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    partition: SlurmName | None = Field(default=None, description="None: the default partition")
    account: SlurmName | None = None
    qos: SlurmName | None = None
    reservation: SlurmName | None = None
    constraint: str | None = Field(
        default=None, description="node features (--constraint), e.g. 'a100&ib'"
    )
    runtime: Runtime = Runtime.NONE
    python: str = Field(
        default="python3",
        description="runtime none: the interpreter with the frameworks on the compute nodes",
    )
    data_dir: Path | None = Field(
        default=None,
        description="dataset cache on a filesystem every node mounts (None: --data or its default)",
    )
    gpu_request: GpuRequest = GpuRequest.GPUS_PER_NODE
    gpu_type: SlurmName | None = Field(
        default=None, description="GRES type, e.g. a100 (--gpus-per-node=a100:8)"
    )
    cpus_per_gpu: PositiveInt | None = None
    cpus_per_task: PositiveInt | None = Field(
        default=None, description="CPUs of a job without accelerators"
    )
    mem: MemSize | None = Field(default=None, description="memory per node (--mem); None: default")
    exclusive: bool = Field(default=False, description="whole nodes only (--exclusive)")
    time_margin: NonNegativeInt = Field(
        default=10,
        description="minutes added to a benchmark's max_duration for its Slurm time limit "
        "(image import, start-up)",
    )
    master_port: int = Field(default=29500, ge=1024, le=65535)
    extra_sbatch: tuple[str, ...] = Field(
        default=(), description="more sbatch options, each '--name[=value]'"
    )
    container_mounts: tuple[str, ...] = Field(
        default=(), description="more SRC:DST[:ro] mounts for the container runtimes"
    )
    podman_args: tuple[str, ...] = Field(default=(), description="more `podman run` options")
    apptainer_args: tuple[str, ...] = Field(default=(), description="more `apptainer exec` options")
    poll_interval: PositiveFloat = Field(
        default=1.0, description="seconds between scontrol polls of a running job"
    )
    queue_timeout: PositiveFloat = Field(
        default=3600.0,
        description="seconds a job may wait in Slurm's queue before it is cancelled and "
        "reported as queued (its max_duration counts from its start)",
    )

    @field_validator("mem", mode="before")
    @classmethod
    def _plain_number(cls, value: object) -> object:
        # YAML reads `mem: 0` (all of the node's memory) as a number
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("extra_sbatch")
    @classmethod
    def _long_options(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if not v.startswith("--") or "\n" in v]
        if bad:
            raise ValueError(f"expected long options like '--mail-type=END', got {bad}")
        return value

    @field_validator("container_mounts")
    @classmethod
    def _mounts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if v.count(":") not in (1, 2) or "," in v or " " in v]
        if bad:
            raise ValueError(f"expected SRC:DST or SRC:DST:ro, got {bad}")
        return value


def load_settings(path: Path | None = None) -> SlurmSettings:
    """Settings from a YAML file (defaults without one); every problem of the file at once."""
    if path is None:
        return SlurmSettings()
    return load_model(Path(path), SlurmSettings, what="Slurm config")
