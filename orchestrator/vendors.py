"""The one table of vendor facts (devices, env, Docker/K8s exposure, base images) and detection."""

from __future__ import annotations

import grp
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from orchestrator.errors import ConfigError


class Vendor(StrEnum):
    CPU = "cpu"
    CUDA = "cuda"
    ROCM = "rocm"
    HPU = "hpu"
    XPU = "xpu"


#: The environment variable naming the planned vendor inside a job (read by benchkit.device).
VENDOR_ENV = "MBCTL_VENDOR"
#: Packages every vendor's torch stack is made of; a vendor adds its own to them.
TORCH_STACK = ("torch", "torchvision", "torchaudio", "triton")
_NO_JAX_PLUGIN = "no {title} jaxlib plugin is published for this image; JAX would run on the CPU"


@dataclass(frozen=True)
class VendorSpec:
    """Everything mbctl needs to know about one accelerator family."""

    vendor: Vendor
    title: str
    base_image: str = field(metadata={"doc": "default base image; sites override it in config"})
    visible_devices_env: tuple[str, ...] = ()
    k8s_resource: str | None = None
    k8s_per_device: dict[str, str] = field(
        default_factory=lambda: {"cpu": "8", "memory": "64Gi"},
        metadata={"doc": "pod requests per device (jobs without devices count one)"},
    )
    k8s_run_as_non_root: bool = True
    k8s_capabilities: tuple[str, ...] = ()
    k8s_seccomp: str | None = "RuntimeDefault"
    telemetry: str = "none"
    torch_index: str | None = None
    image_packages: tuple[str, ...] = field(
        default=(), metadata={"doc": "pip requirements mbctl's base image adds to base_image"}
    )

    device_env: dict[str, str] = field(default_factory=dict)
    framework_packages: tuple[str, ...] = field(
        default=TORCH_STACK,
        metadata={"doc": "the base image's framework: kept by every pip install on top of it"},
    )
    jax_plugin: str | None = field(
        default=None, metadata={"doc": "the vendor's jaxlib plugin; None: JAX runs on CPU only"}
    )
    jax_unsupported: str | None = field(
        default=None, metadata={"doc": "why JAX benchmarks are not built or run on this vendor"}
    )

    def visible_devices(self, devices: Sequence[str]) -> dict[str, str]:
        """Environment restricting a process to ``devices`` (empty on CPU)."""
        if not devices:
            return {}
        value = ",".join(devices)
        return {**self.device_env, **{name: value for name in self.visible_devices_env}}


