"""``mbctl doctor``: end-to-end checks of a host or an image for one vendor, each with its fix.

Engine, device runtime, devices, the framework seeing the planned device (benchkit's own device
truth, run on the host's Python or inside the image), telemetry and the dataset cache. Checks
return data; the CLI prints them. :func:`image_preflight` is the in-image part alone, which container
backends run once per image before a suite so that a broken image fails in seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator import vendors
from orchestrator.errors import BackendUnavailable, OrchestratorError
from orchestrator.vendors import Vendor


class DoctorFailed(OrchestratorError):
    """One or more doctor checks failed (the table says which and how to fix them)."""

    exit_code = 1


@dataclass(frozen=True)
class Check:
    """One line of the doctor's table."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


#: Runs with MBCTL_VENDOR set, on the host's Python or in the image: benchkit's device truth, then
#: whether a telemetry sampler opens. Prints one JSON object; never raises.
PROBE = r"""
import json, sys
result = {"framework": None, "telemetry": None}
try:
    from benchkit import device, telemetry
except ImportError as exc:
    print(json.dumps({"error": "benchkit is not importable: %s" % exc}))
    sys.exit(0)
loaded = None
for name in ("torch", "jax"):
    try:
        __import__(name)
        loaded = name
        break
    except ImportError:
        pass
if loaded is None:
    result["framework"] = {"ok": False, "detail": "neither torch nor jax is installed"}
else:
    try:
        facts = device.device_facts()
        result["framework"] = {"ok": True, "facts": facts}
    except device.DeviceMismatch as exc:
        result["framework"] = {"ok": False, "detail": str(exc)}
    except Exception as exc:
        result["framework"] = {"ok": False, "detail": "%s: %s" % (type(exc).__name__, exc)}
try:
    sampler = telemetry.open_sampler()
    result["telemetry"] = sampler is not None and len(sampler.handles)
except Exception as exc:
    result["telemetry"] = "%s: %s" % (type(exc).__name__, exc)
print(json.dumps(result))
"""

#: The checks whose failure stops a suite before its first job (telemetry only loses GPU readings).
FATAL = frozenset({"image", "framework"})

_RUNTIME_FIX = {
    Vendor.CUDA: "install the NVIDIA Container Toolkit and run `nvidia-ctk runtime configure --runtime=docker`",
    Vendor.ROCM: "install the amdgpu kernel driver (amdgpu-dkms) so that /dev/kfd and /dev/dri/renderD* exist",
    Vendor.HPU: "install habana-container-runtime and register the `habana` runtime in /etc/docker/daemon.json",
    Vendor.XPU: "install Intel's GPU driver (i915 or xe) so that /dev/dri/renderD* exist",
}
_DEVICE_FIX = {
    Vendor.CUDA: "install the NVIDIA driver and nvidia-ml-py (pip install 'mbctl[nvidia]'), then check `nvidia-smi`",
    Vendor.ROCM: "install ROCm and its amdsmi Python package (/opt/rocm/share/amd_smi), then check `amd-smi list`",
    Vendor.HPU: "install the Gaudi driver and hl-smi (habanalabs-firmware-tools), then check `hl-smi`",
    Vendor.XPU: "install Intel's GPU driver and xpu-smi, then check `xpu-smi discovery`",
}
_TELEMETRY = {
    Vendor.CPU: None,
    Vendor.CUDA: "pynvml",
    Vendor.ROCM: "amdsmi",
    Vendor.HPU: "hl-smi",
    Vendor.XPU: "xpu-smi",
}


def check_engine(connect: Callable[[], Any] | None = None) -> tuple[Check, Any | None]:
    """The Docker engine answers (needed by the docker backend and `mbctl build`)."""
    if connect is None:
        from orchestrator.backends.docker import connect as docker_connect

        connect = docker_connect
    try:
        client = connect()
    except BackendUnavailable as exc:
        return Check("engine", False, exc.message, exc.hint or ""), None
    version = client.version().get("Version", "?")
    return Check("engine", True, f"Docker engine {version} answers"), client


