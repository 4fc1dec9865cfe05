"""What results say about the cluster nodes that ran a job: labels, devices, and meta.json's system.

Pure functions over Node objects as the API returns them (raw JSON). GPU operators and Node
Feature Discovery label nodes with the accelerator's product and driver; the allocatable count
of the device resource says how many a pod could have.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: Node labels worth recording: accelerator products and drivers, instance type, architecture.
NODE_LABEL_PREFIXES = (
    "nvidia.com/", "amd.com/", "beta.amd.com/", "habana.ai/", "gpu.intel.com/",
    "intel.feature.node.kubernetes.io/gpu", "feature.node.kubernetes.io/cpu-model",
    "node.kubernetes.io/instance-type", "kubernetes.io/arch",
)  # fmt: skip
#: Allocatable resources recorded besides the accelerators'.
NODE_RESOURCES = ("cpu", "memory", "hugepages-2Mi", "hugepages-1Gi")
#: Labels naming the accelerator model: NVIDIA's GPU feature discovery, AMD's node labeller,
#: Intel's GPU plugin NFD rules (Gaudi nodes carry no product label: only the prefix is kept).
PRODUCT_LABELS = (
    "nvidia.com/gpu.product",
    "amd.com/gpu.product-name",
    "beta.amd.com/gpu.product-name",
    "gpu.intel.com/family",
)
#: Labels naming the accelerator driver's version.
DRIVER_LABELS = ("nvidia.com/cuda.driver-version.full", "amd.com/gpu.driver-version")
_MEMORY = re.compile(r"^([0-9]+)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_FACTORS = {
    None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
}  # fmt: skip


def _dig(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _count(value: Any) -> int:
    text = str(value or "0")
    return int(text) if text.isdigit() else 0


def describe_node(obj: Mapping[str, Any], resource: str | None) -> dict[str, Any]:
    """What results keep of a Node: accelerator labels, allocatable devices, versions."""
    labels = _dig(obj, "metadata", "labels") or {}
    allocatable = _dig(obj, "status", "allocatable") or {}
    info = _dig(obj, "status", "nodeInfo") or {}
    keep = [*NODE_RESOURCES, *([resource] if resource else [])]
    return {
        "name": str(_dig(obj, "metadata", "name")),
        "labels": {k: v for k, v in sorted(labels.items()) if k.startswith(NODE_LABEL_PREFIXES)},
        "allocatable": {k: allocatable[k] for k in keep if k in allocatable},
        "device_resource": resource,
        "devices": _count(allocatable.get(resource)) if resource else 0,
        "kernel": info.get("kernelVersion"),
        "os": info.get("osImage"),
        "container_runtime": info.get("containerRuntimeVersion"),
        "kubelet": info.get("kubeletVersion"),
    }


def _first(labels: Mapping[str, str], keys: tuple[str, ...]) -> str | None:
    return next((labels[k] for k in keys if labels.get(k)), None)


def _memory_gb(quantity: Any) -> float | None:
    match = _MEMORY.fullmatch(str(quantity or ""))
    if match is None:
        return None
    return round(int(match[1]) * _FACTORS[match[2]] / 1e9, 1)


def system_from_nodes(
    nodes: Mapping[str, Mapping[str, Any]], vendor: str, software: Mapping[str, Any]
) -> dict[str, Any]:
    """meta.json's ``system`` for a cluster run, shaped as ``sysinfo.describe``'s but read from
    the first node that ran (the others are under ``nodes``); the controller is not described."""
    first = next(iter(nodes.values()), {})
    labels: Mapping[str, str] = first.get("labels") or {}
    allocatable: Mapping[str, Any] = first.get("allocatable") or {}
    return {
        "host": {
            "hostname": first.get("name"),
            "cpu_model": labels.get("feature.node.kubernetes.io/cpu-model.id"),
            "cpu_cores": _count(allocatable.get("cpu")) or None,
            "memory_gb": _memory_gb(allocatable.get("memory")),
            "arch": labels.get("kubernetes.io/arch"),
        },
        "os": {"name": first.get("os"), "kernel": first.get("kernel")},
        "accelerators": {
            "vendor": vendor,
            "count": first.get("devices", 0),
            "model": _first(labels, PRODUCT_LABELS),
            "memory_mib": _count(labels.get("nvidia.com/gpu.memory")) or None,
            "driver": _first(labels, DRIVER_LABELS),
            "devices": [],
        },
        "software": dict(software),
        "nodes": len(nodes),
    }
