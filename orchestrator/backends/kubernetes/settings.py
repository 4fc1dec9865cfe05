"""Kubernetes settings (``--k8s-config`` YAML): namespace, storage, scheduling, resources, queueing, clean-up."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from orchestrator.config import load_model
from orchestrator.errors import ConfigError

#: A resource quantity as the API writes it (``16Gi``, ``500M``, ``2``, ``500m``).
Quantity = Annotated[
    str, StringConstraints(pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m)?$")
]
#: A DNS-1123 label: what namespaces and most object names must be.
DnsLabel = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
]
#: A DNS-1123 subdomain: PVC, Secret, ServiceAccount and PriorityClass names.
DnsName = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)
]

_AFFINITY_KEYS = frozenset({"nodeAffinity", "podAffinity", "podAntiAffinity"})
#: What a site may scale per device: the vendor table gives the defaults (docs/kubernetes.md).
PER_DEVICE_KEYS = frozenset({"cpu", "memory", "hugepages-2Mi", "hugepages-1Gi"})


class Toleration(BaseModel):
    """A pod toleration, spelled as in a manifest (``tolerationSeconds``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    tolerationSeconds: int | None = None

    def manifest(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class K8sSettings(BaseModel):
    """Where and how jobs run on a cluster; every field has a default that works on a plain cluster."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: DnsLabel = "mbctl"
    pvc: DnsName = Field(
        default="mbctl-data", description="ReadWriteMany claim holding the datasets"
    )
    storage_class: DnsName | None = Field(
        default=None, description="None: the cluster's default class"
    )
    storage_size: Quantity = "500Gi"
    shm_size: Quantity = Field(
        default="16Gi", description="size limit of the memory-backed /dev/shm"
    )
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    affinity: dict[str, Any] | None = Field(
        default=None, description="a pod affinity, as in a manifest"
    )
    priority_class: DnsName | None = None
    image_pull_secrets: tuple[DnsName, ...] = ()
    service_account: DnsName | None = Field(
        default=None, description="account the benchmark pods run as (None: the namespace default)"
    )
    resource_name: str | None = Field(
        default=None, description="replaces the vendor's device resource, e.g. gpu.intel.com/xe"
    )
    per_device: dict[str, Quantity] = Field(
        default_factory=dict,
        description="requests per device (cpu, memory, hugepages-2Mi/1Gi) replacing the vendor's, key by key",
    )
    guaranteed: bool = Field(
        default=False,
        description="Guaranteed QoS: cpu limit = cpu request (whole CPUs for the static CPU manager)",
    )
    queue_name: DnsName | None = Field(
        default=None,
        description="Kueue LocalQueue: Jobs are created suspended and started when Kueue admits them",
    )
    queue_timeout: PositiveFloat = Field(
        default=3600.0,
        description="seconds a job may wait for admission, scheduling and image pulls before it is reported as queued",
    )
    rendezvous_timeout: PositiveInt = Field(
        default=900,
        description="seconds the ranks of a multi-node job wait for each other (covers image pulls on slow nodes)",
    )
    rdma_resources: dict[str, Quantity] = Field(
        default_factory=dict,
        description="extended resources each multi-node pod adds, e.g. rdma/rdma_shared_device_a: 1",
    )
    ipc_lock: bool = Field(
        default=False, description="add IPC_LOCK to multi-node pods (RDMA pins memory)"
    )
    host_ipc: bool = Field(
        default=False,
        description="share the node's IPC namespace (Gaudi across pods); needs the privileged level",
    )
    run_as_user: PositiveInt = Field(
        default=1000, description="uid/gid of vendors that allow non-root pods"
    )
    supplemental_groups: tuple[NonNegativeInt, ...] = Field(
        default=(),
        description="extra gids, e.g. the nodes' video/render groups for non-root GPU access",
    )
    backoff_limit: NonNegativeInt = 0
    ttl_seconds: NonNegativeInt = Field(default=3600, description="ttlSecondsAfterFinished")

    @field_validator("affinity")
    @classmethod
    def _affinity_kinds(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        unknown = sorted(set(value or ()) - _AFFINITY_KEYS)
        if unknown:
            raise ValueError(
                f"unknown affinity kind(s) {unknown}; expected {sorted(_AFFINITY_KEYS)}"
            )
        return value

    @field_validator("per_device")
    @classmethod
    def _per_device_keys(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - PER_DEVICE_KEYS)
        if unknown:
            raise ValueError(
                f"cannot scale {unknown} per device; expected {sorted(PER_DEVICE_KEYS)}"
            )
        return value


def load_settings(path: Path | None = None, *, namespace: str | None = None) -> K8sSettings:
    """Settings from a YAML file (defaults without one); ``namespace`` overrides the file's.

    Every problem of the file is reported at once, as ``file:line: key.path: message``.
    """
    settings = K8sSettings()
    if path is not None:
        settings = load_model(Path(path), K8sSettings, what="Kubernetes config")
    if namespace is not None:
        try:
            TypeAdapter(DnsLabel).validate_python(namespace)
        except ValidationError:
            raise ConfigError(
                f"--namespace {namespace!r}: not a valid namespace",
                hint="lowercase letters, digits and '-', at most 63 characters",
            ) from None
        settings = settings.model_copy(update={"namespace": namespace})
    return settings