def check_runtime(vendor: Vendor, client: Any | None) -> Check:
    """The device plugin or container runtime that exposes the vendor's devices to containers."""
    match vendor:
        case Vendor.CPU:
            return Check("runtime", True, "no device runtime needed")
        case Vendor.CUDA | Vendor.HPU:
            name = "nvidia" if vendor is Vendor.CUDA else "habana"
            runtimes = sorted((client.info().get("Runtimes") or {}) if client is not None else {})
            if name in runtimes:
                return Check("runtime", True, f"Docker runtime {name!r} registered")
            seen = ", ".join(runtimes) or "no engine to ask"
            return Check(
                "runtime", False, f"no {name!r} runtime in Docker ({seen})", _RUNTIME_FIX[vendor]
            )
        case Vendor.ROCM:
            nodes = vendors.rocm_render_nodes()
            if Path("/dev/kfd").exists() and nodes:
                return Check("runtime", True, f"/dev/kfd and {len(nodes)} render node(s)")
            return Check(
                "runtime", False, "/dev/kfd or AMD render nodes are missing", _RUNTIME_FIX[vendor]
            )
        case Vendor.XPU:
            found = sorted(Path("/dev/dri").glob("renderD*")) if Path("/dev/dri").is_dir() else []
            if found:
                return Check("runtime", True, f"{len(found)} render node(s) in /dev/dri")
            return Check(
                "runtime", False, "no /dev/dri/renderD* on this host", _RUNTIME_FIX[vendor]
            )
    raise AssertionError(vendor)  # pragma: no cover - the match is exhaustive


def check_devices(vendor: Vendor) -> tuple[Check, vendors.Detection | None]:
    """The vendor's management library or tool lists devices on this host."""
    if vendor is Vendor.CPU:
        return Check("devices", True, f"{os.cpu_count()} logical CPUs"), None
    found, why = vendors.detect_vendor(vendor)
    if found is None:
        return Check("devices", False, why, _DEVICE_FIX[vendor]), None
    names = ", ".join(sorted({d.name for d in found.devices}))
    driver = f", driver {found.driver}" if found.driver else ""
    return Check("devices", True, f"{len(found.devices)} × {names}{driver}"), found


def _probe_checks(vendor: Vendor, output: str, where: str, fix: str) -> list[Check]:
    """The framework and telemetry checks from the probe's JSON line."""
    lines = [line for line in output.splitlines() if line.startswith("{")]
    if not lines:
        return [Check("framework", False, f"the probe printed nothing on {where}: {output[-300:]}")]
    result = json.loads(lines[-1])
    if "error" in result:
        return [
            Check(
                "framework",
                False,
                result["error"],
                "install benchkit (pip install benchmarks/benchkit)",
            )
        ]
    framework = result["framework"]
    if framework["ok"]:
        facts = framework["facts"] or {}
        fw = facts.get("framework", {})
        detail = (
            f"{fw.get('name')} {fw.get('version')} at {fw.get('path')} runs on "
            f"{facts.get('count')} × {facts.get('name') or facts.get('type')}"
        )
        checks = [Check("framework", True, detail)]
    else:
        checks = [Check("framework", False, framework["detail"], fix)]
    monitor = _TELEMETRY[vendor]
    telemetry = result.get("telemetry")
    if monitor is None:
        checks.append(Check("telemetry", True, "none on CPU"))
    elif isinstance(telemetry, int) and telemetry > 0 and not isinstance(telemetry, bool):
        checks.append(Check("telemetry", True, f"{monitor} reads {telemetry} device(s)"))
    elif monitor in ("hl-smi", "xpu-smi"):
        ok = shutil.which(monitor) is not None
        checks.append(
            Check(
                "telemetry",
                ok,
                f"{monitor} {'on' if ok else 'not on'} PATH",
                "" if ok else _DEVICE_FIX[vendor],
            )
        )
    else:
        detail = telemetry if isinstance(telemetry, str) else f"{monitor} reads no device"
        checks.append(Check("telemetry", False, f"{detail} on {where}", _DEVICE_FIX[vendor]))
    return checks


