"""``mbctl run`` and ``mbctl prepare``: plan, launch with a live view, report."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestrator.cli.console import err, out
from orchestrator.cli.options import (
    BackendOpt,
    DataOpt,
    DevicesOpt,
    DryRunOpt,
    ExcludeOpt,
    Format,
    FormatOpt,
    ImageOpt,
    K8sConfigOpt,
    KeepOpt,
    KubeconfigOpt,
    LockOpt,
    NamespaceOpt,
    NodesOpt,
    ProfileOpt,
    PythonOpt,
    ResultsOpt,
    SelectOpt,
    SetOpt,
    SlurmConfigOpt,
    SuiteOpt,
    VendorOpt,
)

if TYPE_CHECKING:
    from rich.console import RenderableType

    from orchestrator.plan import Plan
    from orchestrator.runner import JobState
    from orchestrator.workflow import Prepared, Request


class LiveView:
    """The runner's progress sink: a header (run, suite, profile, backend, done/total, ETA) and a
    table of running, finished and pending jobs, redrawn as events arrive."""

    def __init__(self, run_id: str = "", prepared: Prepared | None = None) -> None:
        self.states: dict[str, JobState] = {}
        self.rates: dict[str, list[float]] = {}
        self.lock = threading.Lock()
        self.run_id = run_id
        self.prepared = prepared

    def update(self, state: JobState) -> None:
        with self.lock:
            first = state.job.id not in self.states
            self.states[state.job.id] = state
            seen = self.rates.setdefault(state.job.id, [])
            if state.rate is not None and state.measures > len(seen):
                seen.append(float(state.rate))
        if state.finished is not None and not first:
            from rich.markup import escape

            colour = "green" if state.status == "ok" else "red"
            why = f" ({escape(state.reason)})" if state.reason else ""
            rate = self.scored_rate(state.job.id)
            shown = f", {rate:,.2f} {escape(state.units or '')}" if rate is not None else ""
            err.print(
                f"[{colour}]{state.status:>9}[/] {escape(state.job.id)} after "
                f"{state.elapsed:.1f}s{shown}{why}",
                markup=True,
            )

    def scored_rate(self, job_id: str) -> float | None:
        """The job's rate as the report scores it (Milabench's trimmed mean), not the last one."""
        from orchestrator.report import metrics

        with self.lock:
            rates = list(self.rates.get(job_id, ()))
        mean = metrics(rates).mean
        return None if mean != mean else mean

    def eta(self, states: list[JobState]) -> float:
        """Seconds left at most, from the limits: benchmarks run one after another, the jobs
        of one benchmark together."""
        groups: dict[str, float] = {}
        for s in states:
            if s.finished is not None:
                continue
            left = max(0.0, s.job.max_duration - s.elapsed)
            groups[s.job.bench] = max(groups.get(s.job.bench, 0.0), left)
        return sum(groups.values())

    def header(self, states: list[JobState]) -> str:
        done = sum(s.finished is not None for s in states)
        parts = [f"run {self.run_id}" if self.run_id else "run"]
        if self.prepared is not None:
            plan = self.prepared.plan
            parts += [
                f"suite {plan.suite}",
                f"profile {self.prepared.suite.profile or 'default'}",
                f"vendor {plan.vendor}",
                f"backend {self.prepared.backend_name}",
            ]
        eta = self.eta(states)
        parts += [f"{done}/{len(states)} jobs done", f"ETA ≤ {_duration(eta)} (from limits)"]
        return " · ".join(parts)

    def __rich__(self) -> RenderableType:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, pad_edge=False)
        for col in ("job", "status", "measures", "rate", "elapsed / limit"):
            table.add_column(
                col, justify="left" if col in ("job", "status") else "right", no_wrap=True
            )
        with self.lock:
            states = list(self.states.values())
        pending = [s.job.id for s in states if s.status == "pending"]
        for s in states:
            if s.status == "pending":
                continue
            measures = f"{s.measures}/{s.target}" if s.target else str(s.measures)
            value = self.scored_rate(s.job.id) if s.finished is not None else s.rate
            rate = f"{value:,.2f} {s.units or ''}" if value is not None else "-"
            table.add_row(
                s.job.id, s.status, measures, rate, f"{s.elapsed:5.1f}s / {s.job.max_duration:g}s"
            )
        parts: list[RenderableType] = [Text(self.header(states), style="bold"), table]
        if pending:
            parts.append(Text(f"pending ({len(pending)}): " + ", ".join(pending), style="dim"))
        return Group(*parts)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _request(
    *,
    suite: str,
    profile: str | None,
    vendor: str | None,
    backend: str,
    select: list[str] | None,
    exclude: list[str] | None,
    overrides: list[str] | None,
    devices: str | None,
    results: Path,
    data: Path | None,
    python: str | None,
    lock: Path | None,
    image: list[str] | None,
    namespace: str | None,
    kubeconfig: str | None,
    k8s_config: Path | None,
    keep: bool,
    dry_run: bool,
    resume: Path | None = None,
    nodes: int | None = None,
    slurm_config: Path | None = None,
) -> Request:
    """The library request from a command's named options (never its ``locals()``)."""
    from orchestrator.workflow import Request

    return Request(
        suite=suite,
        profile=profile,
        vendor=vendor,
        backend=backend,
        select=tuple(select or ()),
        exclude=tuple(exclude or ()),
        overrides=tuple(overrides or ()),
        devices=devices,
        results=results,
        data_dir=data,
        resume=resume,
        python=python,
        lock=lock,
        images=tuple(image or ()),
        namespace=namespace,
        kubeconfig=kubeconfig,
        k8s_config=k8s_config,
        keep=keep,
        dry_run=dry_run,
        nodes=nodes,
        slurm_config=slurm_config,
    )


