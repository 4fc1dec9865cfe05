"""Slurm batch scripts without Slurm: golden scripts per runtime and vendor, options, settings.

Pyxis and Apptainer cannot run here, so their command lines are pinned by golden files in
tests/slurm/golden/<name>.sbatch. After an intended change, rewrite them with
MBCTL_UPDATE_GOLDEN=1 and review the diff. Every script must also pass ``bash -n``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from orchestrator.backends.base import Phase, RunContext
from orchestrator.backends.slurm import SlurmSettings, load_settings
from orchestrator.backends.slurm.script import batch_script, pyxis_image, time_limit
from orchestrator.errors import ConfigError
from orchestrator.plan import Job, PlanKind
from orchestrator.vendors import get as vendor_spec

GOLDEN = Path(__file__).resolve().parent / "golden"
DIGEST = "sha256:" + "ab" * 32
IMAGE = f"registry.example.com:5000/mbctl/matmul@{DIGEST}"


def job(vendor: str = "cuda", *, devices: tuple[str, ...] = ("3",), nodes: int = 1) -> Job:
    return Job(
        id="fp32.N2" if nodes > 1 else f"fp32.D{devices[0]}" if devices else "fp32.0",
        bench="fp32",
        tag="D3",
        definition="matmul",
        argv=("--dtype", "fp32", "--size", "512"),
        env={"OMP_NUM_THREADS": "8", **vendor_spec(vendor).visible_devices(devices)},
        vendor=vendor,
        devices=devices,
        plan=PlanKind.PER_GPU if nodes == 1 else PlanKind.NODES,
        nodes=nodes,
        max_duration=600,
        image=IMAGE,
    )


def ctx(phase: Phase = Phase.RUN) -> RunContext:
    return RunContext(
        run_id="20250101-000000-smoke-abcd",
        run_dir=Path("/shared/runs/20250101-000000-smoke-abcd"),
        data_dir=Path("/shared/data"),
        benchmarks_root=Path("/opt/mbctl/benchmarks"),
        phase=phase,
    )


def script(j: Job, phase: Phase = Phase.RUN, **settings: Any) -> str:
    return batch_script(
        j,
        ctx(phase),
        SlurmSettings(**settings),
        output=f"/shared/runs/20250101-000000-smoke-abcd/slurm/{j.id}.out",
        data_dir="/shared/data",
    )


CASES: dict[str, tuple[Job, Phase, dict[str, Any]]] = {
    "none-cpu": (job("cpu", devices=()), Phase.RUN, {"python": "/opt/venv/bin/python"}),
    "none-cuda-gres": (
        job("cuda"),
        Phase.RUN,
        {
            "gpu_request": "gres",
            "gpu_type": "a100",
            "cpus_per_gpu": 8,
            "partition": "gpu",
            "account": "bench",
            "qos": "high",
            "mem": "64G",
        },
    ),
    "pyxis-cuda": (job("cuda"), Phase.RUN, {"runtime": "pyxis", "partition": "gpu"}),
    "pyxis-cuda-2nodes": (
        job("cuda", devices=tuple(str(i) for i in range(8)), nodes=2),
        Phase.RUN,
        {"runtime": "pyxis", "exclusive": True, "extra_sbatch": ("--mail-type=END",)},
    ),
    "apptainer-cuda": (job("cuda"), Phase.RUN, {"runtime": "apptainer"}),
    "apptainer-rocm": (job("rocm"), Phase.RUN, {"runtime": "apptainer"}),
    "apptainer-cpu-prepare": (job("cpu", devices=()), Phase.PREPARE, {"runtime": "apptainer"}),
    "podman-cuda": (job("cuda"), Phase.RUN, {"runtime": "podman"}),
    "podman-rocm": (
        job("rocm"),
        Phase.RUN,
        {"runtime": "podman", "podman_args": ("--userns=keep-id",)},
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_script(name: str) -> None:
    j, phase, settings = CASES[name]
    text = script(j, phase, **settings)
    path = GOLDEN / f"{name}.sbatch"
    if os.environ.get("MBCTL_UPDATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"{path} is missing: run with MBCTL_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} changed: review, then run with MBCTL_UPDATE_GOLDEN=1"
    subprocess.run(["bash", "-n", str(path)], check=True)


def test_pyxis_names_the_registry_the_enroot_way() -> None:
    assert pyxis_image(IMAGE) == f"registry.example.com:5000#mbctl/matmul@{DIGEST}"
    assert pyxis_image(f"localhost/mbctl/x@{DIGEST}") == f"localhost#mbctl/x@{DIGEST}"
    assert pyxis_image(f"docker.io/mbctl/x@{DIGEST}") == f"mbctl/x@{DIGEST}"
    assert pyxis_image(f"mbctl/x@{DIGEST}") == f"mbctl/x@{DIGEST}"
    text = script(job(), runtime="pyxis")
    assert f"--container-image=registry.example.com:5000#mbctl/matmul@{DIGEST}" in text


def test_gpus_requested_per_node_and_plan_devices_left_to_slurm() -> None:
    text = script(job("cuda", devices=("0", "1", "2", "3")))
    assert "#SBATCH --gpus-per-node=4" in text
    # Slurm sets CUDA_VISIBLE_DEVICES for the GPUs it gives; the plan's host indices would be wrong
    assert "export CUDA_VISIBLE_DEVICES" not in text
    assert "export CUDA_DEVICE_ORDER=PCI_BUS_ID" in text
    assert "gpus" not in script(job("cpu", devices=()))


def test_time_limit_covers_max_duration_plus_margin() -> None:
    assert time_limit(600, 10) == "0:20:00"
    assert time_limit(61, 0) == "0:02:00"
    assert time_limit(7200, 10) == "2:10:00"
    assert "#SBATCH --time=0:10:00" in script(job(), time_margin=0)


def test_dataset_cache_is_read_only_except_to_prepare() -> None:
    run = script(job(), runtime="apptainer")
    prep = script(job(), Phase.PREPARE, runtime="apptainer")
    assert "--bind=/shared/data:/data:ro" in run
    assert "--bind=/shared/data:/data " in prep or "--bind=/shared/data:/data \\" in prep
    assert "prepare.py" in prep and "main.py" not in prep


def test_missing_image_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="benchmark fp32 has no image for vendor cuda"):
        script(job().model_copy(update={"image": None}), runtime="pyxis")


def test_output_path_with_spaces_is_refused() -> None:
    with pytest.raises(ConfigError, match="whitespace"):
        batch_script(job(), ctx(), SlurmSettings(), output="/my runs/x.out", data_dir="/d")


def test_settings_file_reports_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "slurm.yaml"
    bad.write_text("runtime: docker\npartition: 'gpu nodes'\nextra_sbatch: ['-N 2']\nfoo: 1\n")
    with pytest.raises(ConfigError) as info:
        load_settings(bad)
    text = str(info.value)
    for key in ("runtime", "partition", "extra_sbatch", "foo"):
        assert key in text
    assert "slurm.yaml:1" in text


def test_example_settings_file_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "docs" / "slurm.example.yaml"
    settings = load_settings(example)
    assert settings.runtime.value == "pyxis"
    assert settings.partition == "gpu"
