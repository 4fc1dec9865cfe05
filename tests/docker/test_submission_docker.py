"""Procurement end to end with real containers: push → lock → run by digest → submit → verify → rerun.

The benchmark is the scripted image in its fixed-rate mode (``good``: rates 100…104), so the
re-run must agree exactly: no test compares two real timings.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from scriptedimage import Scripted, scripted_image  # noqa: F401 - the `scripted` fixture

from orchestrator import images, submission, workflow
from orchestrator.results import read_events
from orchestrator.vendors import Vendor

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def locked(
    scripted: Scripted, docker_client: Any, registry: str, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The scripted image, labelled as `mbctl build` labels, pushed to the local registry and
    pinned in a lock."""
    labels = {
        f"{images.OCI}version": "fixed-rate-1",
        f"{images.OCI}base.name": scripted.ref,
        f"{images.OCI}base.digest": scripted.id,
        images.LABEL_BASE_LOCAL: "true",
    }
    dockerfile = f"FROM {scripted.ref}\n" + "".join(
        f'LABEL "{key}"="{value}"\n' for key, value in labels.items()
    )
    image, _ = docker_client.images.build(
        fileobj=io.BytesIO(dockerfile.encode()), tag="mbctl-test/fixed-rate:1", rm=True
    )
    entry = images.push_image(docker_client, image, "scripted", registry)
    path = tmp_path_factory.mktemp("lock") / "images.lock.yaml"
    images.write_lock(images.Lock().updated(Vendor.CPU, {"scripted": entry}), path)
    return path


SUITE = """
name: procurement
min_measures: 5
benchmarks:
  fixed:
    definition: scripted
    argv: [good]
    unit: items/s
    max_duration: 120
"""


def request(tmp_path: Path, lock: Path) -> workflow.Request:
    suite = tmp_path / "procurement.yaml"
    suite.write_text(SUITE)
    return workflow.Request(
        suite=str(suite),
        vendor="cpu",
        backend="docker",
        results=tmp_path / "runs",
        data_dir=tmp_path / "data",
        lock=lock,
    )


def test_submit_verify_and_rerun_a_container_run(locked: Path, tmp_path: Path) -> None:
    req = request(tmp_path, locked)
    prepared = workflow.prepare(req)
    (job,) = prepared.plan.jobs
    ref = images.read_lock(locked).entry("scripted", Vendor.CPU)
    assert ref is not None and job.image == ref.ref  # the run starts exactly the locked digest
    result = workflow.run(req, prepared)
    exit_event = read_events(result.run.events_path("fixed.0"))[-1]
    assert exit_event["status"] == "ok", exit_event
    assert ref.ref.rpartition("@")[2] in json.dumps(exit_event["image"])  # the digest that ran
    assert result.run.meta()["lock"]["path"] == str(locked.resolve())

    bundle_path = tmp_path / "vendor.tar.gz"
    submission.create(result.run.path, bundle_path, lock=locked)
    bundle = submission.extract(bundle_path, tmp_path / "buyer")
    verdict = submission.verify(bundle, lock=images.read_lock(locked), min_measures=5)
    failed = {c.name: c.reason for c in verdict.checks if c.status == "FAIL"}
    # the scripted image reports no framework in meta.json's system: the only check it fails
    assert set(failed) <= {"system"}, failed

    again = submission.rerun(
        bundle, results=tmp_path / "rerun", backend="docker", tolerance=0.0, insecure=True
    )
    assert again.backend == "docker"
    assert [(row.name, row.ratio) for row in again.rows] == [("fixed", 1.0), ("score", 1.0)]
    assert again.passed
