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
from orchestrator.results import RunDir, data_folder, new_run_id, read_events
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
    # nodes a multi-node ({nodes: N}) benchmark may span; None: what the backend can place
    nodes: int | None = None
    slurm_config: Path | None = None
    dry_run: bool = False


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


#: The profile a CPU run gets when ``--profile`` is not given: full sizes take hours on a CPU.
CPU_PROFILE = "tiny"


def load_suite(req: Request, vendor: Vendor | None = None) -> config.Suite:
    """The suite of ``req``; on the CPU with no ``--profile``, its ``tiny`` profile when the
    suite defines one."""
    profile = req.profile
    if profile is None and vendor is Vendor.CPU:
        try:
            return config.load_selected(
                req.suite,
                overrides=req.overrides,
                profile=CPU_PROFILE,
                select=req.select,
                exclude=req.exclude,
            )
        except ConfigError:
            pass  # no tiny profile (or another problem, which the plain load reports)
    return config.load_selected(
        req.suite,
        overrides=req.overrides,
        profile=profile,
        select=req.select,
        exclude=req.exclude,
    )


def check_devices(
    planned: Sequence[vendors.Device], vendor: Vendor, detection: Detection, *, dry_run: bool
) -> list[str]:
    """``--devices`` against what this host has: an error when it asks for devices the
    detected vendor lacks; for another vendor, a warning on ``--dry-run`` and an error else."""
    text = ",".join(d.index for d in planned)
    if vendor is detection.vendor and vendor is not Vendor.CPU:
        have = {d.index for d in detection.devices}
        absent = [d.index for d in planned if d.index not in have]
        if absent:
            raise ConfigError(
                f"--devices {text}: no {vendor.value} device {', '.join(absent)} here",
                hint=f"detected: {', '.join(sorted(have, key=int)) or 'none'} (mbctl vendors)",
            )
        return []
    if vendor is Vendor.CPU:
        raise ConfigError(
            f"--devices {text}: the cpu vendor has no devices to choose",
            hint="leave --devices out on the CPU",
        )
    message = f"--devices {text}: no {vendor.value} device is detected on this host"
    if dry_run:
        return [f"warning: {message}; planned only"]
    raise ConfigError(message, hint="mbctl vendors shows what is detected; --dry-run to plan")


def resolve_target(
    vendor: str | None,
    devices: str | None,
    detection: Detection | None = None,
    *,
    dry_run: bool = False,
    check: bool = True,
) -> tuple[Target, list[str]]:
    """``--vendor`` (default: detected) and ``--devices`` (default: the detected ones),
    checked against the host unless ``check`` is off (a cluster's devices are not here)."""
    detection = detection or vendors.detect()
    chosen = vendors.get(vendor).vendor if vendor else detection.vendor
    notes: list[str] = []
    if devices is not None:
        found = parse_devices(devices)
        if check:
            notes = check_devices(found, chosen, detection, dry_run=dry_run)
    elif chosen is detection.vendor:
        found = detection.devices
    else:
        found = ()
    return Target(chosen, detection, found), notes


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
    remote = req.backend in ("kubernetes", "slurm")  # devices live on the cluster
    target, device_notes = resolve_target(
        req.vendor, req.devices, dry_run=req.dry_run, check=not remote
    )
    suite = load_suite(req, target.vendor)
    backend_name, notes = choose_backend(req.backend)
    # without --nodes the backend's own count is known only once it runs (see fit_nodes)
    nodes = req.nodes or 1
    cpus = _host_cpus(backend_name)
    plan = make_plan(suite, vendor=target.vendor, devices=target.devices, nodes=nodes, cpus=cpus)
    if backend_name != "local" and _needs_images(backend_name, req):
        planned = {job.bench for job in plan.jobs}
        try:
            refs = job_images(req, suite, target.vendor, backend_name, planned)
        except ImageError as exc:
            if req.backend != "auto":
                raise
            backend_name, notes = "local", [f"backend: local (docker engine reachable, but {exc})"]
        else:
            plan = make_plan(
                suite,
                vendor=target.vendor,
                devices=target.devices,
                nodes=nodes,
                images=refs,
                cpus=cpus,
            )
    if backend_name == "docker":
        notes += _leftover_notes(req)
    if phase is Phase.PREPARE:
        plan = preparation_plan(plan, config.benchmarks_root())
    notes += device_notes
    if req.profile is None and suite.profile == CPU_PROFILE:
        notes.append(f"profile: {CPU_PROFILE} (the CPU default; --profile full for full sizes)")
    return Prepared(suite, target, plan, backend_name, notes)


