"""Device choice from the planned vendor, the facts of the device a job runs on, per-vendor
distributed settings, and the synchronisers that make a clock reading mean "the device has finished".

The orchestrator passes the planned vendor as ``$MBCTL_VENDOR`` (cpu, cuda, rocm, hpu, xpu; the
images set it too). When it names an accelerator, the framework must see that vendor's device:
benchkit never measures on the CPU instead (:class:`DeviceMismatch`).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import sys
from typing import Any, Callable

Sync = Callable[[Any], object]
"""Waits until the work that produced its argument (or all queued device work) has finished."""

VENDOR_ENV = "MBCTL_VENDOR"
#: Planned vendor -> the torch device type that runs it (ROCm builds of torch answer to "cuda").
TORCH_TYPES = {"cpu": "cpu", "cuda": "cuda", "rocm": "cuda", "hpu": "hpu", "xpu": "xpu"}
TITLES = {"cpu": "CPU", "cuda": "CUDA", "rocm": "ROCm", "hpu": "Gaudi (HPU)", "xpu": "Intel XPU"}
#: Process-group backend per torch device type: RCCL answers to "nccl" in ROCm builds of torch.
DIST_BACKENDS = {"cuda": "nccl", "hpu": "hccl", "xpu": "ccl", "cpu": "gloo"}
#: The Lightning ``accelerator`` of each planned vendor (HPU needs the lightning-habana package).
LIGHTNING_ACCELERATORS = {"cpu": "cpu", "cuda": "cuda", "rocm": "cuda", "hpu": "hpu", "xpu": "xpu"}


class DeviceMismatch(RuntimeError):
    """The framework cannot run the job on the planned vendor's device: measuring would be a lie."""


def planned_vendor(environ: Any = None) -> str | None:
    """The vendor the plan chose (``$MBCTL_VENDOR``), None when run outside mbctl."""
    value = (os.environ if environ is None else environ).get(VENDOR_ENV, "").strip().lower()
    if not value:
        return None
    if value not in TORCH_TYPES:
        raise DeviceMismatch(
            f"{VENDOR_ENV}={value!r} is not a vendor: expected one of {', '.join(TORCH_TYPES)}"
        )
    return value


def _torch_where(torch: Any) -> str:
    return f"torch {torch.__version__} at {os.path.dirname(getattr(torch, '__file__', '?'))}"


def _load_ipex() -> bool:
    # Intel's XPU images register torch.xpu (and the ccl backend) through IPEX and oneCCL's
    # bindings; recent torch has xpu built in, and then they are absent and not needed.
    found = False
    for name in ("intel_extension_for_pytorch", "oneccl_bindings_for_pytorch"):
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)
            found = True
    return found


def _vendor_available(torch: Any, vendor: str) -> tuple[bool, str]:
    """Whether ``torch`` runs ``vendor``'s devices, and why not (a clause for the error)."""
    hip = getattr(torch.version, "hip", None)
    if vendor == "cpu":
        return True, ""
    if vendor in ("cuda", "rocm"):
        if vendor == "rocm" and not hip:
            return False, "it is not a ROCm build (torch.version.hip is unset)"
        if vendor == "cuda" and hip:
            return False, f"it is a ROCm build (HIP {hip})"
        if vendor == "cuda" and not getattr(torch.version, "cuda", None):
            return False, "it is not a CUDA build (torch.version.cuda is unset)"
        return bool(torch.cuda.is_available()), "torch.cuda.is_available() is False"
    if vendor == "xpu":
        _load_ipex()
        xpu = getattr(torch, "xpu", None)
        if xpu is None:
            return False, "it has no torch.xpu (neither an XPU build nor IPEX)"
        return bool(xpu.is_available()), "torch.xpu.is_available() is False"
    if not _load_habana():
        return False, "habana_frameworks is not installed"
    hpu = getattr(torch, "hpu", None)
    return bool(hpu is not None and hpu.is_available()), "torch.hpu.is_available() is False"


