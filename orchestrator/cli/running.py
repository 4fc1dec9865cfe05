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
    """The runner's progress sink: a rich table of jobs, redrawn as events arrive."""

    def __init__(self) -> None:
        self.states: dict[str, JobState] = {}
        self.lock = threading.Lock()

    def update(self, state: JobState) -> None:
        with self.lock:
            first = state.job.id not in self.states
            self.states[state.job.id] = state
        if state.finished is not None and not first:
            colour = "green" if state.status == "ok" else "red"
            why = f" ({state.reason})" if state.reason else ""
            err.print(
                f"[{colour}]{state.status:>9}[/] {state.job.id} after {state.elapsed:.1f}s{why}",
                markup=True,
            )

    def __rich__(self) -> RenderableType:
        from rich.table import Table

        table = Table(box=None, pad_edge=False)
        for col in ("job", "status", "measures", "rate", "elapsed / limit"):
            table.add_column(col, justify="left" if col in ("job", "status") else "right")
        with self.lock:
            states = list(self.states.values())
        for s in states:
            if s.status == "pending":
                continue
            measures = f"{s.measures}/{s.target}" if s.target else str(s.measures)
            rate = f"{s.rate:,.2f} {s.units or ''}" if s.rate is not None else "-"
            table.add_row(
                s.job.id, s.status, measures, rate, f"{s.elapsed:5.1f}s / {s.job.max_duration:g}s"
            )
        return table


#: ``run``/``prepare`` parameters whose Request field has another name, and those it has none for
_RENAMED = {"data": "data_dir", "image": "images"}
_DISPLAY_ONLY = frozenset({"dry_run", "fmt"})


def _request(options: dict[str, Any]) -> Request:
    """The library request from a command's parameters (its ``locals()``)."""
    from orchestrator.workflow import Request

    fields: dict[str, Any] = {
        _RENAMED.get(name, name): tuple(value) if isinstance(value, list) else value
        for name, value in options.items()
        if name not in _DISPLAY_ONLY and value is not None
    }
    return Request(**fields)


def print_plan(prepared: Prepared, fmt: Format) -> None:
    plan: Plan = prepared.plan
    if fmt is Format.JSON:
        payload = {"backend": prepared.backend_name, **plan.model_dump(mode="json")}
        out.print_json(json.dumps(payload))
        return
    from rich.table import Table

    for note in prepared.notes:
        err.print(note)
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
        out.print(f"[yellow]skipped[/] {s.bench}: {s.reason}")


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

    view = LiveView()
    with Live(view, console=err, refresh_per_second=4, transient=False):
        result = workflow.run(req, prepared, phase=phase, progress=view)
    err.line()
    path = result.run.path
    if phase is Phase.RUN:
        from orchestrator.cli.reporting import show_report

        show_report([path], fmt=fmt, write_summary=True)
    err.print(f"results: {path}")
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
        typer.Option("--resume", help="Continue RUN: run only its jobs with no completed result."),
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
        # no local import here: every local of this function becomes a Request field
        suite, profile, select, exclude, overrides = _resumed(_run_meta(resume), suite)
        nodes = nodes or _resumed_nodes(_run_meta(resume))
    req = _request(locals())
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
    req = _request(locals())
    _execute(req, dry_run=dry_run, fmt=fmt, phase_name="prepare")


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("prepare")(prepare)
