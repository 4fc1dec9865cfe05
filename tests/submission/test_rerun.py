"""`rerun`: a bundle run again with its settings (and, on a container backend, its locked images)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

import pytest
from bundles import MATMUL_IMAGE, MATMUL_REF, record, repack, set_exit_images, status, verify

from orchestrator import submission
from orchestrator.backends.base import BACKENDS, Exit, Handle, RunContext
from orchestrator.backends.docker import image_record
from orchestrator.backends.local import LocalBackend
from orchestrator.errors import ResultsError
from orchestrator.plan import Job
from orchestrator.results import RunDir

#: Largest |re-run / submitted − 1| accepted on the shared 2-core CPU machine. There, 24
#: back-to-back runs of the mini suite (docs/submissions.md) gave 44 pairs of consecutive
#: per-benchmark results: 30 within 15 %, 43 within 50 %, the worst 1.62x (a run slowed by other
#: jobs' builds, then a normal one). 0.6 with a second attempt passes that; a claim 10x too
#: high still fails.
TOLERANCE = 0.6
ATTEMPTS = 2


def test_rerun_reproduces_the_submission(lock_file: Path, tmp_path: Path) -> None:
    # Each attempt records a fresh submission and re-runs it at once, so that both runs see
    # the same load; a second attempt absorbs a burst of other work during the first.
    for attempt in range(ATTEMPTS):
        root = tmp_path / f"attempt{attempt}"
        run = record(root)
        set_exit_images(run, MATMUL_IMAGE)
        created = submission.create(run, root / "bundle.tar.gz", lock=lock_file)
        extracted = submission.extract(created.path, root / "bundle")
        result = submission.rerun(
            extracted,
            results=root / "reruns",
            backend="local",
            tolerance=TOLERANCE,
            data_dir=root / "data",
        )
        if result.passed:
            break
    assert result.passed, result.rows
    assert result.backend == "local" and result.tolerance == TOLERANCE
    assert any("not the bundle's images" in note for note in result.notes)
    assert [row.name for row in result.rows] == ["fp32", "fp32-small", "score"]
    assert all(math.isfinite(row.ratio) and row.ratio > 0 for row in result.rows)
    submitted = RunDir.open(extracted.run_dir)
    assert result.run.job_ids() == submitted.job_ids()
    assert result.run.meta()["suite"]["config_hash"] == submitted.meta()["suite"]["config_hash"]
    assert (result.run.path / "summary.json").is_file()


class RecordingBackend(LocalBackend):
    """The local backend posing as a container backend: it reports running ``job.image``."""

    name = "recording"
    images: ClassVar[dict[str, str | None]] = {}

    def submit(self, job: Job, ctx: RunContext) -> Handle:
        RecordingBackend.images[job.id] = job.image
        return super().submit(job, ctx)

    def wait(self, handle: Handle, timeout: float | None) -> Exit | None:
        done = super().wait(handle, timeout)
        if done is not None and handle.job.image:
            ref = handle.job.image
            done.image = image_record(ref, MATMUL_IMAGE["id"], [ref])
        return done


def test_container_rerun_pins_the_locked_images(
    bundle: Path, lock_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(BACKENDS, "recording", f"{__name__}:RecordingBackend")
    RecordingBackend.images.clear()
    extracted = submission.extract(bundle, tmp_path / "bundle")
    result = submission.rerun(
        extracted, results=tmp_path / "runs", backend="recording", data_dir=tmp_path / "data"
    )
    assert RecordingBackend.images == {"fp32.0": MATMUL_REF, "fp32-small.0": MATMUL_REF}
    assert result.backend == "recording"
    assert not any("not the bundle's images" in note for note in result.notes)
    # the re-run is itself a submission whose images check out
    again = submission.create(result.run.path, tmp_path / "again.tar.gz", lock=lock_file)
    assert status(verify(again.path, tmp_path / "v"))["images"] == "PASS"


def test_rerun_refuses_a_suite_that_is_not_the_one_run(bundle: Path, tmp_path: Path) -> None:
    def smaller(root: Path) -> None:
        path = root / "suite" / "mini.yaml"
        path.write_text(path.read_text().replace("--size: 384", "--size: 128"))

    forged = repack(bundle, tmp_path / "forged.tar.gz", smaller, rehash=True)
    extracted = submission.extract(forged, tmp_path / "bundle")
    with pytest.raises(ResultsError, match="does not give the settings it was run with"):
        submission.rerun(extracted, results=tmp_path / "reruns", backend="local")
    assert not (tmp_path / "reruns").exists()
