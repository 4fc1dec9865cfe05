"""System description for results (MLPerf-style fields): host, OS, accelerators, software."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from orchestrator import __version__
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


def _node_label(name: Any, description: Any) -> str:
    detail = description
    if isinstance(description, dict):
        detail = next(
            (description[k] for k in ("gpu_product", "gpu", "model") if description.get(k)), None
        )
    return f"{name}" + (f" ({detail})" if isinstance(detail, str) and detail else "")


def _nodes(nodes: Any) -> str | None:
    """``meta.json``'s ``nodes``: names, records with a ``name`` (slurm: and a
    ``gpu_product``), or a mapping of name to description."""
    if isinstance(nodes, dict) and nodes:
        labels = [_node_label(name, desc) for name, desc in nodes.items()]
    elif isinstance(nodes, list) and nodes:
        labels = [_node_label(n.get("name"), n) if isinstance(n, dict) else str(n) for n in nodes]
    else:
        return _text(nodes)
    return f"{len(labels)}: " + ", ".join(labels)


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
        ("cpu", _text(cpu)),
        ("memory", memory),
        ("os", os_name),
        ("host", _text(host.get("hostname"))),
        ("backend", _text(system.get("backend"))),
        ("nodes", _nodes(system.get("nodes"))),
        ("images", _text(system.get("images"))),
    ]
    return [(label, value) for label, value in candidates if value]