def host_probe(
    vendor: Vendor, python: str | None = None, benchkit: Path | None = None
) -> list[Check]:
    """The framework and telemetry checks, run by ``python`` (default: this one) on the host."""
    from orchestrator.config import benchmarks_root

    benchkit = benchkit or benchmarks_root() / "benchkit"
    env = {
        **os.environ,
        vendors.VENDOR_ENV: vendor.value,
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(benchkit), os.environ.get("PYTHONPATH")) if p
        ),
    }
    executable = python or sys.executable
    try:
        done = subprocess.run(
            [executable, "-c", PROBE],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return [Check("framework", False, f"cannot run {executable}: {exc}", "pass --python PATH")]
    fix = (
        f"pass --python with the {vendor.value} build of the framework, or check --image IMAGE"
        if vendor is not Vendor.CPU
        else "install torch or jax in that Python, or pass --python"
    )
    return _probe_checks(vendor, done.stdout + done.stderr, executable, fix)


def image_preflight(
    client: Any, image: str, vendor: str | Vendor, devices: Sequence[str] = ()
) -> list[Check]:
    """The in-image part: the image's framework sees the vendor's device, its telemetry reads.

    Container backends call this once per image before a suite."""
    spec = vendors.get(vendor)
    # no devices: nothing to expose, and the image's framework must say so itself
    exposure = (
        vendors.docker_exposure(spec.vendor, devices, vendors.HostFacts.probe()) if devices else {}
    )
    environment = {**exposure.pop("environment", {}), vendors.VENDOR_ENV: spec.vendor.value}
    exposure.pop("shm_size", None)
    import docker.errors

    try:
        output = client.containers.run(
            image,
            entrypoint=["python", "-c", PROBE],
            environment=environment,
            remove=True,
            network_disabled=True,
            **exposure,
        )
    except docker.errors.ContainerError as exc:
        return [Check("framework", False, f"the probe failed in {image}: {exc.stderr!r}")]
    except docker.errors.ImageNotFound:
        return [Check("image", False, f"no image {image} in the engine", "build or pull it first")]
    except docker.errors.APIError as exc:
        detail = str(getattr(exc, "explanation", None) or exc).splitlines()[0]
        fix = _RUNTIME_FIX.get(spec.vendor, "")
        return [Check("framework", False, f"cannot start {image}: {detail}", fix)]
    fix = (
        f"run it where a {spec.vendor.value} device is exposed; `mbctl doctor --vendor "
        f"{spec.vendor.value}` shows what this host lacks"
        if spec.vendor is not Vendor.CPU
        else "rebuild the image: its framework does not import"
    )
    return _probe_checks(spec.vendor, output.decode(errors="replace"), image, fix)


def check_cache(data_dir: Path) -> Check:
    """The dataset cache exists (or can be made) and is writable."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".mbctl-doctor-"):
            pass
    except OSError as exc:
        return Check(
            "dataset cache",
            False,
            f"{data_dir} is not writable ({exc.strerror})",
            "pass --data DIR or set MBCTL_DATA to a writable folder",
        )
    return Check("dataset cache", True, f"{data_dir} is writable")


def diagnose(
    vendor: str | Vendor,
    *,
    image: str | None = None,
    python: str | None = None,
    data_dir: Path,
    connect: Callable[[], Any] | None = None,
) -> list[Check]:
    """Every check for ``vendor`` on this host, the framework ones in ``image`` when given."""
    spec = vendors.get(vendor)
    engine, client = check_engine(connect)
    checks = [engine, check_runtime(spec.vendor, client)]
    devices_check, found = check_devices(spec.vendor)
    checks.append(devices_check)
    if image is None:
        checks += host_probe(spec.vendor, python)
    elif client is None:
        checks.append(Check("framework", False, f"{image} not checked: no engine", engine.fix))
    else:
        # without a device to expose the image still runs: its framework says what it lacks
        indices = [d.index for d in found.devices] if found is not None else []
        checks += image_preflight(client, image, spec.vendor, indices)
    checks.append(check_cache(data_dir))
    return checks