def require_vendor(torch: Any, vendor: str) -> None:
    """Raise :class:`DeviceMismatch` unless ``torch`` sees a device of ``vendor``."""
    ok, why = _vendor_available(torch, vendor)
    if not ok:
        raise DeviceMismatch(
            f"{_torch_where(torch)} sees no {TITLES[vendor]} device ({why}), but the job was "
            f"planned for {vendor}: run it on a {vendor} host with the {vendor} image, or plan "
            "it with --vendor cpu"
        )


def _load_habana() -> bool:
    # Gaudi registers torch.hpu only once its bridge is imported.
    if importlib.util.find_spec("habana_frameworks") is None:
        return False
    importlib.import_module("habana_frameworks.torch.core")
    return True


def set_tf32(enabled: bool) -> None:
    """Allow (or forbid) TensorFloat-32 for float32 matmuls and cuDNN convolutions."""
    import torch

    torch.set_float32_matmul_precision("high" if enabled else "highest")
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def torch_device(arg: str = "auto", *, tf32: bool | None = None) -> Any:
    """The torch device for ``--device``: the planned vendor's (``$MBCTL_VENDOR``), else for ``auto``
    the first of cuda (ROCm builds too), xpu, hpu, cpu.

    With an accelerator planned, a framework that cannot see it, or ``--device cpu``, is a
    :class:`DeviceMismatch`, never a quiet run on the CPU. ``tf32`` True/False sets TensorFloat-32
    explicitly; None leaves torch's defaults alone.
    """
    import torch

    if tf32 is not None:
        set_tf32(tf32)
    vendor = planned_vendor()
    if vendor is not None:
        wanted = TORCH_TYPES[vendor]
        if arg != "auto" and arg.split(":")[0] != wanted:
            raise DeviceMismatch(
                f"--device {arg} contradicts the plan: the job was planned for {vendor} "
                f"(torch device {wanted}); drop --device or plan with the matching --vendor"
            )
        require_vendor(torch, vendor)
        return torch.device(wanted if arg == "auto" else arg)
    if arg != "auto":
        if arg.split(":")[0] == "hpu":
            _load_habana()
        return torch.device(arg)
    if torch.cuda.is_available():
        return torch.device("cuda")
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        return torch.device("xpu")
    if _load_habana():
        hpu = getattr(torch, "hpu", None)
        if hpu is not None and hpu.is_available():
            return torch.device("hpu")
    return torch.device("cpu")


def _no_sync(_: Any = None) -> None:
    return None


def _no_mark() -> None:
    return None


def step_marker(device: Any) -> Callable[[], object]:
    """What ends a graph segment of a training step on ``device`` (``torch.device`` or its string).

    On hpu it is Gaudi's ``mark_step``: lazy mode (``PT_HPU_LAZY_MODE=1``) only queues ops until
    it is called, and Habana places one after ``loss.backward()`` and one after
    ``optimizer.step()`` so that each is compiled and cached as its own graph instead of one
    graph growing across steps. Elsewhere a no-op, and nothing is imported.
    """
    kind = device if isinstance(device, str) else device.type
    if kind.split(":")[0] != "hpu":
        return _no_mark
    mark_step: Callable[[], object] = importlib.import_module(
        "habana_frameworks.torch.core"
    ).mark_step
    return mark_step