VENDORS: dict[Vendor, VendorSpec] = {
    Vendor.CPU: VendorSpec(
        vendor=Vendor.CPU,
        title="CPU only (development, CI)",
        base_image="python:3.11-slim-bookworm",
        torch_index="https://download.pytorch.org/whl/cpu",
        k8s_per_device={"cpu": "4", "memory": "16Gi"},
        # the vendors' images ship their framework; a slim Python image gets the CPU build of torch
        image_packages=("torch", "numpy"),
    ),
    Vendor.CUDA: VendorSpec(
        vendor=Vendor.CUDA,
        title="NVIDIA GPUs (CUDA)",
        base_image="nvcr.io/nvidia/pytorch:25.10-py3",
        # containers renumber devices from 0; host UUIDs are recorded outside by telemetry
        visible_devices_env=("CUDA_VISIBLE_DEVICES",),
        # CUDA numbers fastest-first by default, NVML by PCI bus: make both agree for telemetry
        device_env={"CUDA_DEVICE_ORDER": "PCI_BUS_ID"},
        k8s_resource="nvidia.com/gpu",
        telemetry="pynvml (nvidia-ml-py)",
        image_packages=("nvidia-ml-py>=12",),
        framework_packages=(*TORCH_STACK, "jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda12-pjrt"),
        # NGC has CUDA in the system: the plugin without its [with-cuda] pip copy of the libraries
        jax_plugin="jax-cuda12-plugin",
    ),
    Vendor.ROCM: VendorSpec(
        vendor=Vendor.ROCM,
        title="AMD Instinct GPUs (ROCm)",
        base_image="rocm/pytorch:rocm6.4.3_ubuntu24.04_py3.12_pytorch_release_2.6.0",
        # not an isolation boundary: only the devices mounted into the container are a boundary
        visible_devices_env=("HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"),
        k8s_resource="amd.com/gpu",
        # the device plugin mounts /dev/kfd and the render nodes; RuntimeDefault allows their
        # ioctls (Docker's seccomp=unconfined is for profilers), so ROCm pods stay "restricted"
        telemetry="amdsmi",
        framework_packages=(
            *TORCH_STACK,
            "pytorch-triton-rocm",
            "jax",
            "jaxlib",
            "jax-rocm60-plugin",
            "jax-rocm60-pjrt",
        ),
        jax_plugin="jax-rocm60-plugin",
    ),
    Vendor.HPU: VendorSpec(
        vendor=Vendor.HPU,
        title="Intel Gaudi accelerators (Habana)",
        base_image="vault.habana.ai/gaudi-docker/1.22.0/ubuntu22.04/habanalabs/pytorch-installer-2.7.1:latest",
        visible_devices_env=("HABANA_VISIBLE_MODULES",),
        k8s_resource="habana.ai/gaudi",
        # the runtime maps its DMA buffers from 2 MiB huge pages (sized per card)
        k8s_per_device={"cpu": "8", "memory": "64Gi", "hugepages-2Mi": "2Gi"},
        # Habana's runtime pins threads (SYS_NICE: Pod Security "privileged"); the processes of
        # one pod share its IPC namespace, so host IPC is a site setting, not a default
        k8s_run_as_non_root=False,
        k8s_capabilities=("SYS_NICE",),
        k8s_seccomp=None,  # the cluster's default, as in Habana's own examples
        telemetry="hl-smi CSV",
        framework_packages=(
            *TORCH_STACK,
            "habana-torch-plugin",
            "habana-torch-dataloader",
            "habana-pyhlml",
            "lightning-habana",
        ),
        jax_unsupported=_NO_JAX_PLUGIN.format(title="Intel Gaudi"),
    ),
    Vendor.XPU: VendorSpec(
        vendor=Vendor.XPU,
        title="Intel Data Center GPUs (XPU)",
        base_image="intel/intel-extension-for-pytorch:2.8.10-xpu",
        visible_devices_env=("ZE_AFFINITY_MASK",),
        k8s_resource="gpu.intel.com/i915",
        telemetry="xpu-smi",
        framework_packages=(
            *TORCH_STACK,
            "intel-extension-for-pytorch",
            "oneccl-bind-pt",
            "pytorch-triton-xpu",
        ),
        jax_unsupported=_NO_JAX_PLUGIN.format(title="Intel XPU"),
    ),
}

#: Intel's device plugin names the resource after the kernel driver in use.
XPU_RESOURCES = ("gpu.intel.com/i915", "gpu.intel.com/xe")


def get(vendor: str | Vendor) -> VendorSpec:
    """The spec of ``vendor``; an unknown name is a ConfigError listing the valid ones."""
    try:
        return VENDORS[Vendor(vendor)]
    except ValueError:
        raise ConfigError(
            f"unknown vendor {vendor!r}", hint="choose from " + ", ".join(v.value for v in Vendor)
        ) from None


# --- Docker exposure (pure: returns keyword arguments for docker's containers.run) ----------


@dataclass(frozen=True)
class HostFacts:
    """Host details the Docker exposure depends on, gathered once so the builders stay pure."""

    render_nodes: tuple[str, ...] = ()
    video_gid: int | None = None
    render_gid: int | None = None

    @classmethod
    def probe(cls) -> HostFacts:
        return cls(
            render_nodes=tuple(rocm_render_nodes()),
            video_gid=_gid("video"),
            render_gid=_gid("render"),
        )


