"""``mbctl submit``, ``mbctl verify`` and ``mbctl rerun``: vendor submission bundles."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.console import err, out
from orchestrator.cli.options import (
    BackendOpt,
    DataOpt,
    DevicesOpt,
    Format,
    FormatOpt,
    ResultsOpt,
)

BundleArg = Annotated[
    Path, typer.Argument(help="A submission bundle (.tar.gz) from `mbctl submit`.")
]
ReferenceOpt = Annotated[
    Path | None,
    typer.Option("--reference", help="Reference file: expected figures with tolerances."),
]


def submit(
    run: Annotated[Path, typer.Argument(help="The run folder to submit.")],
    lock: Annotated[Path, typer.Option("--lock", help="The images lock the run used.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The bundle to write (.tar.gz).")],
    suite: Annotated[
        Path | None,
        typer.Option(
            "--suite", help="The suite file the run used (default: the one in meta.json)."
        ),
    ] = None,
    sign: Annotated[
        Path | None,
        typer.Option(
            "--sign", help="SSH private key to sign the manifest with (ssh-keygen -Y sign)."
        ),
    ] = None,
) -> None:
    """Pack a run, its suite, lock and images into one reproducible (optionally signed) bundle."""
    from orchestrator import submission

    done = submission.create(run, output, lock=lock, suite=suite, key=sign)
    signed = ", signed" if done.signed else ""
    err.print(f"wrote {done.path} ({len(done.manifest.files)} files{signed})")
    out.print(f"sha256:{done.sha256}  {done.path}", markup=False, highlight=False)


def verify(
    bundle: BundleArg,
    lock: Annotated[
        Path | None,
        typer.Option(
            "--lock", help="Images lock the jobs must have run (default: the bundled one)."
        ),
    ] = None,
    reference: ReferenceOpt = None,
    min_measures: Annotated[
        int | None,
        typer.Option(
            "--min-measures",
            min=1,
            help="Training rates each job needs (default: the suite's min_measures, else 30).",
        ),
    ] = None,
    allowed_signers: Annotated[
        Path | None,
        typer.Option(
            "--allowed-signers", help="ssh-keygen allowed_signers file: require a signature."
        ),
    ] = None,
    identity: Annotated[
        str | None,
        typer.Option("--identity", help="The signer to require (with --allowed-signers)."),
    ] = None,
    fmt: FormatOpt = Format.TABLE,
) -> None:
    """Check a bundle: checksums, signature, images, completeness, system, measurements, score."""
    from orchestrator import images, references, report, submission

    required_lock = images.read_lock(lock) if lock is not None else None
    expected = references.load(reference) if reference is not None else None
    with tempfile.TemporaryDirectory(prefix="mbctl-verify-") as tmp:
        extracted = submission.extract(bundle, Path(tmp) / "bundle")
        result = submission.verify(
            extracted,
            lock=required_lock,
            reference=expected,
            min_measures=min_measures,
            allowed_signers=allowed_signers,
            identity=identity,
        )
    if fmt is Format.JSON:
        out.print_json(json.dumps(submission.verification_to_json(result)))
    else:
        out.print(submission.checks_table(result))
        out.print(report.report_table(result.report))
        if expected is not None:
            out.print(references.table(result.judgements, expected))
    if not result.passed:
        names = ", ".join(c.name for c in result.failed)
        raise submission.VerificationFailed(
            f"{len(result.failed)} of {len(result.checks)} checks failed: {names}"
        )


def rerun(
    bundle: BundleArg,
    backend: BackendOpt = "auto",
    tolerance: Annotated[
        float | None,
        typer.Option(
            "--tolerance", min=0.0, help="Largest |re-run / submitted − 1| per benchmark (0.10)."
        ),
    ] = None,
    workdir: Annotated[
        Path | None,
        typer.Option(
            "--workdir", help="Where to extract the bundle (default: beside it, minus .tar.gz)."
        ),
    ] = None,
    devices: DevicesOpt = None,
    results: ResultsOpt = Path("runs"),
    data: DataOpt = None,
    allowed_signers: Annotated[
        Path | None,
        typer.Option(
            "--allowed-signers",
            help="ssh-keygen allowed_signers file: the bundle must be signed by --identity.",
        ),
    ] = None,
    identity: Annotated[
        str | None,
        typer.Option("--identity", help="The signer to require (with --allowed-signers)."),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option("--insecure", help="Re-run an unsigned bundle (one you made yourself)."),
    ] = False,
    fmt: FormatOpt = Format.TABLE,
) -> None:
    """Run a signed bundle again on its locked images and settings; compare with its claims."""
    from rich.live import Live

    from orchestrator import submission
    from orchestrator.cli.running import LiveView
    from orchestrator.runner import Interrupted

    target = workdir or submission.default_workdir(bundle)
    extracted = submission.extract(bundle, target)
    err.print(f"extracted {bundle} into {target}")
    view = LiveView()
    with Live(view, console=err, refresh_per_second=4, transient=False):
        result = submission.rerun(
            extracted,
            results=results,
            backend=backend,
            tolerance=submission.DEFAULT_TOLERANCE if tolerance is None else tolerance,
            devices=devices,
            data_dir=data,
            allowed_signers=allowed_signers,
            identity=identity,
            insecure=insecure,
            progress=view,
        )
    for note in result.notes:
        err.print(f"[yellow]note:[/] {note}")
    if result.outcome.interrupted:
        raise Interrupted(f"interrupted; the re-run so far is in {result.run.path}")
    if fmt is Format.JSON:
        out.print_json(json.dumps(submission.rerun_to_json(result)))
    else:
        out.print(submission.rerun_table(result))
    err.print(f"results: {result.run.path}")
    if not result.passed:
        off = ", ".join(row.name for row in result.rows if not row.within)
        raise submission.VerificationFailed(
            f"the re-run does not reproduce the submission within ±{result.tolerance:.0%}: {off}"
        )


def register(app: typer.Typer) -> None:
    app.command("submit")(submit)
    app.command("verify")(verify)
    app.command("rerun")(rerun)