def synchronizer(device: Any) -> Sync:
    """The synchroniser for one torch device (``torch.device`` or its string); no-op for cpu."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":

        def cuda_sync(_: Any = None) -> None:
            torch.cuda.synchronize(device)

        return cuda_sync
    if device.type == "hpu":
        # Lazy mode: ops only queue until mark_step hands the graph to the device, so the step's
        # work is flushed first, then waited for; otherwise the clock stops before it ran.
        mark_step = step_marker(device)

        def hpu_sync(_: Any = None) -> None:
            mark_step()
            torch.hpu.synchronize()

        return hpu_sync
    if device.type in ("xpu", "mps"):
        backend = getattr(torch, device.type)

        def backend_sync(_: Any = None) -> None:
            backend.synchronize()

        return backend_sync
    return _no_sync


def jax_sync(value: Any) -> None:
    """Block until every JAX array in ``value`` (any pytree) is computed."""
    # Resolved at call time: jax is optional for the harness (and its stubs leave this untyped).
    importlib.import_module("jax").block_until_ready(value)


def _torch_backends_in_use(torch: Any) -> list[Any]:
    # Only backends this process already initialised: synchronising an unused GPU would create
    # a context on it (memory, seconds of start-up) just to wait for nothing.
    backends = []
    if torch.cuda.is_initialized():
        backends.append(torch.cuda)
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and getattr(xpu, "is_initialized", lambda: False)():
        backends.append(xpu)
    hpu = getattr(torch, "hpu", None)
    if hpu is not None and hpu.is_available():
        backends.append(hpu)
    return backends


def auto_sync(value: Any = None) -> None:
    """Synchronise whatever the process uses: JAX values handed in, initialised torch devices."""
    if value is not None and "jax" in sys.modules:
        sys.modules["jax"].block_until_ready(value)
    torch = sys.modules.get("torch")
    if torch is not None:
        for backend in _torch_backends_in_use(torch):
            core = sys.modules.get("habana_frameworks.torch.core")
            if backend is getattr(torch, "hpu", None) and core is not None:
                core.mark_step()  # lazy mode: hand the queued graph over before waiting for it
            backend.synchronize()


# --- device facts and multi-device settings ---------------------------------------------------


def _driver_version(vendor: str) -> str | None:
    """The kernel driver's version from the vendor's management library, when it is importable."""
    try:
        if vendor == "cuda":
            import pynvml

            pynvml.nvmlInit()
            try:
                value = pynvml.nvmlSystemGetDriverVersion()
            finally:
                pynvml.nvmlShutdown()
            return value.decode() if isinstance(value, bytes) else str(value)
        if vendor == "rocm":
            import amdsmi

            amdsmi.amdsmi_init()
            try:
                handles = amdsmi.amdsmi_get_processor_handles()
                return str(amdsmi.amdsmi_get_gpu_driver_info(handles[0])["driver_version"])
            finally:
                amdsmi.amdsmi_shut_down()
    except Exception:  # a missing library or driver only leaves the field empty
        return None
    return None


def _cpu_name() -> str:
    """The CPU model (Linux's /proc/cpuinfo), else what the platform module knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _torch_facts(torch: Any, vendor: str) -> dict[str, Any]:
    version = torch.version
    build = {
        key: str(getattr(version, key))
        for key in ("cuda", "hip", "xpu", "git_version")
        if getattr(version, key, None)
    }
    framework: dict[str, Any] = {
        "name": "torch",
        "version": torch.__version__,
        "path": os.path.dirname(getattr(torch, "__file__", "") or ""),
        "build": build,
    }
    facts: dict[str, Any] = {"vendor": vendor, "framework": framework, "driver": None}
    kind = TORCH_TYPES[vendor]
    if kind == "cpu":
        facts.update(type="cpu", name=_cpu_name(), count=1)
        facts["runtime"] = None
        return facts
    backend = getattr(torch, kind)
    count = int(backend.device_count())
    name = backend.get_device_name(0) if count and hasattr(backend, "get_device_name") else None
    runtime = {"cuda": build.get("hip") or build.get("cuda"), "xpu": build.get("xpu")}.get(kind)
    if kind == "hpu":
        habana = sys.modules.get("habana_frameworks")
        runtime = getattr(habana, "__version__", None)
    if kind == "xpu":
        ipex = sys.modules.get("intel_extension_for_pytorch")
        if ipex is not None:
            framework["ipex"] = str(ipex.__version__)
    facts.update(type=kind, name=name, count=count, runtime=runtime)
    facts["driver"] = _driver_version(vendor)
    return facts


def _jax_facts(jax: Any, vendor: str) -> dict[str, Any]:
    devices = jax.devices()
    jaxlib = sys.modules.get("jaxlib")
    backend = jax.default_backend()
    return {
        "vendor": vendor,
        "type": backend,
        "name": getattr(devices[0], "device_kind", None) if devices else None,
        "count": len(devices),
        "driver": _driver_version(vendor) if backend != "cpu" else None,
        "runtime": None,
        "framework": {
            "name": "jax",
            "version": jax.__version__,
            "path": os.path.dirname(getattr(jax, "__file__", "") or ""),
            "build": {"jaxlib": str(getattr(jaxlib, "__version__", "")), "backend": backend},
        },
    }


def require_jax_vendor(jax: Any, vendor: str) -> None:
    """Raise :class:`DeviceMismatch` when JAX runs on the CPU but an accelerator was planned."""
    if vendor == "cpu":
        return
    backend = jax.default_backend()
    if backend == "cpu":
        raise DeviceMismatch(
            f"jax {jax.__version__} at {os.path.dirname(jax.__file__)} sees no {TITLES[vendor]} "
            f"device (its backend is cpu: is the vendor's jaxlib plugin installed?), but the job "
            f"was planned for {vendor}"
        )


def device_facts(environ: Any = None) -> dict[str, Any] | None:
    """What the job runs on, for the ``start`` event: vendor, device type, name and count,
    driver and runtime versions, framework name, version, path and build.

    Asks only frameworks the benchmark already imported (torch first, then jax), and checks the
    planned vendor against them: a mismatch raises :class:`DeviceMismatch`. None when no
    framework is loaded yet or no vendor was planned (outside mbctl).
    """
    vendor = planned_vendor(environ)
    if vendor is None:
        return None
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "version"):
        require_vendor(torch, vendor)
        return _torch_facts(torch, vendor)
    jax = sys.modules.get("jax")
    if jax is not None:
        require_jax_vendor(jax, vendor)
        return _jax_facts(jax, vendor)
    return None


