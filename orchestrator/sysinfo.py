"""System description for results (MLPerf-style fields): host, OS, accelerators, software."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator import __version__

if TYPE_CHECKING:  # reports read descriptions without the vendors module
    from orchestrator.vendors import Detection

#: Fields a submission's system description must have (checked by ``mbctl verify``).
REQUIRED_FIELDS = (
    "host.cpu_model",
    "host.cpu_cores",
    "host.memory_gb",
    "os.name",
    "os.kernel",
    "accelerators.vendor",
    "accelerators.count",
    "software.mbctl",
    "software.python",
)
#: Required as well unless the accelerator is the CPU (MLPerf: accelerator model and memory).
ACCELERATOR_FIELDS = ("accelerators.model", "accelerators.memory_mib", "accelerators.driver")
#: A submission must name the version of at least one of these (``software.<name>``).
FRAMEWORKS = ("torch", "jax", "tensorflow")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError):
        pass
    return None


def _os_name() -> str:
    try:
        release = platform.freedesktop_os_release()
        return release.get("PRETTY_NAME", release.get("NAME", platform.system()))
    except OSError:
        return f"{platform.system()} {platform.release()}"


def describe(detection: Detection) -> dict[str, Any]:
    """The system description written into ``meta.json`` (framework versions come from the jobs)."""
    import socket  # only when describing this host, not when reading a description

    devices = detection.devices
    return {
        "host": {
            "hostname": socket.gethostname(),
            "cpu_model": _cpu_model(),
            "cpu_cores": os.cpu_count(),
            "memory_gb": _memory_gb(),
            "arch": platform.machine(),
        },
        "os": {"name": _os_name(), "kernel": platform.release()},
        "accelerators": {
            "vendor": detection.vendor.value,
            "count": len(devices),
            "model": devices[0].name if devices else None,
            "memory_mib": devices[0].memory_mib if devices else None,
            "driver": detection.driver,
            "devices": [
                {"index": d.index, "name": d.name, "memory_mib": d.memory_mib, "uuid": d.uuid}
                for d in devices
            ],
        },
        "software": {"mbctl": __version__, "python": platform.python_version()},
    }


# --- reading a system description back, for reports ----------------------------------------

#: ``software`` keys that name the accelerator runtime, in the order a report shows them.
RUNTIMES = ("cuda", "rocm", "hip", "synapseai", "habana", "level_zero", "oneapi", "xpu")


def _get(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def normalize(system: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """An mbctl run's ``system`` with the run-level facts of ``meta.json`` a reader needs
    beside it (backend, vendor, nodes)."""
    out = {k: v for k, v in system.items() if isinstance(v, dict)}
    for key in ("backend", "vendor", "nodes"):
        if meta.get(key) is not None:
            out[key] = meta[key]
    return out


def from_milabench(meta: dict[str, Any]) -> dict[str, Any]:
    """A Milabench ``meta`` event (``cpu``, ``os``, ``accelerators``, ``pytorch``...) in
    ``describe``'s shape, so both kinds of runs show the same system block."""
    if not meta:
        return {}
    gpus = _get(meta, "accelerators", "gpus")
    devices = (
        list(gpus.values()) if isinstance(gpus, dict) else gpus if isinstance(gpus, list) else []
    )
    devices = [d for d in devices if isinstance(d, dict)]
    first = devices[0] if devices else {}
    total = _get(first, "memory", "total")
    uname: dict[str, Any] = meta["os"] if isinstance(meta.get("os"), dict) else {}
    software = {
        key: str(value)
        for key, value in (_get(meta, "pytorch") or {}).items()
        if isinstance(value, str | int | float) and key in ("torch", "cuda", "rocm", "hip", "xpu")
    }
    if isinstance(_get(meta, "milabench", "tag"), str):
        software["milabench"] = meta["milabench"]["tag"]
    return {
        "host": {
            "hostname": uname.get("nodename"),
            "cpu_model": _get(meta, "cpu", "brand"),
            "cpu_cores": _get(meta, "cpu", "count"),
            "arch": uname.get("machine"),
        },
        "os": {"name": uname.get("sysname"), "kernel": uname.get("release")},
        "accelerators": {
            "vendor": _get(meta, "accelerators", "arch"),
            "count": len(devices),
            "model": first.get("product") or first.get("name"),
            "memory_mib": total if isinstance(total, int | float) else None,
            "driver": _get(meta, "accelerators", "driver") or first.get("driver"),
        },
        "software": software,
    }