def _gid(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def rocm_render_nodes(topology: Path = Path("/sys/class/kfd/kfd/topology/nodes")) -> list[str]:
    """``/dev/dri/renderD*`` of each AMD GPU in HIP's device order (KFD topology order)."""
    nodes: list[tuple[int, str]] = []
    if not topology.is_dir():
        return []
    for node in topology.iterdir():
        try:
            props = dict(
                line.split(maxsplit=1)
                for line in (node / "properties").read_text().splitlines()
                if " " in line
            )
            minor = int(props.get("drm_render_minor", "0"))
        except (OSError, ValueError):
            continue
        if minor > 0 and node.name.isdigit():
            nodes.append((int(node.name), f"/dev/dri/renderD{minor}"))
    return [path for _, path in sorted(nodes)]


def docker_exposure(
    vendor: str | Vendor,
    devices: Sequence[str],
    host: HostFacts = HostFacts(),
    *,
    shm_size: str = "8g",
) -> dict[str, Any]:
    """``containers.run`` keyword arguments exposing exactly ``devices`` (never ``privileged``)."""
    spec = get(vendor)
    env = spec.visible_devices(devices)
    match spec.vendor:
        case Vendor.CPU:
            return {"shm_size": shm_size}
        case Vendor.CUDA:
            return {
                "device_requests": [
                    {"driver": "nvidia", "device_ids": list(devices), "capabilities": [["gpu"]]}
                ],
                "ipc_mode": "host",
                "ulimits": [
                    {"name": "memlock", "soft": -1, "hard": -1},
                    {"name": "stack", "soft": 67108864, "hard": 67108864},
                ],
                # inside the container the chosen GPUs are renumbered from 0
                "environment": spec.visible_devices([str(i) for i in range(len(devices))]),
            }
        case Vendor.ROCM:
            chosen = []
            for dev in devices:
                index = int(dev)
                if index >= len(host.render_nodes):
                    raise ConfigError(
                        f"rocm device {dev} has no render node on this host",
                        hint=f"found {len(host.render_nodes)} AMD GPUs in /sys/class/kfd",
                    )
                chosen.append(host.render_nodes[index])
            groups = [g for g in (host.video_gid, host.render_gid) if g is not None]
            return {
                "devices": [f"{p}:{p}:rwm" for p in ["/dev/kfd", *chosen]],
                "group_add": [str(g) for g in groups],
                "security_opt": ["seccomp=unconfined"],
                "ipc_mode": "host",
                "shm_size": shm_size,
                "environment": spec.visible_devices([str(i) for i in range(len(devices))]),
            }
        case Vendor.HPU:
            return {
                "runtime": "habana",
                "cap_add": ["SYS_NICE"],
                "ipc_mode": "host",
                "network_mode": "host",
                "environment": env,
            }
        case Vendor.XPU:
            return {
                "devices": ["/dev/dri:/dev/dri:rwm"],
                "ipc_mode": "host",
                "shm_size": shm_size,
                "environment": env,
            }
    raise AssertionError(spec.vendor)  # pragma: no cover - the match is exhaustive


# --- detection ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    index: str
    name: str
    memory_mib: int | None = None
    uuid: str | None = None


@dataclass(frozen=True)
class Detection:
    """What ``mbctl vendors`` shows: the chosen vendor, its devices, and why."""

    vendor: Vendor
    devices: tuple[Device, ...] = ()
    driver: str | None = None
    reasons: tuple[str, ...] = ()


def _detect_cuda() -> tuple[Detection | None, str]:
    try:
        import pynvml
    except ImportError:
        return None, "cuda: nvidia-ml-py (pynvml) is not installed"
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError has many subclasses; any of them means "no usable driver"
        return None, f"cuda: NVML did not initialise ({exc})"
    try:
        devices = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            devices.append(
                Device(
                    index=str(i),
                    name=_text(pynvml.nvmlDeviceGetName(handle)),
                    memory_mib=int(mem.total) // 2**20,
                    uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
                )
            )
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
    finally:
        pynvml.nvmlShutdown()
    if not devices:
        return None, "cuda: NVML works but reports no GPU"
    return Detection(Vendor.CUDA, tuple(devices), driver), f"cuda: NVML found {len(devices)} GPU(s)"


def _detect_rocm() -> tuple[Detection | None, str]:
    try:
        import amdsmi
    except ImportError:
        return None, "rocm: amdsmi is not installed"
    try:
        amdsmi.amdsmi_init()
    except Exception as exc:  # AmdSmiException and library load errors alike mean "not usable"
        return None, f"rocm: amdsmi did not initialise ({exc})"
    try:
        handles = amdsmi.amdsmi_get_processor_handles()
        devices = []
        for i, handle in enumerate(handles):
            info = amdsmi.amdsmi_get_gpu_asic_info(handle)
            vram = amdsmi.amdsmi_get_gpu_memory_total(handle, amdsmi.AmdSmiMemoryType.VRAM)
            devices.append(
                Device(
                    index=str(i),
                    name=str(info.get("market_name", "AMD GPU")),
                    memory_mib=int(vram) // 2**20,
                    uuid=str(amdsmi.amdsmi_get_gpu_device_uuid(handle)),
                )
            )
        driver = (
            str(amdsmi.amdsmi_get_gpu_driver_info(handles[0])["driver_version"])
            if handles
            else None
        )
    finally:
        amdsmi.amdsmi_shut_down()
    if not devices:
        return None, "rocm: amdsmi works but reports no GPU"
    return Detection(
        Vendor.ROCM, tuple(devices), driver
    ), f"rocm: amdsmi found {len(devices)} GPU(s)"


def _detect_smi(vendor: Vendor, tool: str, query: list[str]) -> tuple[Detection | None, str]:
    path = shutil.which(tool)
    if path is None:
        return None, f"{vendor}: {tool} is not on PATH"
    try:
        out = subprocess.run(
            [path, *query], capture_output=True, text=True, timeout=20, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"{vendor}: {tool} failed ({exc})"
    devices = parse_smi_csv(out)
    if not devices:
        return None, f"{vendor}: {tool} lists no device"
    return Detection(vendor, tuple(devices)), f"{vendor}: {tool} found {len(devices)} device(s)"


def parse_smi_csv(text: str) -> list[Device]:
    """Devices from ``index, name, memory MiB, uuid`` CSV rows (hl-smi/xpu-smi query output)."""
    devices = []
    for row in text.strip().splitlines():
        cells = [c.strip() for c in row.split(",")]
        if len(cells) < 2 or not cells[0].isdigit():
            continue
        memory = cells[2].split()[0] if len(cells) > 2 and cells[2] else ""
        devices.append(
            Device(
                index=cells[0],
                name=cells[1],
                memory_mib=int(memory) if memory.isdigit() else None,
                uuid=cells[3] if len(cells) > 3 else None,
            )
        )
    return devices


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def detect_vendor(vendor: Vendor) -> tuple[Detection | None, str]:
    """The devices of one accelerator vendor on this host, or None, and why (``mbctl doctor``)."""
    match vendor:
        case Vendor.CUDA:
            return _detect_cuda()
        case Vendor.ROCM:
            return _detect_rocm()
        case Vendor.HPU:
            # HABANA_VISIBLE_MODULES takes module IDs, which need not follow hl-smi's indices:
            # a detected Gaudi is numbered by its module ID
            return _detect_smi(
                Vendor.HPU,
                "hl-smi",
                ["-Q", "module_id,name,memory.total,uuid", "-f", "csv,noheader,nounits"],
            )
        case Vendor.XPU:
            return _detect_smi(Vendor.XPU, "xpu-smi", ["discovery", "--dump", "1,2,16,3"])
    return None, f"{vendor}: not an accelerator"


def detect() -> Detection:
    """Find the accelerators of this host: NVIDIA, AMD, Gaudi, Intel, else the CPU."""
    reasons: list[str] = []
    for vendor in (Vendor.CUDA, Vendor.ROCM, Vendor.HPU, Vendor.XPU):
        found, why = detect_vendor(vendor)
        reasons.append(why)
        if found is not None:
            return Detection(found.vendor, found.devices, found.driver, tuple(reasons))
    reasons.append(f"cpu: fallback, {os.cpu_count()} logical CPUs")
    return Detection(Vendor.CPU, (), None, tuple(reasons))