def _needs_images(backend_name: str, req: Request) -> bool:
    """Whether jobs run in images: not on Slurm sites whose runtime is a plain virtualenv."""
    if backend_name == "slurm":
        from orchestrator.backends.slurm import Runtime, load_settings

        return load_settings(req.slurm_config).runtime is not Runtime.NONE
    return True


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


def make_backend(name: str, req: Request, *, vendor: str | None = None) -> Backend:
    """Instantiate and check the backend with the request's backend-specific settings."""
    cls = backend_class(name)
    backend: Backend
    if name == "local":
        backend = cls(python=req.python, nodes=req.nodes or 1)
    elif name == "kubernetes":
        from orchestrator.backends.kubernetes import load_settings

        settings = load_settings(req.k8s_config, namespace=req.namespace)
        backend = cls(settings, kubeconfig=req.kubeconfig, keep=req.keep, vendor=vendor)
    elif name == "slurm":
        from orchestrator.backends.slurm import load_settings as load_slurm_settings

        backend = cls(
            load_slurm_settings(req.slurm_config), python=req.python, data_dir=req.data_dir
        )
    elif name == "docker":
        backend = cls(nodes=req.nodes or 1)
    else:
        backend = cls()
    backend.check()
    return backend


@dataclass
class RunResult:
    run: RunDir
    outcome: Outcome


def run(
    req: Request,
    prepared: Prepared,
    *,
    phase: Phase = Phase.RUN,
    progress: Progress | None = None,
    run_id: str | None = None,
) -> RunResult:
    """Execute a prepared plan into a new run folder (or the ``--resume`` one); ``run_id``
    names the new folder (default: a fresh ``new_run_id``), so a live view can show it."""
    backend = make_backend(prepared.backend_name, req, vendor=prepared.target.vendor.value)
    prepared = fit_nodes(req, prepared, backend, phase)
    data_dir = data_folder(req.data_dir or default_data_dir())
    plan = prepared.plan
    if req.resume is not None:
        rundir = RunDir.open(req.resume)
        done = rundir.completed_job_ids()
    else:
        meta = _meta(req, prepared, phase)
        rundir = RunDir.create(req.results, meta, run_id=run_id or new_run_id(prepared.suite.name))
        point_latest(rundir)
        done = set()
    ctx = RunContext(
        run_id=rundir.path.name,
        run_dir=rundir.path.resolve(),
        data_dir=data_dir,
        benchmarks_root=config.benchmarks_root(),
        phase=phase,
    )
    sampling: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    if prepared.backend_name not in ("kubernetes", "slurm"):  # cluster nodes are not this host
        from orchestrator import telemetry

        sampling = telemetry.recording(rundir.path, prepared.target.vendor)
    try:
        with sampling:
            outcome = execute(plan, backend, rundir, ctx, skip=done, progress=progress)
    finally:
        cleanup = getattr(backend, "cleanup_run", None)
        if cleanup is not None:
            cleanup(ctx.run_id)
    ran_on = nodes_that_ran(rundir)
    if ran_on:
        rundir.update_meta(nodes={**rundir.meta().get("nodes", {}), **ran_on})
    if outcome.versions:
        software = {**rundir.meta().get("system", {}).get("software", {}), **outcome.versions}
        system = {**rundir.meta().get("system", {}), "software": software}
        rundir.update_meta(system=system)
    if outcome.devices:
        # what each job ran on, from its start event (device truth, issue 12)
        rundir.update_meta(devices={**rundir.meta().get("devices", {}), **outcome.devices})
    _record_nodes(backend, rundir, prepared.target.vendor.value)
    return RunResult(rundir, outcome)


