"""The library behind ``mbctl run``/``prepare``: suite + target → plan → backend → run folder."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator import config, sysinfo, vendors
from orchestrator.backends.base import Backend, Phase, RunContext, backend_class
from orchestrator.errors import BackendUnavailable, ConfigError, ImageError
from orchestrator.plan import Plan, make_plan, parse_devices
from orchestrator.results import RunDir, new_run_id
from orchestrator.runner import Outcome, Progress, execute
from orchestrator.vendors import Detection, Vendor

#: Downloads and dataset generation get at least this long, whatever a benchmark's own limit.
PREPARE_MIN_DURATION = 3600.0


@dataclass(frozen=True)
class Request:
    """Everything a user can say about a run; the CLI fills it from options, tests directly."""

    suite: str = "smoke"
    profile: str | None = None
    vendor: str | None = None
    backend: str = "auto"
    select: Sequence[str] = ()
    exclude: Sequence[str] = ()
    overrides: Sequence[str] = ()
    devices: str | None = None
    results: Path = Path("runs")
    data_dir: Path | None = None
    resume: Path | None = None
    python: str | None = None
    lock: Path | None = None
    images: Sequence[str] = ()
    namespace: str | None = None
    kubeconfig: str | None = None
    k8s_config: Path | None = None
    keep: bool = False


@dataclass
class Target:
    """The vendor and devices a plan is made for, and how they were found."""

    vendor: Vendor
    detection: Detection
    devices: tuple[vendors.Device, ...]


@dataclass
class Prepared:
    """A resolved request: the suite, the target and the plan (what ``--dry-run`` shows)."""

    suite: config.Suite
    target: Target
    plan: Plan
    backend_name: str
    notes: list[str] = field(default_factory=list)


def default_data_dir() -> Path:
    """The dataset cache: $MBCTL_DATA, else ~/.cache/mbctl/data."""
    env = os.environ.get("MBCTL_DATA")
    return Path(env) if env else Path.home() / ".cache" / "mbctl" / "data"


def load_suite(req: Request) -> config.Suite:
    return config.load_selected(
        req.suite,
        overrides=req.overrides,
        profile=req.profile,
        select=req.select,
        exclude=req.exclude,
    )


def resolve_target(
    vendor: str | None, devices: str | None, detection: Detection | None = None
) -> Target:
    """``--vendor`` (default: detected) and ``--devices`` (default: the detected ones)."""
    detection = detection or vendors.detect()
    chosen = vendors.get(vendor).vendor if vendor else detection.vendor
    if devices is not None:
        found = parse_devices(devices)
    elif chosen is detection.vendor:
        found = detection.devices
    else:
        found = ()
    return Target(chosen, detection, found)


def choose_backend(name: str) -> tuple[str, list[str]]:
    """``auto`` picks docker when an engine answers, else local; says why in the notes."""
    if name != "auto":
        backend_class(name)  # unknown names fail here with the list of valid ones
        return name, []
    try:
        backend_class("docker")().check()
    except (BackendUnavailable, ImportError, ConfigError) as exc:
        return "local", [f"backend: local (docker not usable: {exc})"]
    return "docker", ["backend: docker (engine reachable)"]


def prepare(req: Request, *, phase: Phase = Phase.RUN) -> Prepared:
    """Resolve a request into a plan; for ``prepare``, one job per definition with a prepare.py.

    Container backends also resolve each planned benchmark's image here, so a missing or
    mismatching image stops the run before anything starts. ``--backend auto`` falls back to
    the local backend, with a note, when the engine answers but holds no images.
    """
    suite = load_suite(req)
    target = resolve_target(req.vendor, req.devices)
    backend_name, notes = choose_backend(req.backend)
    plan = make_plan(suite, vendor=target.vendor, devices=target.devices)
    if backend_name != "local":
        planned = {job.bench for job in plan.jobs}
        try:
            refs = job_images(req, suite, target.vendor, backend_name, planned)
        except ImageError as exc:
            if req.backend != "auto":
                raise
            backend_name, notes = "local", [f"backend: local (docker engine reachable, but {exc})"]
        else:
            plan = make_plan(suite, vendor=target.vendor, devices=target.devices, images=refs)
    if backend_name == "docker":
        notes += _leftover_notes(req)
    if phase is Phase.PREPARE:
        plan = preparation_plan(plan, config.benchmarks_root())
    return Prepared(suite, target, plan, backend_name, notes)


def job_images(
    req: Request, suite: config.Suite, vendor: Vendor, backend: str, planned: set[str]
) -> dict[str, str]:
    """Image of each planned benchmark: ``--image`` first, then ``--lock`` (digests checked
    against the engine for docker), then, for docker, the newest local ``mbctl build``."""
    from orchestrator import images

    refs = images.image_refs(suite, vendor, lock=req.lock, explicit=req.images)
    benches = [b for b in suite.benchmarks if b.name in planned]
    if backend == "docker":
        client = images.engine()
        if req.lock is not None:
            given = images.image_refs(suite, vendor, explicit=req.images)
            locked = [b for b in benches if b.name not in given]
            refs |= images.resolve_images(images.read_lock(req.lock), vendor, locked, client=client)
        for bench in benches:
            if bench.name not in refs:
                image = images.local_image(client, bench.definition, vendor)
                refs[bench.name] = image.tags[0] if image.tags else image.id
    missing = sorted(b.name for b in benches if b.name not in refs)
    if missing:
        raise ImageError(
            f"no image for {', '.join(missing)} on the {backend} backend",
            hint="pass --lock images.lock.yaml (mbctl push writes it) or --image BENCH=REF",
        )
    return refs


def _leftover_notes(req: Request) -> list[str]:
    from orchestrator.backends import docker

    stale = docker.leftovers(exclude_run=req.resume.name if req.resume else None)
    if not stale:
        return []
    runs = ", ".join(sorted({c.run for c in stale}))
    return [
        f"warning: {len(stale)} container(s) of earlier runs ({runs}) remain; `mbctl clean` removes them"
    ]


def make_backend(name: str, req: Request) -> Backend:
    """Instantiate and check the backend with the request's backend-specific settings."""
    cls = backend_class(name)
    backend: Backend
    if name == "local":
        backend = cls(python=req.python)
    elif name == "kubernetes":
        from orchestrator.backends.kubernetes import load_settings

        settings = load_settings(req.k8s_config, namespace=req.namespace)
        backend = cls(settings, kubeconfig=req.kubeconfig, keep=req.keep)
    else:
        backend = cls()
    backend.check()
    return backend


