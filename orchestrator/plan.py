"""Planning: suite × vendor × devices × nodes → the list of jobs to launch (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from orchestrator import limits, vendors
from orchestrator.errors import ConfigError
from orchestrator.resources import Resources
from orchestrator.vendors import Device, Vendor

if TYPE_CHECKING:
    from orchestrator.config import Benchmark, Suite


class PlanKind(StrEnum):
    PER_GPU = "per_gpu"
    NJOBS = "njobs"
    NODES = "nodes"


class Job(BaseModel):
    """One process/container/pod to launch; ``id`` is unique in a run and names its files."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(description="'<bench>.<tag>', the stem of the job's result files")
    bench: str
    tag: str = Field(description="'D<i>' per device, '<i>' per njobs copy, 'N<nodes>' multi-node")
    definition: str = Field(description="folder under benchmarks/")
    argv: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)
    vendor: str
    devices: tuple[str, ...] = Field(default=(), description="device indices the job may use")
    plan: PlanKind
    nodes: int = 1
    weight: float = 1.0
    enabled: bool = True
    max_duration: float
    unit: str = "items/s"
    tags: tuple[str, ...] = ()
    image: str | None = None
    resources: Resources | None = Field(default=None, description="the benchmark's resources:")

    @property
    def device(self) -> str | None:
        """The single device of a per-GPU job (Milabench's ``config.device``), else None."""
        return self.devices[0] if self.plan is PlanKind.PER_GPU and self.devices else None

    def describe(self) -> dict[str, Any]:
        # a job without resources records what it did before the field existed
        return self.model_dump(
            mode="json", exclude={"resources"} if self.resources is None else None
        )


class Skipped(BaseModel):
    """A benchmark of the suite that gets no job here, and why (it still counts in the score)."""

    model_config = ConfigDict(frozen=True)

    bench: str
    reason: str


class Plan(BaseModel):
    """The jobs of one run: what ``--dry-run`` prints and what a backend executes."""

    model_config = ConfigDict(frozen=True)

    suite: str
    vendor: str
    devices: tuple[str, ...]
    nodes: int
    jobs: tuple[Job, ...]
    skipped: tuple[Skipped, ...] = ()


def _skip_reason(
    bench: Benchmark, vendor: Vendor, devices: Sequence[Device], nodes: int
) -> str | None:
    if bench.status == "planned":
        return "not built yet"
    if not bench.enabled:
        return "disabled in the suite"
    if bench.vendors is not None and vendor not in bench.vendors:
        return f"does not support {vendor} (supports {', '.join(bench.vendors)})"
    jax_unsupported = vendors.get(vendor).jax_unsupported
    if jax_unsupported and "jax" in bench.tags:
        return f"JAX is unsupported on {vendor}: {jax_unsupported}"
    if vendor is not Vendor.CPU and not devices:
        return f"no {vendor} device (pass --devices N to plan for N devices)"
    need = bench.requires.gpus
    if need is not None and len(devices) < need:
        return f"needs {need} devices, {len(devices)} available"
    need_gb = bench.requires.gpu_memory_gb
    if need_gb is not None:
        small = [d for d in devices if d.memory_mib is not None and d.memory_mib < need_gb * 1024]
        if vendor is Vendor.CPU or small:
            return f"needs {need_gb:g} GB per device"
    if bench.plan.kind is PlanKind.NODES and bench.plan.n > nodes:
        return (
            f"needs {bench.plan.n} nodes, {nodes} available "
            f"(--nodes {bench.plan.n} on a backend that can place them)"
        )
    return None


def _cpu_processes(bench: Benchmark) -> int:
    """Processes one CPU job of ``bench`` runs: ``--devices N`` data-parallel workers, else one.

    ``--devices -1`` (one worker per visible GPU) is one process on a CPU: the torchrun
    convention of benchkit's DDP benchmarks (``benchkit.relaunch_under_torchrun``).
    """
    words = bench.command_args()
    value = words[words.index("--devices") + 1] if "--devices" in words[:-1] else "1"
    try:
        count = int(value)
    except ValueError:
        return 1
    return max(count, 1)