def _record_nodes(backend: Backend, rundir: RunDir, vendor: str) -> None:
    """On a cluster, meta.json describes the nodes that ran (``nodes``, and ``system`` from the
    first of them); what the controller is, is kept under ``controller``."""
    described = getattr(backend, "nodes_that_ran", None)
    nodes = described() if described is not None else {}
    if not nodes:
        return
    from orchestrator.backends.kubernetes.nodes import system_from_nodes

    meta = rundir.meta()
    nodes = {**meta.get("nodes", {}), **nodes}  # a resumed run adds to what ran before
    controller = meta.get("controller") or meta.get("system", {})
    software = meta.get("system", {}).get("software", {})
    rundir.update_meta(
        nodes=nodes, controller=controller, system=system_from_nodes(nodes, vendor, software)
    )


def nodes_that_ran(rundir: RunDir) -> dict[str, dict[str, Any]]:
    """Every node named by the jobs' exit events (backends that know them: slurm), with the jobs
    it ran: ``{name: {"name", "gpu_product", "jobs": [...]}}``, the shape of meta.json's
    ``nodes`` on every cluster backend."""
    found: dict[str, dict[str, Any]] = {}
    for job_id in rundir.job_ids():
        events = read_events(rundir.events_path(job_id))
        last = events[-1] if events else {}
        for node in last.get("nodes") or []:
            entry = found.setdefault(
                str(node.get("name")), {"name": node.get("name"), "gpu_product": None, "jobs": []}
            )
            entry["gpu_product"] = entry["gpu_product"] or node.get("gpu_product")
            entry["jobs"].append(job_id)
    return {name: found[name] for name in sorted(found)}


def _host_cpus(backend_name: str) -> int | None:
    """Jobs of the local and docker backends share this host's CPUs (OMP_NUM_THREADS per job)."""
    return os.cpu_count() if backend_name in ("local", "docker") else None


def fit_nodes(req: Request, prepared: Prepared, backend: Backend, phase: Phase) -> Prepared:
    """Re-plan for the nodes ``backend`` can place: all of them without ``--nodes``, at most
    that many with it. ``{nodes: N}`` benchmarks beyond it are skipped with the reason.

    A cluster backend that cannot count its nodes (no right to list them) trusts ``--nodes``.
    """
    try:
        capacity = backend.max_nodes()
    except BackendUnavailable as exc:
        if req.nodes is None:
            raise
        capacity = req.nodes
        prepared.notes.append(f"nodes: trusting --nodes {req.nodes} ({exc.message})")
    nodes = capacity if req.nodes is None else min(req.nodes, capacity)
    if nodes == prepared.plan.nodes:
        return prepared
    suite, target = prepared.suite, prepared.target
    cpus = _host_cpus(prepared.backend_name)
    refs = {job.bench: job.image for job in prepared.plan.jobs if job.image}
    plan = make_plan(
        suite, vendor=target.vendor, devices=target.devices, nodes=nodes, images=refs, cpus=cpus
    )
    unresolved = {job.bench for job in plan.jobs if job.image is None}
    if (
        unresolved
        and prepared.backend_name != "local"
        and _needs_images(prepared.backend_name, req)
    ):
        refs |= job_images(req, suite, target.vendor, prepared.backend_name, unresolved)
        plan = make_plan(
            suite,
            vendor=target.vendor,
            devices=target.devices,
            nodes=nodes,
            images=refs,
            cpus=cpus,
        )
    if phase is Phase.PREPARE:
        plan = preparation_plan(plan, config.benchmarks_root())
    note = f"nodes: {nodes} (the {prepared.backend_name} backend places {capacity})"
    return Prepared(suite, target, plan, prepared.backend_name, [*prepared.notes, note])


#: ``<results>/latest``: a link to the newest run folder (``mbctl report runs/latest``).
LATEST = "latest"


def point_latest(rundir: RunDir) -> None:
    """Point ``<results>/latest`` at ``rundir``, atomically (a relative link, so the results
    folder can move)."""
    link = rundir.path.parent / LATEST
    tmp = link.with_name(f".{LATEST}.{os.getpid()}")
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(rundir.path.name, target_is_directory=True)
        os.replace(tmp, link)
    except OSError:
        tmp.unlink(missing_ok=True)  # no symlinks on this filesystem: `latest` still resolves


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
