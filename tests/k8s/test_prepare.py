"""Prepare pods on a shared dataset volume: two preparers at once, each PID 1 in its own PID
namespace as every pod is, build one dataset once and never touch each other's work."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from orchestrator.backends.base import Phase
from orchestrator.backends.kubernetes import K8sSettings
from orchestrator.backends.kubernetes.manifests import render_bundle

pytestmark = pytest.mark.k8s

BENCHKIT = Path(__file__).resolve().parents[2] / "benchmarks" / "benchkit"

PREPARER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from benchkit.cache import materialise

    go, log = Path(sys.argv[1]), Path(sys.argv[2])
    while not go.exists():
        time.sleep(0.01)

    def generate(root):
        with log.open("a") as f:
            f.write(f"generate pid={os.getpid()} into {root.name}\\n")
        for i in range(20):
            (root / f"part-{i}").write_text(str(i) * 1000)
            time.sleep(0.01)

    path = materialise({"dataset": "Shared", "version": 1}, generate)
    print(f"pid={os.getpid()} got {path.name}")
    """
)


def _isolated() -> list[str]:
    """A command prefix giving the process its own PID namespace, where it is PID 1."""
    unshare = shutil.which("unshare")
    if unshare is not None:
        probe = subprocess.run(
            [unshare, "--pid", "--fork", "--mount-proc", "true"], capture_output=True, check=False
        )
        if probe.returncode == 0:
            return [unshare, "--pid", "--fork", "--mount-proc"]
    pytest.skip("unshare --pid is not permitted here (needs root or user namespaces)")


def test_two_preparers_in_separate_pid_namespaces_build_one_dataset_once(tmp_path: Path) -> None:
    prefix = _isolated()
    data, go, log = tmp_path / "data", tmp_path / "go", tmp_path / "generated.log"
    env = {**os.environ, "MBCTL_DATA": str(data), "PYTHONPATH": str(BENCHKIT)}
    command = [*prefix, sys.executable, "-c", PREPARER, str(go), str(log)]
    preparers = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    go.touch()
    results = [p.communicate(timeout=60) for p in preparers]
    assert [p.returncode for p in preparers] == [0, 0], results
    (name,) = {out.split(" got ")[1].strip() for out, _ in results}
    # both were PID 1, as in two pods: PID-named temporary folders would have collided
    assert [out.split()[0] for out, _ in results] == ["pid=1", "pid=1"]
    assert log.read_text().count("generate") == 1  # the second waited, then found it built
    assert sum("waiting for another preparer" in err for _, err in results) == 1
    dataset = data / name
    assert sorted(p.name for p in dataset.iterdir()) == sorted(
        [".mbctl-dataset.json", *(f"part-{i}" for i in range(20))]
    )
    assert json.loads((dataset / ".mbctl-dataset.json").read_text())["dataset"] == "Shared"
    assert sorted(p.name for p in data.iterdir()) == [name, f"{name}.lock"]  # no temp folder


def test_prepare_jobs_one_per_dataset_and_never_hold_accelerators() -> None:
    from helpers import plan_for, preparation

    plan = plan_for("cuda")
    # two per-GPU copies of resnet50 share one dataset: one prepare Job for both
    assert [j.bench for j in plan.jobs].count("resnet50") == 2
    prepared = preparation(plan)
    assert sorted(j.bench for j in prepared.jobs) == ["dp-mlp", "llm-2n", "resnet50"]
    bundle = render_bundle(prepared, K8sSettings(), Phase.PREPARE)
    for manifest in (m for m in bundle.values() if m["kind"] == "Job"):
        container = manifest["spec"]["template"]["spec"]["containers"][0]
        assert "nvidia.com/gpu" not in container["resources"]["limits"]
        assert "completionMode" not in manifest["spec"]  # one pod, even for multi-node benchmarks
        assert container["command"] == ["python", "prepare.py"]
