"""``mbctl render slurm``: scripts for the standard suite pass ``bash -n`` and ask for the GPUs, and a
rendered submit.sh really runs on the test cluster."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.backends.slurm import SlurmBackend
from orchestrator.cli.main import app
from orchestrator.errors import BackendUnavailable

runner = CliRunner()


def render(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["render", "slurm", *args])
    return result.exit_code, result.stdout + result.stderr


def test_standard_suite_for_eight_gpus(tmp_path: Path) -> None:
    out = tmp_path / "jobs"
    code, text = render("--vendor", "cuda", "--suite", "standard", "--devices", "8", "-o", str(out))
    assert code == 0, text
    scripts = sorted(out.glob("*.sbatch"))
    assert len(scripts) > 50
    for path in [*scripts, out / "submit.sh"]:
        subprocess.run(["bash", "-n", str(path)], check=True)
    requests = {
        path.name: re.findall(r"^#SBATCH --gpus-per-node=(\d+)$", path.read_text(), re.M)
        for path in scripts
    }
    # every job asks for GPUs: one for a per-GPU job, the node's eight for the others
    assert all(found in (["1"], ["8"]) for found in requests.values()), requests
    assert requests["bert-tf32-fp16.D7.sbatch"] == ["1"]
    assert "8" in {found[0] for found in requests.values()}
    submit = (out / "submit.sh").read_text()
    assert submit.count("sbatch --parsable") == len(scripts)
    assert "--dependency=afterany" in submit
    assert (out / "logs").is_dir()


def test_one_array_per_benchmark(tmp_path: Path) -> None:
    out = tmp_path / "jobs"
    code, text = render(
        "--vendor", "cuda", "--suite", "standard", "--devices", "8", "--array", "-o", str(out)
    )
    assert code == 0, text
    arrays = sorted(out.glob("*.array.sbatch"))
    for path in [*arrays, out / "submit.sh"]:
        subprocess.run(["bash", "-n", str(path)], check=True)
    bert = (out / "bert-tf32-fp16.array.sbatch").read_text()
    assert "#SBATCH --array=0-7" in bert and "#SBATCH --gpus-per-node=1" in bert
    assert f"  {out / 'bert-tf32-fp16.D7.sbatch'}\n" in bert
    assert (out / "submit.sh").read_text().count("sbatch --parsable") == len(arrays)


def test_prepare_phase_and_images_from_a_runtime(tmp_path: Path) -> None:
    config = tmp_path / "slurm.yaml"
    config.write_text("runtime: apptainer\n")
    digest = "sha256:" + "cd" * 32
    code, text = render(
        "--vendor",
        "cpu",
        "--suite",
        "smoke",
        "--select",
        "fp32",
        "--slurm-config",
        str(config),
        "--image",
        f"fp32=registry.example.com/mbctl/matmul@{digest}",
        "-o",
        str(tmp_path / "jobs"),
    )
    assert code == 0, text
    script = (tmp_path / "jobs" / "fp32.0.sbatch").read_text()
    assert f"docker://registry.example.com/mbctl/matmul@{digest}" in script
    code, text = render(
        "--vendor", "cpu", "--suite", "smoke", "--slurm-config", str(config), "-o", str(tmp_path)
    )
    assert code == 4 and "error: no image for" in text and "Traceback" not in text


def test_check_without_slurm_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(BackendUnavailable, match="scontrol not found on PATH") as info:
        SlurmBackend().check()
    assert info.value.exit_code == 3


SCRIPT = """
    import json, sys, time
    print(json.dumps({"mbctl": 1, "event": "rate", "t": time.time(), "value": 3.0, "units": "items/s", "task": "train"}), flush=True)
    print("done", sys.argv[1:])
"""


@pytest.mark.slurm
@pytest.mark.parametrize("array", [False, True], ids=["per-job", "array"])
def test_rendered_submit_script_runs_on_the_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, array: bool
) -> None:
    root = tmp_path / "benchmarks"
    for name in ("first", "second"):
        (root / name).mkdir(parents=True)
        (root / name / "main.py").write_text(textwrap.dedent(SCRIPT))
    (root / "suites").mkdir()
    suite = {
        "name": "rendered",
        "defaults": {"max_duration": 60},
        "benchmarks": {n: {"definition": n, "argv": {"--who": n}} for n in ("first", "second")},
    }
    (root / "suites" / "rendered.yaml").write_text(json.dumps(suite))
    monkeypatch.setenv("MBCTL_BENCHMARKS", str(root))
    out = tmp_path / "jobs"
    code, text = render(
        "--vendor",
        "cpu",
        "--suite",
        "rendered",
        "--python",
        sys.executable,
        "--data",
        str(tmp_path / "data"),
        "-o",
        str(out),
        *(["--array"] if array else []),
    )
    assert code == 0, text
    done = subprocess.run(
        ["bash", str(out / "submit.sh")], capture_output=True, text=True, timeout=60, check=True
    )
    ids = re.findall(r"submitted (\w+)(?:\.0)?: (\d+)", done.stdout)
    assert [name for name, _ in ids] == ["first", "second"]
    # the second benchmark waits for the first: the dependency is in Slurm's record of it
    shown = subprocess.run(
        ["scontrol", "show", "job", "-o", ids[1][1]], capture_output=True, text=True, check=True
    )
    assert f"afterany:{ids[0][1]}" in shown.stdout
    # rendered scripts are named after suite and vendor, not a run id
    deadline = time.monotonic() + 120
    while SlurmBackend().leftovers("rendered-cpu") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert SlurmBackend().leftovers("rendered-cpu") == []
    for name, job_id in ids:
        log_name = f"{name}.{job_id}_0.out" if array else f"{name}.0.{job_id}.out"
        log = (out / "logs" / log_name).read_text()
        assert '"event": "rate"' in log and f"done ['--who', '{name}']" in log


def test_images_come_from_the_digest_lock(tmp_path: Path) -> None:
    """Container runtimes run the lock's repo@sha256, in `run` and `render` alike."""
    from orchestrator import images, workflow

    digest, config_id = "sha256:" + "ab" * 32, "sha256:" + "01" * 32
    lock = tmp_path / "images.lock.yaml"
    entry = images.LockEntry(
        ref=f"registry.example.com:5000/mbctl/matmul@{digest}",
        image_id=config_id,
        base=images.LockBase(name="nvcr.io/nvidia/pytorch:25.01-py3", digest=config_id),
    )
    images.write_lock(images.Lock().updated("cuda", {"matmul": entry}), lock)
    config = tmp_path / "slurm.yaml"
    config.write_text("runtime: pyxis\n")
    req = workflow.Request(
        suite="smoke",
        select=("fp32",),
        vendor="cuda",
        devices="2",
        backend="slurm",
        lock=lock,
        slurm_config=config,
    )
    planned = workflow.prepare(req).plan.jobs
    assert [(j.id, j.image) for j in planned] == [
        ("fp32.D0", entry.ref),
        ("fp32.D1", entry.ref),
    ]
    code, text = render(
        "--vendor",
        "cuda",
        "--suite",
        "smoke",
        "--select",
        "fp32",
        "--devices",
        "2",
        "--lock",
        str(lock),
        "--slurm-config",
        str(config),
        "-o",
        str(tmp_path / "jobs"),
    )
    assert code == 0, text
    script = (tmp_path / "jobs" / "fp32.D1.sbatch").read_text()
    assert f"--container-image=registry.example.com:5000#mbctl/matmul@{digest}" in script
