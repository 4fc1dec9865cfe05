"""Writes a Milabench run folder the size of a 4×L40S run (145 ``.data`` files, ~86k lines).

The shape follows Milabench's own files: a ``config`` event, a ``meta`` event with the machine
(CPU, OS, 4 GPUs, PyTorch build), ``start``, ``data`` events (training rates, early-stop
progress, ``gpudata`` for the job's devices), the job's stdout as ``line`` events, ``stop``
and ``end``. Deterministic, so every `make bench` reads the same bytes.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

GPUS = 4
#: (benchmark, plan) pairs: per-GPU ones give 4 files (D0..D3), the others one.
PER_GPU = 33
WHOLE_NODE = 13
LINES_PER_FILE = 593


def _meta() -> dict[str, object]:
    gpus = {
        str(i): {
            "device": i,
            "product": "NVIDIA L40S",
            "memory": {"used": 512.0, "total": 46068.0},
            "utilization": {"compute": 0, "memory": 0.01},
            "temperature": 31,
            "power": 35.2,
            "selection_variable": "CUDA_VISIBLE_DEVICES",
        }
        for i in range(GPUS)
    }
    return {
        "cpu": {"count": 48, "brand": "AMD EPYC 9354 32-Core Processor"},
        "os": {
            "sysname": "Linux",
            "nodename": "cn-l040",
            "release": "5.15.0-101-generic",
            "version": "#111-Ubuntu SMP",
            "machine": "x86_64",
        },
        "accelerators": {"arch": "cuda", "gpus": gpus},
        "date": 1716998400.0,
        "milabench": {"tag": "v1.0.0", "commit": "0" * 40, "date": "2024-05-29"},
        "pytorch": {
            "torch": "2.3.1+cu121",
            "compiler": "GCC 9.3",
            "cuda": "12.1",
            "build_settings": {f"USE_{k}": "ON" for k in ("CUDA", "CUDNN", "NCCL", "MKLDNN", "MPI")}
            | {"CXX_FLAGS": "-D_GLIBCXX_USE_CXX11_ABI=0 " * 20},
        },
    }


def _config(name: str, tag: list[str], device: str | None, devices: list[str]) -> dict[str, object]:
    return {
        "dirs": {"base": "/results", "venv": "/venv/torch", "data": "/data", "runs": "/runs"},
        "arch": "cuda",
        "group": name.split("-")[0],
        "install_group": "torch",
        "enabled": True,
        "max_duration": 600,
        "voir": {"options": {"stop": 60, "interval": "1s"}},
        "definition": f"/milabench/benchmarks/{name}",
        "plan": {"method": "per_gpu" if device is not None else "njobs", "n": 1},
        "tags": ["vision", "classification", "convnet"],
        "weight": 1.0,
        "name": name,
        "tag": tag,
        "device": device,
        "devices": devices,
        "num_machines": 1,
        "argv": {"--batch-size": 256, "--precision": "tf32-fp16", "--num-workers": 8},
    }


def _file(rng: random.Random, name: str, tag: list[str], device: str | None) -> list[str]:
    devices = [device] if device is not None else [str(i) for i in range(GPUS)]
    t = 1716998400.0 + rng.random() * 1e5
    events: list[dict[str, object]] = [
        {"event": "config", "data": _config(name, tag, device, devices), "pipe": None},
        {"event": "meta", "data": _meta(), "pipe": "data"},
        {"event": "start", "data": {"command": ["voir", "main.py"], "time": t}, "pipe": None},
        {"event": "phase", "data": {"name": "run_script"}, "pipe": "data"},
    ]
    step = 0
    while len(events) < LINES_PER_FILE - 2:
        step += 1
        t += 1.0
        gpudata = {
            d: {
                "memory": [30000.0 + rng.random() * 1000, 46068.0],
                "load": 0.97,
                "temperature": 70 + rng.randint(0, 9),
                "power": 280.0 + rng.random() * 60,
            }
            for d in devices
        }
        events += [
            {"event": "data", "data": {"gpudata": gpudata, "task": "main", "time": t}, "pipe": "data"},
            {
                "event": "data",
                "data": {"task": "train", "rate": 800 + rng.random() * 50, "units": "items/s", "time": t},
                "pipe": "data",
            },
            {"event": "data", "data": {"task": "early_stop", "progress": [step, 60], "time": t}, "pipe": "data"},
            {"event": "line", "data": f"epoch 0 step {step} loss {2.3 / step:.4f}\n", "pipe": "stdout"},
        ]  # fmt: skip
    events = events[: LINES_PER_FILE - 2]
    events += [
        {"event": "stop", "data": {"time": t}, "pipe": None},
        {"event": "end", "data": {"command": ["voir", "main.py"], "time": t + 1, "return_code": 0}, "pipe": None},
    ]  # fmt: skip
    return [json.dumps(ev) for ev in events]


def write(folder: Path) -> Path:
    """Write the run into ``folder`` (once: an existing complete folder is reused)."""
    files = GPUS * PER_GPU + WHOLE_NODE
    if folder.is_dir() and len(list(folder.glob("*.data"))) == files:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(4)
    jobs = [(f"bench{i:02d}-single", f"D{d}", str(d)) for i in range(PER_GPU) for d in range(GPUS)]
    jobs += [(f"bench{i:02d}-gpus", "0", None) for i in range(WHOLE_NODE)]
    for name, tag, device in jobs:
        lines = _file(rng, name, [name, tag], device)
        (folder / f"{name}.{tag}.data").write_text("\n".join(lines) + "\n")
    return folder


if __name__ == "__main__":
    import sys

    out = write(Path(sys.argv[1] if len(sys.argv) > 1 else ".cache/bench/milabench-4xl40s"))
    count = sum(1 for f in out.glob("*.data") for _ in f.open())
    print(f"{out}: {len(list(out.glob('*.data')))} files, {count} lines")