def _text(value: Any) -> str | None:
    if value is None or value == "" or value == [] or value == {}:
        return None
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items() if v is not None)
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


#: Node labels naming the accelerator model and driver, as ``backends.kubernetes.nodes``
#: records them (``PRODUCT_LABELS``, ``DRIVER_LABELS``; a test keeps them equal): that package's
#: import costs a report 0.2 s.
NODE_PRODUCT_LABELS = (
    "nvidia.com/gpu.product",
    "amd.com/gpu.product-name",
    "beta.amd.com/gpu.product-name",
    "gpu.intel.com/family",
)
NODE_DRIVER_LABELS = ("nvidia.com/cuda.driver-version.full", "amd.com/gpu.driver-version")


def _first_label(labels: Any, keys: tuple[str, ...]) -> str | None:
    if not isinstance(labels, dict):
        return None
    return next((str(labels[k]) for k in keys if labels.get(k)), None)


def _node_label(name: Any, description: Any) -> str:
    """``name (product × count, driver D)``: a Kubernetes node's labels and allocatable
    devices, a Slurm node's ``gpu_product`` (and ``gpu_count`` from the jobs' exit events)."""
    if not isinstance(description, dict):
        detail = description if isinstance(description, str) else None
        return f"{name}" + (f" ({detail})" if detail else "")
    labels = description.get("labels")
    product = next(
        (description[k] for k in ("gpu_product", "gpu", "model") if description.get(k)), None
    ) or _first_label(labels, NODE_PRODUCT_LABELS)
    count = description.get("gpu_count")
    if count is None and description.get("device_resource"):
        count = description.get("devices")
    parts = []
    if product or count:
        parts.append(f"{product or 'device'}" + (f" × {count}" if count else ""))
    if driver := _first_label(labels, NODE_DRIVER_LABELS):
        parts.append(f"driver {driver}")
    return f"{name}" + (f" ({', '.join(parts)})" if parts else "")


def _nodes(nodes: Any) -> str | None:
    """``meta.json``'s ``nodes``: names, records with a ``name`` (slurm: and a
    ``gpu_product``), or a mapping of name to description (Kubernetes and Slurm runs)."""
    if isinstance(nodes, dict) and nodes:
        labels = [_node_label(name, desc) for name, desc in nodes.items()]
    elif isinstance(nodes, list) and nodes:
        labels = [_node_label(n.get("name"), n) if isinstance(n, dict) else str(n) for n in nodes]
    else:
        return _text(nodes)
    return f"{len(labels)}: " + ", ".join(labels)


# --- the devices jobs ran on (benchkit's ``device`` object of each job's start event) --------


def job_devices(by_job: dict[str, Any]) -> list[dict[str, Any]]:
    """The distinct ``device`` objects of ``by_job`` (job id → benchkit's object: ``vendor``,
    ``type``, ``name``, ``count``, ``driver``, ``runtime``, ``framework``), each once with
    ``jobs``, the ids that reported it; the one most jobs ran on first."""
    groups: dict[str, dict[str, Any]] = {}
    for job_id, device in by_job.items():
        if not isinstance(device, dict) or not device:
            continue
        key = json.dumps(device, sort_keys=True, default=str)
        groups.setdefault(key, {**device, "jobs": []})["jobs"].append(job_id)
    return sorted(groups.values(), key=lambda d: -len(d["jobs"]))


def _device_text(device: dict[str, Any]) -> str | None:
    """``count × name (vendor, type)``."""
    name, count = device.get("name"), device.get("count")
    kinds = ", ".join(str(device[k]) for k in ("vendor", "type") if device.get(k))
    if not (name or count or kinds):
        return None
    head = f"{count if count is not None else '?'} × {name or device.get('type') or 'device'}"
    return head + (f" ({kinds})" if kinds else "")


