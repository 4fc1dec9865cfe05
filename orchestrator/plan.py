"""Planning: suite × vendor × devices × nodes → the list of jobs to launch (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from orchestrator import vendors
from orchestrator.errors import ConfigError
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

    @property
    def device(self) -> str | None:
        """The single device of a per-GPU job (Milabench's ``config.device``), else None."""
        return self.devices[0] if self.plan is PlanKind.PER_GPU and self.devices else None

    def describe(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


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
        return f"needs {bench.plan.n} nodes, {nodes} available"
    return None


def make_plan(
    suite: Suite,
    *,
    vendor: Vendor | str,
    devices: Sequence[Device] = (),
    nodes: int = 1,
    images: Mapping[str, str] | None = None,
) -> Plan:
    """Expand every benchmark of ``suite`` into jobs for ``vendor`` on ``devices`` × ``nodes``."""
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
        }
        placements: list[tuple[str, tuple[str, ...], int]]
        match bench.plan.kind:
            case PlanKind.PER_GPU:
                placements = [(f"D{i}", (i,), 1) for i in indices] or [("0", (), 1)]
            case PlanKind.NJOBS:
                placements = [(str(i), indices, 1) for i in range(bench.plan.n)]
            case PlanKind.NODES:
                placements = [(f"N{bench.plan.n}", indices, bench.plan.n)]
        for tag, devs, n_nodes in placements:
            env = {**bench.env, **spec.visible_devices(devs)}
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
    if len(words) == 1 and "," not in text:
        return tuple(Device(index=str(i), name="planned") for i in range(int(words[0])))
    return tuple(Device(index=w, name="planned") for w in words)
