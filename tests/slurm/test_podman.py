"""Podman as the Slurm container runtime: the scripted benchmark image (built by the Docker tests'
tooling on the debootstrapped base) copied into Podman's store and run as a Slurm job."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from orchestrator import images, workflow
from orchestrator.results import read_events

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "docker"))
from scriptedimage import DOCKERFILE, PREPARE, SCRIPT, _context  # noqa: E402

pytestmark = [pytest.mark.slurm, pytest.mark.docker]

BASE_IMAGE = "mbctl-test/python-base:bookworm"
#: This sandbox's runc may not raise rlimits past its own: podman's defaults (nofile, nproc) fail.
ULIMITS = ("--ulimit=nofile=1024:1024", "--ulimit=nproc=1024:1024")


@pytest.fixture(scope="module")
def podman_image() -> str:
    """The scripted image, built in Docker (content-tagged, so reused) and copied into Podman."""
    done = subprocess.run(
        ["bash", str(ROOT / "tests" / "infra" / "base-image.sh"), BASE_IMAGE],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-800:]
    files = {
        "Dockerfile": DOCKERFILE.format(base=BASE_IMAGE),
        "main.py": textwrap.dedent(SCRIPT),
        "prepare.py": textwrap.dedent(PREPARE),
    }
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:12]
    tag = f"mbctl-test/scripted:{digest}"
    client = images.engine()
    try:
        client.images.get(tag)
    except Exception:  # ImageNotFound: build it
        client.images.build(fileobj=_context(files), custom_context=True, tag=tag, rm=True)
    ref = f"docker.io/{tag}"
    present = subprocess.run(["podman", "image", "exists", ref], check=False, timeout=60)
    if present.returncode != 0:
        pulled = subprocess.run(
            ["podman", "pull", "-q", f"docker-daemon:{tag}"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert pulled.returncode == 0, pulled.stderr[-800:]
    return ref


def test_podman_runtime_runs_the_image_under_slurm(tmp_path: Path, podman_image: str) -> None:
    suites = tmp_path / "suites"
    suites.mkdir()
    suite = {
        "name": "podman",
        "defaults": {"max_duration": 120},
        "benchmarks": {"good": {"definition": "scripted", "argv": ["good"]}},
    }
    (suites / "podman.yaml").write_text(json.dumps(suite))
    config = tmp_path / "slurm.yaml"
    config.write_text(
        json.dumps({"runtime": "podman", "poll_interval": 0.2, "podman_args": list(ULIMITS)})
    )
    data = tmp_path / "data"
    data.mkdir()
    (data / "prepared.txt").write_text("ready")
    req = workflow.Request(
        suite=str(suites / "podman.yaml"),
        vendor="cpu",
        backend="slurm",
        results=tmp_path / "runs",
        data_dir=data,
        images=(f"good={podman_image}",),
        slurm_config=config,
    )
    result = workflow.run(req, workflow.prepare(req))
    run = result.run
    events = read_events(run.events_path("good.0"))
    assert events[-1]["status"] == "ok", run.log_path("good.0").read_text()[-2000:]
    assert [e["value"] for e in events if e["event"] == "rate"] == [
        100.0,
        101.0,
        102.0,
        103.0,
        104.0,
    ]
    probe = next(e for e in events if e["event"] == "meta")["data"]
    # the dataset cache is mounted read-only for a run, and the job sees its own identity
    assert probe["data"] == "Read-only file system"
    assert probe["prepared"] == "ready"
    assert probe["env"]["MBCTL_JOB_ID"] == "good.0"
    assert probe["env"]["MBCTL_DATA"] == "/data"
    assert (run.path / "files" / "good.0" / "out.txt").read_text() == "good.0"
    assert "a line on stderr" in run.log_path("good.0").read_text()
    assert podman_image in (run.path / "slurm" / "good.0.sbatch").read_text()
