"""Helpers of the submission tests: the mini suite, a fake lock, exit images, repacking bundles."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from orchestrator import images, report, submission, workflow
from orchestrator.backends.base import Exit, Handle, RunContext
from orchestrator.backends.docker import image_record
from orchestrator.backends.local import LocalBackend
from orchestrator.plan import Job
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


#: A stand-in for benchmarks/matmul with a fixed rate (size / 100 TFLOPS): a submission and its
#: re-run then agree exactly, so the rerun tests compare no two real timings.
FIXED_RATE_MATMUL = """
import argparse, json, sys, time
parser = argparse.ArgumentParser()
parser.add_argument("--dtype")
parser.add_argument("--size", type=int)
parser.add_argument("--every", type=int)
parser.add_argument("--measures", type=int)
args = parser.parse_args()
def emit(event, **fields):
    print(json.dumps({"mbctl": 1, "event": event, "t": time.time(), **fields}), flush=True)
emit("start", bench="matmul", argv=sys.argv[1:], versions={"scripted": "1"})
for _ in range(args.measures):
    emit("rate", value=args.size / 100, units="TFLOPS", task="train")
emit("end", status="done")
"""


def fixed_rate_root(root: Path) -> Path:
    """A benchmarks root whose only benchmark is the fixed-rate matmul; set MBCTL_BENCHMARKS to it."""
    (root / "matmul").mkdir(parents=True)
    (root / "matmul" / "main.py").write_text(FIXED_RATE_MATMUL)
    (root / "benchkit").mkdir()
    (root / "suites").mkdir()
    return root


class RecordingBackend(LocalBackend):
    """The local backend posing as a container backend: it reports running ``job.image``, the
    way the docker backend records the locked image it started (tests marked ``docker`` run
    the real one)."""

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