def omp_threads(bench: Benchmark, vendor: Vendor, devices: Sequence[Device], cpus: int) -> int:
    """``OMP_NUM_THREADS`` of each process of ``bench``'s jobs on a host with ``cpus`` CPUs.

    Set for every job, so a multi-process (-gpus) variant and its single-process sibling compute
    with the same CPUs: torchrun would otherwise force 1 thread per worker, and the comparison
    would show thread counts, not scaling. On a CPU the job's processes split the host; on
    accelerators one process per device does (per-device jobs run side by side, a
    data-parallel job runs one worker per device), each with the same share.
    """
    # cpus is given for local and docker only, which run every node of a job on this one host
    nodes = bench.plan.n if bench.plan.kind is PlanKind.NODES else 1
    if vendor is Vendor.CPU:
        return max(cpus // (_cpu_processes(bench) * nodes), 1)
    return max(cpus // (max(len(devices), 1) * nodes), 1)


def make_plan(
    suite: Suite,
    *,
    vendor: Vendor | str,
    devices: Sequence[Device] = (),
    nodes: int = 1,
    images: Mapping[str, str] | None = None,
    cpus: int | None = None,
) -> Plan:
    """Expand every benchmark of ``suite`` into jobs for ``vendor`` on ``devices`` × ``nodes``.

    With ``cpus`` (the host's CPU count) every job's environment sets ``OMP_NUM_THREADS`` as
    :func:`omp_threads` says, unless the suite sets it for the benchmark.
    """
    spec = vendors.get(vendor)
    vendor = spec.vendor
    indices = tuple(d.index for d in devices)
    jobs: list[Job] = []
    skipped: list[Skipped] = []
    for bench in suite.benchmarks:
        reason = _skip_reason(bench, vendor, devices, nodes)
        if reason is not None:
            skipped.append(Skipped(bench=bench.name, reason=reason))
            continue
        common: dict[str, Any] = {
            "bench": bench.name,
            "definition": bench.definition,
            "argv": bench.command_args(),
            "vendor": vendor.value,
            "plan": bench.plan.kind,
            "weight": bench.weight,
            "enabled": bench.enabled,
            "max_duration": bench.max_duration,
            "unit": bench.unit,
            "tags": bench.tags,
            "image": (images or {}).get(bench.name),
            "resources": bench.resources,
        }
        placements: list[tuple[str, tuple[str, ...], int]]
        match bench.plan.kind:
            case PlanKind.PER_GPU:
                placements = [(f"D{i}", (i,), 1) for i in indices] or [("0", (), 1)]
            case PlanKind.NJOBS:
                placements = [(str(i), indices, 1) for i in range(bench.plan.n)]
            case PlanKind.NODES:
                placements = [(f"N{bench.plan.n}", indices, bench.plan.n)]
        if len(jobs) + len(placements) > limits.MAX_JOBS:
            raise ConfigError(
                f"suite {suite.name}: more than {limits.MAX_JOBS} jobs at {bench.name} (limits.MAX_JOBS)",
                hint="lower plan.njobs or --devices",
            )
        threads = {}
        if cpus is not None:
            threads = {"OMP_NUM_THREADS": str(omp_threads(bench, vendor, devices, cpus))}
        for tag, devs, n_nodes in placements:
            env = {**threads, **bench.env, **spec.visible_devices(devs)}
            jobs.append(
                Job(
                    id=f"{bench.name}.{tag}",
                    tag=tag,
                    devices=devs,
                    nodes=n_nodes,
                    env=env,
                    **common,
                )
            )
    return Plan(
        suite=suite.name,
        vendor=vendor.value,
        devices=indices,
        nodes=nodes,
        jobs=tuple(jobs),
        skipped=tuple(skipped),
    )


def parse_devices(text: str) -> tuple[Device, ...]:
    """``--devices``: a count (``8``) or a list of indices (``0,2,3``)."""
    words = [w.strip() for w in text.split(",") if w.strip()]
    if not words or not all(w.isdigit() for w in words):
        raise ConfigError(f"--devices {text!r}: expected a count (8) or device indices (0,1,3)")
    count = int(words[0]) if len(words) == 1 and "," not in text else len(words)
    if count > limits.MAX_DEVICES:
        raise ConfigError(
            f"--devices {text[:40]!r}: {count} devices, more than {limits.MAX_DEVICES} (limits.MAX_DEVICES)"
        )
    if len(words) == 1 and "," not in text:
        if count == 0:
            raise ConfigError(f"--devices {text!r}: plan for at least one device")
        return tuple(Device(index=str(i), name="planned") for i in range(count))
    indices = [str(int(w)) for w in words]
    repeated = sorted({i for i in indices if indices.count(i) > 1}, key=int)
    if repeated:
        raise ConfigError(
            f"--devices {text!r}: device {', '.join(repeated)} listed more than once",
            hint="name each device once, e.g. --devices 0,1",
        )
    return tuple(Device(index=i, name="planned") for i in indices)