def device_count(vendor: str | None = None) -> int:
    """Devices of the (planned) vendor this process sees; 1 on the CPU; 0 when none is visible."""
    vendor = vendor or planned_vendor() or "cuda"
    kind = TORCH_TYPES[vendor]
    if kind == "cpu":
        return 1
    import torch

    if kind == "hpu":
        _load_habana()
    if kind == "xpu":
        _load_ipex()
    backend = getattr(torch, kind, None)
    return int(backend.device_count()) if backend is not None else 0


def dist_backend(device: Any) -> str:
    """The process-group backend for a torch device: nccl (RCCL on ROCm), hccl, ccl, else gloo."""
    kind = device if isinstance(device, str) else device.type
    kind = kind.split(":")[0]
    if kind == "hpu":
        # registers the hccl backend with torch.distributed
        importlib.import_module("habana_frameworks.torch.distributed.hccl")
    if kind == "xpu":
        _load_ipex()
    return DIST_BACKENDS.get(kind, "gloo")


def set_rank_device(device: Any, local_rank: int) -> Any:
    """This rank's device (``<type>:<local_rank>``), made current where the backend has a notion of it."""
    import torch

    kind = device if isinstance(device, str) else device.type
    kind = kind.split(":")[0]
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "hpu":
        # Gaudi exposes each process one module (HABANA_VISIBLE_MODULES): it is always hpu:0
        return torch.device("hpu")
    chosen = torch.device(kind, local_rank)
    getattr(torch, kind).set_device(chosen)
    return chosen


def lightning_accelerator(requested: str = "auto") -> str:
    """Lightning's ``accelerator`` for the planned vendor (``requested`` when none is planned)."""
    vendor = planned_vendor()
    return LIGHTNING_ACCELERATORS[vendor] if vendor is not None else requested


def half_dtype(device: Any) -> Any:
    """The 16-bit dtype fp16 runs as on ``device``: float16 on CUDA/ROCm, bfloat16 elsewhere
    (Milabench's rule for CPUs, which mbctl extends to Gaudi and Intel GPUs so that one precision
    name means the same 16-bit type on every non-CUDA device)."""
    import torch

    kind = device if isinstance(device, str) else device.type
    return torch.float16 if kind.split(":")[0] == "cuda" else torch.bfloat16