def print_plan(prepared: Prepared, fmt: Format) -> None:
    plan: Plan = prepared.plan
    for note in prepared.notes:
        err.print(note, markup=False)
    if fmt is Format.JSON:
        payload = {"backend": prepared.backend_name, **plan.model_dump(mode="json")}
        out.print_json(json.dumps(payload))
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(
        title=f"plan: suite {plan.suite} · vendor {plan.vendor} · backend {prepared.backend_name} · "
        f"{len(plan.jobs)} jobs",
        title_justify="left",
    )
    for col in ("job", "devices", "plan", "max", "command", "env"):
        table.add_column(col, overflow="fold")
    for j in plan.jobs:
        env = " ".join(f"{k}={v}" for k, v in j.env.items())
        table.add_row(
            j.id,
            ",".join(j.devices) or "-",
            j.plan.value + (f"×{j.nodes}" if j.nodes > 1 else ""),
            f"{j.max_duration:g}s",
            " ".join([f"{j.definition}/main.py", *j.argv]),
            env or "-",
        )
    out.print(table)
    for s in plan.skipped:
        out.print(f"[yellow]skipped[/] {escape(s.bench)}: {escape(s.reason)}")


def _execute(req: Request, *, dry_run: bool, fmt: Format, phase_name: str) -> None:
    from orchestrator import workflow
    from orchestrator.backends.base import Phase
    from orchestrator.errors import BenchmarkFailed, OrchestratorError
    from orchestrator.runner import Interrupted

    phase = Phase(phase_name)
    prepared = workflow.prepare(req, phase=phase)
    if phase is Phase.PREPARE and not prepared.plan.jobs and not dry_run:
        err.print("nothing to prepare: no selected benchmark has a prepare.py")
        return
    if dry_run:
        print_plan(prepared, fmt)
        return
    for note in prepared.notes:
        err.print(note)
    if not prepared.plan.jobs:
        raise OrchestratorError(
            f"nothing to {phase_name}: every benchmark was skipped",
            hint="; ".join(f"{s.bench}: {s.reason}" for s in prepared.plan.skipped)
            or "empty selection",
        )
    from rich.live import Live

    from orchestrator.results import new_run_id

    run_id = req.resume.name if req.resume is not None else new_run_id(prepared.suite.name)
    view = LiveView(run_id, prepared)
    with Live(view, console=err, refresh_per_second=4, transient=False):
        result = workflow.run(req, prepared, phase=phase, progress=view, run_id=run_id)
    err.line()
    path = result.run.path
    if phase is Phase.RUN:
        from orchestrator.cli.reporting import show_report

        show_report([path], fmt=fmt, write_summary=True)
    err.print(f"results: {path}", markup=False)
    if result.outcome.interrupted:
        raise Interrupted(
            f"interrupted; results measured so far are kept in {path}",
            hint=f"resume with: mbctl run --resume {path}",
        )
    if result.outcome.failed:
        names = ", ".join(f"{s.job.id} ({s.reason or s.status})" for s in result.outcome.failed)
        raise BenchmarkFailed(
            f"{len(result.outcome.failed)} job(s) failed: {names}", hint=f"logs in {path}"
        )