def _framework_text(framework: Any) -> str | None:
    """``torch 2.4.0 (cuda 12.4, git_version abc), ipex 2.1``; jax: ``(jaxlib 0.4, backend gpu)``."""
    if not isinstance(framework, dict) or not framework.get("name"):
        return None
    text = " ".join(str(framework[k]) for k in ("name", "version") if framework.get(k))
    build = framework.get("build")
    if isinstance(build, dict) and build:
        text += " (" + ", ".join(f"{k} {v}" for k, v in build.items() if v) + ")"
    if framework.get("ipex"):
        text += f", ipex {framework['ipex']}"
    return text


def _runtime_text(device: dict[str, Any]) -> str | None:
    """``cuda 12.4``/``hip 6.2``: the build key of the framework that names the runtime's
    version (torch's ``cuda`` type runs on either), else the device type."""
    runtime = device.get("runtime")
    if runtime is None or runtime == "":
        return None
    build = _get(device, "framework", "build")
    kind = next(
        (k for k in ("hip", "cuda", "xpu") if isinstance(build, dict) and build.get(k) == runtime),
        device.get("type"),
    )
    return f"{kind} {runtime}" if kind else str(runtime)


def _jobs_text(jobs: list[Any]) -> str:
    shown = ", ".join(str(j) for j in jobs[:3])
    return shown + (f" +{len(jobs) - 3} more" if len(jobs) > 3 else "")


def device_rows(devices: Any) -> list[tuple[str, str]]:
    """(label, value) lines of ``job_devices``' groups: device, its driver and runtime, the
    framework and its build. With several groups each label names the jobs of its group."""
    if not isinstance(devices, list):
        return []
    groups = [d for d in devices if isinstance(d, dict)]
    out = []
    for device in groups:
        jobs = device.get("jobs") if isinstance(device.get("jobs"), list) else []
        suffix = f" [{_jobs_text(jobs)}]" if len(groups) > 1 and jobs else ""
        candidates = [
            ("device", _device_text(device)),
            ("device driver", _text(device.get("driver"))),
            ("device runtime", _runtime_text(device)),
            ("framework", _framework_text(device.get("framework"))),
        ]
        out += [(label + suffix, value) for label, value in candidates if value]
    return out


def rows(system: dict[str, Any]) -> list[tuple[str, str]]:
    """The system block a report shows, as (label, value) lines; absent facts are left out."""
    acc = system.get("accelerators") or {}
    software = system.get("software") or {}
    host = system.get("host") or {}
    os_info = system.get("os") or {}
    count, model = acc.get("count"), acc.get("model")
    accelerator = None
    if model or count:
        accelerator = f"{count or '?'} × {model or acc.get('vendor') or 'device'}"
        if isinstance(acc.get("memory_mib"), int | float):
            accelerator += f", {acc['memory_mib']:,.0f} MiB each"
    runtime = ", ".join(f"{k} {software[k]}" for k in RUNTIMES if software.get(k))
    frameworks = ", ".join(
        f"{k} {v}" for k, v in software.items() if k not in RUNTIMES and v is not None
    )
    cpu = host.get("cpu_model")
    if cpu and host.get("cpu_cores"):
        cpu = f"{cpu} ({host['cpu_cores']} cores)"
    memory = f"{host['memory_gb']} GB" if host.get("memory_gb") else None
    os_name = ", ".join(str(v) for v in (os_info.get("name"), os_info.get("kernel")) if v)
    candidates = [
        ("accelerator", accelerator or _text(acc.get("vendor"))),
        ("driver", _text(acc.get("driver"))),
        ("runtime", runtime or _text(acc.get("runtime"))),
        ("software", frameworks),
        *device_rows(system.get("devices")),
        ("cpu", _text(cpu)),
        ("memory", memory),
        ("os", os_name),
        ("host", _text(host.get("hostname"))),
        ("backend", _text(system.get("backend"))),
        ("nodes", _nodes(system.get("nodes"))),
        ("images", _text(system.get("images"))),
    ]
    return [(label, value) for label, value in candidates if value]
