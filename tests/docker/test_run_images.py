"""`mbctl run` on the docker backend picks each benchmark's image: local build, --image, or --lock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator import workflow
from orchestrator.errors import ImageError
from orchestrator.results import read_events
from tests.docker.imagesupport import CpuBuild

pytestmark = pytest.mark.docker


def request(tmp_path: Path, **kw: object) -> workflow.Request:
    base: dict[str, object] = {
        "suite": "smoke",
        "vendor": "cpu",
        "backend": "docker",
        "select": ("fp32",),
        "overrides": ("fp32.argv.--measures=5", "fp32.argv.--size=128"),
        "results": tmp_path / "runs",
        "data_dir": tmp_path / "data",
    }
    return workflow.Request(**{**base, **kw})  # type: ignore[arg-type]


def test_run_uses_a_local_build_and_records_the_image(
    cpu_build: CpuBuild, docker_client: Any, tmp_path: Path
) -> None:
    req = request(tmp_path)
    prepared = workflow.prepare(req)
    (job,) = prepared.plan.jobs
    assert job.image is not None
    image = docker_client.images.get(job.image)
    assert image.labels["mbctl.benchmark"] == "matmul"
    result = workflow.run(req, prepared)
    exit_event = read_events(result.run.events_path("fp32.0"))[-1]
    assert exit_event["status"] == "ok", exit_event
    assert exit_event["image"]["id"] == image.id


def test_explicit_image_wins_and_a_bad_lock_refuses(cpu_build: CpuBuild, tmp_path: Path) -> None:
    convnet = next(b for b in cpu_build.built if b.spec.name == "convnet")
    prepared = workflow.prepare(request(tmp_path, images=(f"fp32={convnet.spec.tag}",)))
    assert prepared.plan.jobs[0].image == convnet.spec.tag
    lock = tmp_path / "images.lock.yaml"
    lock.write_text("version: 1\nimages: {}\n")
    with pytest.raises(ImageError, match="no cpu image of matmul"):
        workflow.prepare(request(tmp_path, lock=lock))


def test_auto_falls_back_to_local_without_images(tmp_path: Path) -> None:
    # a definition no engine has an image of, whatever was built here before
    overrides = ("jax-mlp.definition=mbctl-test-never-built",)
    prepared = workflow.prepare(
        request(tmp_path, backend="auto", select=("jax-mlp",), overrides=overrides)
    )
    assert prepared.backend_name == "local"
    assert "no cpu image of mbctl-test-never-built" in prepared.notes[0]
