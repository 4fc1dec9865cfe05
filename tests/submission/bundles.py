"""Helpers of the submission tests: the mini suite, a fake lock, exit images, repacking bundles."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

from orchestrator import images, report, submission, workflow
from orchestrator.backends.docker import image_record
from orchestrator.results import RunDir, read_events
from orchestrator.vendors import Vendor

HERE = Path(__file__).resolve().parent
MINI = HERE / "mini.yaml"


def fake_digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


MATMUL_REF = f"registry.example/mbctl/matmul@{fake_digest('matmul image')}"
MATMUL_ID = fake_digest("matmul config")
#: What the docker backend records in the exit event of a job that ran the locked image.
MATMUL_IMAGE = image_record(MATMUL_REF, MATMUL_ID, [MATMUL_REF])


def record(root: Path) -> Path:
    """Run the mini suite for real with the local backend into ``root/runs``, and write its
    summary.json as `mbctl run` does; the run folder."""
    req = workflow.Request(
        suite=str(MINI),
        vendor="cpu",
        backend="local",
        results=root / "runs",
        data_dir=root / "data",
    )
    result = workflow.run(req, workflow.prepare(req))
    assert not result.outcome.failed, [s.reason for s in result.outcome.failed]
    result.run.write_summary(report.to_json(report.report([result.run.path])))
    return result.run.path


def write_lock(path: Path, ref: str = MATMUL_REF, image_id: str = MATMUL_ID) -> Path:
    """An images lock pinning the matmul image for the CPU vendor."""
    base = images.LockBase(name="python:3.11-slim", digest=fake_digest("base"))
    entry = images.LockEntry(ref=ref, image_id=image_id, base=base)
    images.write_lock(images.Lock(images={"matmul": {Vendor.CPU: entry}}), path)
    return path


def set_exit_images(run: Path, image: dict[str, object] | None) -> None:
    """Record ``image`` in every job's exit event.

    The local backend runs no image, so its exit events say ``image: null``; the docker
    backend records the image that really ran. These tests run on machines without an
    engine, so they write what it would have recorded (tests marked ``docker`` could record
    a real container run instead).
    """
    rundir = RunDir.open(run)
    for job in rundir.job_ids():
        path = rundir.events_path(job)
        events = read_events(path)
        assert events[-1]["event"] == "exit"
        events[-1]["image"] = image
        path.write_text("".join(json.dumps(ev) + "\n" for ev in events))


Edit = Callable[[Path], None]


def repack(bundle: Path, output: Path, edit: Edit, *, rehash: bool = False) -> Path:
    """``bundle`` with ``edit`` applied to its folder; ``rehash`` also rewrites the manifest's
    hashes, as a forger who knows the format would (a signature then no longer matches)."""
    work = output.with_suffix(".work")
    extracted = submission.extract(bundle, work)
    edit(extracted.root)
    if rehash:
        manifest = extracted.manifest.model_copy(
            update={"files": submission.hash_files(extracted.root)}
        )
        (extracted.root / submission.MANIFEST).write_bytes(manifest.dump())
    submission.write_archive(extracted.root, output)
    shutil.rmtree(work)
    return output


def verify(bundle: Path, dest: Path, **options: object) -> submission.Verification:
    extracted = submission.extract(bundle, dest)
    return submission.verify(extracted, **options)  # type: ignore[arg-type]


def status(result: submission.Verification) -> dict[str, str]:
    return {c.name: c.status for c in result.checks}


def reason(result: submission.Verification, name: str) -> str:
    return next(c.reason for c in result.checks if c.name == name)