def run(
    suite: SuiteOpt = "smoke",
    profile: ProfileOpt = None,
    vendor: VendorOpt = None,
    backend: BackendOpt = "auto",
    select: SelectOpt = None,
    exclude: ExcludeOpt = None,
    overrides: SetOpt = None,
    devices: DevicesOpt = None,
    nodes: NodesOpt = None,
    results: ResultsOpt = Path("runs"),
    data: DataOpt = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume",
            metavar="RUN",
            help="Continue RUN: run only its jobs with no completed result.",
        ),
    ] = None,
    python: PythonOpt = None,
    lock: LockOpt = None,
    image: ImageOpt = None,
    namespace: NamespaceOpt = None,
    kubeconfig: KubeconfigOpt = None,
    k8s_config: K8sConfigOpt = None,
    keep: KeepOpt = False,
    slurm_config: SlurmConfigOpt = None,
    dry_run: DryRunOpt = False,
    fmt: FormatOpt = Format.TABLE,
) -> None:
    """Run a suite and print its scored report."""
    if resume is not None:
        meta = _run_meta(resume)
        suite, profile, select, exclude, overrides = _resumed(meta, suite)
        nodes = nodes or _resumed_nodes(meta)
    req = _request(
        suite=suite,
        profile=profile,
        vendor=vendor,
        backend=backend,
        select=select,
        exclude=exclude,
        overrides=overrides,
        devices=devices,
        results=results,
        data=data,
        python=python,
        lock=lock,
        image=image,
        namespace=namespace,
        kubeconfig=kubeconfig,
        k8s_config=k8s_config,
        keep=keep,
        dry_run=dry_run,
        resume=resume,
        nodes=nodes,
        slurm_config=slurm_config,
    )
    _execute(req, dry_run=dry_run, fmt=fmt, phase_name="run")


def _resumed(
    meta: dict[str, Any], default: str
) -> tuple[str, str | None, list[str], list[str], list[str]]:
    """The suite settings a run was started with, so ``--resume`` plans the same jobs."""
    suite = meta.get("suite")
    if not isinstance(suite, dict):
        return default, None, [], [], []
    return (
        str(suite.get("file") or default),
        suite.get("profile"),
        list(suite.get("select", [])),
        list(suite.get("exclude", [])),
        list(suite.get("overrides", [])),
    )


def _run_meta(path: Path) -> dict[str, Any]:
    from orchestrator.results import RunDir

    return RunDir.open(path).meta()


def _resumed_nodes(meta: dict[str, Any]) -> int | None:
    """The nodes a run was planned for, so ``--resume`` plans its multi-node jobs again."""
    plan = meta.get("plan")
    nodes = plan.get("nodes") if isinstance(plan, dict) else None
    return nodes if isinstance(nodes, int) and nodes > 1 else None


def prepare(
    suite: SuiteOpt = "smoke",
    profile: ProfileOpt = None,
    vendor: VendorOpt = None,
    backend: BackendOpt = "auto",
    select: SelectOpt = None,
    exclude: ExcludeOpt = None,
    overrides: SetOpt = None,
    devices: DevicesOpt = None,
    nodes: NodesOpt = None,
    results: ResultsOpt = Path("runs"),
    data: DataOpt = None,
    python: PythonOpt = None,
    lock: LockOpt = None,
    image: ImageOpt = None,
    namespace: NamespaceOpt = None,
    kubeconfig: KubeconfigOpt = None,
    k8s_config: K8sConfigOpt = None,
    keep: KeepOpt = False,
    slurm_config: SlurmConfigOpt = None,
    dry_run: DryRunOpt = False,
    fmt: FormatOpt = Format.TABLE,
) -> None:
    """Generate or download the datasets of a suite into the cache (each benchmark's prepare.py)."""
    req = _request(
        suite=suite,
        profile=profile,
        vendor=vendor,
        backend=backend,
        select=select,
        exclude=exclude,
        overrides=overrides,
        devices=devices,
        results=results,
        data=data,
        python=python,
        lock=lock,
        image=image,
        namespace=namespace,
        kubeconfig=kubeconfig,
        k8s_config=k8s_config,
        keep=keep,
        dry_run=dry_run,
        nodes=nodes,
        slurm_config=slurm_config,
    )
    _execute(req, dry_run=dry_run, fmt=fmt, phase_name="prepare")


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("prepare")(prepare)