@dataclass
class RunResult:
    run: RunDir
    outcome: Outcome


def run(
    req: Request, prepared: Prepared, *, phase: Phase = Phase.RUN, progress: Progress | None = None
) -> RunResult:
    """Execute a prepared plan into a new run folder (or the ``--resume`` one)."""
    backend = make_backend(prepared.backend_name, req)
    data_dir = (req.data_dir or default_data_dir()).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    plan = prepared.plan
    if req.resume is not None:
        rundir = RunDir.open(req.resume)
        done = rundir.completed_job_ids()
    else:
        meta = _meta(req, prepared, phase)
        rundir = RunDir.create(req.results, meta, run_id=new_run_id(prepared.suite.name))
        done = set()
    ctx = RunContext(
        run_id=rundir.path.name,
        run_dir=rundir.path.resolve(),
        data_dir=data_dir,
        benchmarks_root=config.benchmarks_root(),
        phase=phase,
    )
    sampling: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    if prepared.backend_name != "kubernetes":  # cluster nodes are not this host
        from orchestrator import telemetry

        sampling = telemetry.recording(rundir.path, prepared.target.vendor)
    try:
        with sampling:
            outcome = execute(plan, backend, rundir, ctx, skip=done, progress=progress)
    finally:
        cleanup = getattr(backend, "cleanup_run", None)
        if cleanup is not None:
            cleanup(ctx.run_id)
    if outcome.versions:
        software = {**rundir.meta().get("system", {}).get("software", {}), **outcome.versions}
        system = {**rundir.meta().get("system", {}), "software": software}
        rundir.update_meta(system=system)
    if outcome.devices:
        # what each job ran on, from its start event (device truth, issue 12)
        rundir.update_meta(devices={**rundir.meta().get("devices", {}), **outcome.devices})
    return RunResult(rundir, outcome)


def preparation_plan(plan: Plan, benchmarks_root: Path) -> Plan:
    """One prepare job per distinct (definition, argv) with a ``prepare.py``.

    prepare.py gets the benchmark's argv (its sizes decide the dataset) and is idempotent, so
    suite entries that share a folder and sizes share one job, and different sizes get their own.
    """
    seen: set[tuple[str, tuple[str, ...]]] = set()
    jobs = []
    for job in plan.jobs:
        key = (job.definition, job.argv)
        if key not in seen and (benchmarks_root / job.definition / "prepare.py").is_file():
            seen.add(key)
            jobs.append(
                job.model_copy(update={"max_duration": max(job.max_duration, PREPARE_MIN_DURATION)})
            )
    return plan.model_copy(update={"jobs": tuple(jobs)})


def _meta(req: Request, prepared: Prepared, phase: Phase) -> dict[str, Any]:
    suite = prepared.suite
    return {
        "phase": phase.value,
        "backend": prepared.backend_name,
        "vendor": prepared.target.vendor.value,
        "suite": {
            "name": suite.name,
            "file": suite.source,
            "profile": suite.profile,
            "config_hash": suite.config_hash(),
            "benchmarks": suite.scoring_table(),
            "select": list(req.select),
            "exclude": list(req.exclude),
            "overrides": list(req.overrides),
        },
        "plan": prepared.plan.model_dump(mode="json"),
        "lock": _lock_record(req.lock),
        "system": sysinfo.describe(prepared.target.detection),
    }


def _lock_record(lock: Path | None) -> dict[str, str] | None:
    """Which lock a run used, so a submission can show it is the one that ran."""
    if lock is None:
        return None
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    return {"path": str(lock.resolve()), "sha256": digest}
