"""``mbctl verify``: every check of an extracted bundle, and their table and JSON."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from orchestrator import config, report, sysinfo
from orchestrator.errors import ConfigError, OrchestratorError, UsageError
from orchestrator.results import META_FILE, SUMMARY_FILE, RunDir
from orchestrator.submission.bundle import (
    IMAGES,
    LOCK,
    MANIFEST,
    NAMESPACE,
    RUN,
    SIGNATURE,
    Manifest,
    _job_records,
    _last_line,
    _ssh_keygen,
    _suite_meta,
    file_entry,
    load_run_suite,
)
from orchestrator.submission.extraction import Bundle

if TYPE_CHECKING:
    from rich.table import Table

    from orchestrator.images import Lock
    from orchestrator.references import Judgement, Reference


#: Training rates each job needs when neither the suite nor the command says: the Milabench
#: report (§3.1) has every benchmark gather 30 to 60 measurements.
DEFAULT_MIN_MEASURES: Final = 30
#: A recomputed score is "equal" to the submitted one up to float rounding, nothing more.
SCORE_RTOL: Final = 1e-9
#: Seconds ssh-keygen may take to check a signature.
_VERIFY_TIMEOUT: Final = 60

Status = Literal["PASS", "FAIL", "SKIP"]


@dataclass(frozen=True)
class Check:
    """One row of ``mbctl verify``: SKIP = not applicable or not fully checkable, never a failure."""

    name: str
    status: Status
    reason: str


@dataclass
class Verification:
    """Every check of a bundle, and its report scored over the whole suite (missing = 0)."""

    bundle: str
    manifest: Manifest
    checks: list[Check]
    report: report.Report
    min_measures: int
    reference: Reference | None = None
    judgements: list[Judgement] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.status != "FAIL" for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == "FAIL"]


def _listing(items: list[str], limit: int = 6) -> str:
    shown = "; ".join(items[:limit])
    return shown + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def _check_manifest(bundle: Bundle) -> Check:
    listed = set(bundle.manifest.files)
    present = set(bundle.files) - {MANIFEST, SIGNATURE}
    problems = [f"{name}: not in the manifest" for name in sorted(present - listed)]
    problems += [
        f"{name}: in the manifest but not in the bundle" for name in sorted(listed - present)
    ]
    for name in sorted(listed & present):
        if file_entry(bundle.root / name) != bundle.manifest.files[name]:
            problems.append(f"{name}: SHA-256 does not match the manifest")
    for needed in (bundle.manifest.suite, LOCK, IMAGES, f"{RUN}/{META_FILE}"):
        if needed not in listed:
            problems.append(f"{needed}: missing")
    if problems:
        return Check("manifest", "FAIL", _listing(problems))
    return Check("manifest", "PASS", f"all {len(listed)} files match their SHA-256")


def _check_signature(bundle: Bundle, allowed_signers: Path | None, identity: str | None) -> Check:
    signature = bundle.signature
    if signature is None:
        if allowed_signers is None:
            return Check("signature", "SKIP", "not signed")
        return Check("signature", "FAIL", "not signed, and --allowed-signers asks for a signature")
    if allowed_signers is None or identity is None:
        args = ["-Y", "check-novalidate", "-n", NAMESPACE, "-s", str(signature)]
    else:
        args = ["-Y", "verify", "-f", str(allowed_signers), "-I", identity]
        args += ["-n", NAMESPACE, "-s", str(signature)]
    with open(bundle.root / MANIFEST, "rb") as manifest:
        proc = subprocess.run(
            [_ssh_keygen(), *args],
            stdin=manifest,
            capture_output=True,
            text=True,
            timeout=_VERIFY_TIMEOUT,
            check=False,
        )
    said = _last_line(proc.stdout + "\n" + proc.stderr)
    if proc.returncode != 0:
        return Check("signature", "FAIL", f"the manifest's signature does not verify: {said}")
    if allowed_signers is None:
        return Check(
            "signature",
            "SKIP",
            f"well-formed, signer not checked ({said}): pass --allowed-signers and --identity",
        )
    return Check("signature", "PASS", said)


def _check_suite(bundle: Bundle, meta: Mapping[str, Any]) -> tuple[config.Suite | None, Check]:
    try:
        full, selected = load_run_suite(bundle.suite_file, meta)
    except OrchestratorError as exc:
        first = str(exc).splitlines()[0]
        return None, Check("suite", "FAIL", f"{bundle.manifest.suite} does not load: {first}")
    recorded = _suite_meta(meta).get("config_hash")
    if selected.config_hash() != recorded:
        return full, Check(
            "suite",
            "FAIL",
            f"{bundle.manifest.suite} gives config hash {selected.config_hash()}, "
            f"the run recorded {recorded}",
        )
    return full, Check(
        "suite", "PASS", f"{bundle.manifest.suite} gives the run's settings ({recorded})"
    )


def _image_problem(
    job: dict[str, Any] | None, image: dict[str, Any] | None, lock: Lock
) -> str | None:
    if image is None:
        return "no image recorded (the local backend runs no image)"
    ref = image.get("ref")
    if not isinstance(ref, str) or "@sha256:" not in ref:
        return f"ran {ref!r}, a tag: a submission runs images by digest"
    digest = ref.partition("@")[2]
    recorded = image.get("digest")
    # the docker backend records the repo digest as REPOSITORY@sha256:…, others a bare digest
    if recorded is not None and str(recorded).rpartition("@")[2] != digest:
        return f"its recorded digest {recorded} is not the one of its ref {ref}"
    if job is None:
        return "no config event: its benchmark is unknown"
    definition, vendor = str(job.get("definition")), str(job.get("vendor"))
    try:
        entry = lock.entry(definition, vendor)
    except ConfigError:
        entry = None
    if entry is None:
        return f"the lock pins no {vendor} image of {definition}"
    if digest != entry.digest:
        return f"ran {digest}, not in the lock (it pins {entry.digest} for {definition}, {vendor})"
    image_id = image.get("id")
    if image_id is not None and image_id != entry.image_id:
        return f"image ID {image_id} differs from the lock's {entry.image_id}"
    return None


def _check_images(bundle: Bundle, rundir: RunDir, lock: Lock | None) -> Check:
    from orchestrator import images

    which = "the lock given" if lock is not None else "the bundled lock"
    if lock is None:
        try:
            lock = images.read_lock(bundle.lock_file)
        except ConfigError as exc:
            return Check(
                "images", "FAIL", f"the bundled lock is not valid: {str(exc).splitlines()[-1]}"
            )
    try:
        recorded = json.loads((bundle.root / IMAGES).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = None
    if not isinstance(recorded, dict):
        return Check("images", "FAIL", f"{IMAGES} is missing or not a JSON object")
    records = _job_records(rundir)
    problems = []
    for job_id, (job, image) in records.items():
        problem = _image_problem(job, image, lock)
        if problem:
            problems.append(f"{job_id}: {problem}")
        if recorded.get(job_id) != image:
            problems.append(f"{job_id}: {IMAGES} disagrees with its exit event")
    problems += [
        f"{job}: in {IMAGES} but has no events" for job in sorted(set(recorded) - set(records))
    ]
    if problems:
        return Check("images", "FAIL", _listing(problems))
    return Check(
        "images", "PASS", f"all {len(records)} jobs ran images pinned by digest in {which}"
    )


def _missing_reasons(meta: Mapping[str, Any], suite: config.Suite) -> dict[str, str]:
    """Why a benchmark of the suite has no job: skipped by the plan, or left out of the run."""
    plan = meta.get("plan")
    skipped = plan.get("skipped") if isinstance(plan, dict) else None
    reasons = {
        str(s["bench"]): f"skipped: {s.get('reason')}"
        for s in skipped or ()
        if isinstance(s, dict) and "bench" in s
    }
    table = _suite_meta(meta).get("benchmarks")
    ran = {b.get("name") for b in table or () if isinstance(b, dict)}
    for name in suite.names():
        if name not in ran:
            reasons.setdefault(name, "left out with --select/--exclude")
    return reasons


def _check_benchmarks(
    run: report.RunData, suite: config.Suite | None, meta: Mapping[str, Any]
) -> Check:
    if suite is None:
        return Check(
            "benchmarks", "FAIL", "the suite file does not load: cannot tell what should have run"
        )
    ran = {job.bench for job in run.jobs}
    enabled = [b.name for b in suite.benchmarks if b.enabled]
    reasons = _missing_reasons(meta, suite)
    problems = [
        f"{name} missing, scored 0 ({reasons.get(name, 'did not run')})"
        for name in enabled
        if name not in ran
    ]
    problems += [f"{name} is not in the suite" for name in sorted(ran - set(suite.names()))]
    if problems:
        return Check("benchmarks", "FAIL", _listing(problems, limit=12))
    return Check(
        "benchmarks", "PASS", f"all {len(enabled)} enabled benchmarks of suite {suite.name!r} ran"
    )


def _field(data: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _check_system(meta: Mapping[str, Any]) -> Check:
    system = meta.get("system")
    needed = list(sysinfo.REQUIRED_FIELDS)
    if _field(system, "accelerators.vendor") != "cpu":
        needed += sysinfo.ACCELERATOR_FIELDS
    missing = [name for name in needed if _field(system, name) in (None, "")]
    frameworks = {f: _field(system, f"software.{f}") for f in sysinfo.FRAMEWORKS}
    frameworks = {f: v for f, v in frameworks.items() if v}
    if not frameworks:
        missing.append("software.{" + ",".join(sysinfo.FRAMEWORKS) + "}")
    if missing:
        return Check("system", "FAIL", "meta.json system lacks " + ", ".join(missing))
    accelerators = (
        "no accelerator"
        if _field(system, "accelerators.vendor") == "cpu"
        else f"{_field(system, 'accelerators.count')}× {_field(system, 'accelerators.model')}"
    )
    summary = (
        f"{accelerators}; "
        f"{_field(system, 'host.cpu_model')} ({_field(system, 'host.cpu_cores')} cores, "
        f"{_field(system, 'host.memory_gb')} GB); {_field(system, 'os.name')}; "
        + ", ".join(f"{f} {v}" for f, v in frameworks.items())
    )
    return Check("system", "PASS", summary)


def _check_measures(run: report.RunData, needed: int, source: str) -> Check:
    short = [f"{job.job_id} has {len(job.rates)}" for job in run.jobs if len(job.rates) < needed]
    if short:
        return Check(
            "measurements",
            "FAIL",
            f"fewer than {needed} training rates ({source}): " + _listing(short),
        )
    fewest = min((len(job.rates) for job in run.jobs), default=0)
    return Check(
        "measurements",
        "PASS",
        f"every job has ≥ {needed} training rates ({source}); fewest {fewest}",
    )


def _check_failures(scored: report.Report) -> Check:
    rate = f"failure rate {scored.failure_rate:.2%}"
    if scored.passed:
        return Check("failures", "PASS", f"{rate} ≤ {report.PASS_THRESHOLD:.0%}")
    failed = [f"{b.name}: {b.reason}" for b in scored.benchmarks if b.fail]
    return Check("failures", "FAIL", f"{rate} > {report.PASS_THRESHOLD:.0%}: " + _listing(failed))


def _same(theirs: Any, ours: Any) -> bool:
    if isinstance(theirs, bool) or isinstance(ours, bool):
        return theirs is ours
    if isinstance(theirs, int | float) and isinstance(ours, int | float):
        return math.isclose(theirs, ours, rel_tol=SCORE_RTOL, abs_tol=0.0)
    if isinstance(theirs, dict) and isinstance(ours, dict):
        return theirs.keys() == ours.keys() and all(_same(theirs[k], ours[k]) for k in ours)
    if isinstance(theirs, list) and isinstance(ours, list):
        return len(theirs) == len(ours) and all(map(_same, theirs, ours))
    return bool(theirs == ours)


def _short(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else json.dumps(value)


def _differences(submitted: Any, fresh: dict[str, Any]) -> list[str]:
    """Where summary.json departs from the summary recomputed from the events."""
    if not isinstance(submitted, dict):
        return ["summary.json is not a JSON object"]
    diffs = [
        f"{key}: submitted {_short(submitted.get(key))}, recomputed {_short(fresh[key])}"
        for key in ("score", "failure_rate", "passed", "total_weight")
        if not _same(submitted.get(key), fresh[key])
    ]
    raw = submitted.get("benchmarks")
    theirs = (
        {str(b.get("name")): b for b in raw if isinstance(b, dict)} if isinstance(raw, list) else {}
    )
    ours = {str(b["name"]): b for b in fresh["benchmarks"]}
    diffs += [
        f"{name}: in summary.json, not in the events"
        for name in sorted(theirs.keys() - ours.keys())
    ]
    diffs += [f"{name}: not in summary.json" for name in sorted(ours.keys() - theirs.keys())]
    for name in sorted(ours.keys() & theirs.keys()):
        diffs += [
            f"{name}.{key}: submitted {_short(theirs[name].get(key))}, recomputed {_short(value)}"
            for key, value in ours[name].items()
            if not _same(theirs[name].get(key), value)
        ]
    return diffs


def _check_score(bundle: Bundle, recomputed: report.Report) -> Check:
    try:
        submitted = json.loads((bundle.run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Check("score", "FAIL", f"no {SUMMARY_FILE} in the bundle")
    except (OSError, ValueError) as exc:
        return Check("score", "FAIL", f"{SUMMARY_FILE} is not readable JSON: {exc}")
    diffs = _differences(submitted, report.to_json(recomputed))
    if diffs:
        return Check(
            "score", "FAIL", f"{SUMMARY_FILE} differs from the raw events: " + _listing(diffs)
        )
    return Check(
        "score",
        "PASS",
        f"{SUMMARY_FILE} (score {recomputed.score:.6g}) matches the raw events "
        f"(relative tolerance {SCORE_RTOL:g})",
    )


def _check_reference(judgements: list[Judgement], reference: Reference) -> Check:
    from orchestrator import references

    bad = [
        f"{j.name} {j.verdict} ({j.measured:.4g} vs {j.expected.value:.4g} {j.expected.unit})"
        for j in references.outside(judgements)
    ]
    if bad:
        return Check(
            "reference", "FAIL", f"outside the tolerance of {reference.system!r}: " + _listing(bad)
        )
    return Check(
        "reference",
        "PASS",
        f"all {len(judgements)} figures within the tolerance of {reference.system!r}",
    )


def verify(
    bundle: Bundle,
    *,
    lock: Lock | None = None,
    reference: Reference | None = None,
    min_measures: int | None = None,
    allowed_signers: Path | None = None,
    identity: str | None = None,
) -> Verification:
    """Check an extracted bundle (see docs/submissions.md for each check).

    ``lock``: the images lock the buyer requires (default: the bundled one). ``min_measures``:
    training rates per job (default: the suite's ``min_measures``, else 30). With
    ``allowed_signers`` and ``identity`` the manifest must carry that signer's signature.
    Unusable input (no run in the bundle, unknown benchmarks in ``reference``) raises.
    """
    if (allowed_signers is None) != (identity is None):
        raise UsageError("--allowed-signers and --identity go together")
    if allowed_signers is not None and not Path(allowed_signers).is_file():
        raise ConfigError(f"no allowed signers file at {allowed_signers}")
    rundir = RunDir.open(bundle.run_dir)
    meta = rundir.meta()
    (run,) = report.load([bundle.run_dir])
    recomputed = report.summarize([run])
    suite, suite_check = _check_suite(bundle, meta)
    if suite is not None:
        reasons = _missing_reasons(meta, suite)
        expected = [
            report.BenchmarkSpec(b.name, b.weight, b.enabled, reasons.get(b.name))
            for b in suite.benchmarks
        ]
        scored = report.summarize([run], expected=expected)
    else:
        scored = recomputed
    if min_measures is not None:
        needed, source = min_measures, "--min-measures"
    elif suite is not None and suite.min_measures is not None:
        needed, source = suite.min_measures, "the suite's min_measures"
    else:
        needed, source = DEFAULT_MIN_MEASURES, "default, Milabench report §3.1"
    checks = [
        _check_manifest(bundle),
        _check_signature(bundle, allowed_signers, identity),
        suite_check,
        _check_images(bundle, rundir, lock),
        _check_benchmarks(run, suite, meta),
        _check_system(meta),
        _check_measures(run, needed, source),
        _check_failures(scored),
        _check_score(bundle, recomputed),
    ]
    result = Verification(str(bundle.source), bundle.manifest, checks, scored, needed)
    if reference is not None:
        from orchestrator import references

        result.reference = reference
        result.judgements = references.check(reference, scored)
        checks.append(_check_reference(result.judgements, reference))
    return result


_STYLES: Final = {"PASS": "green", "FAIL": "bold red", "SKIP": "yellow"}


def checks_table(verification: Verification) -> Table:
    from rich.table import Table
    from rich.text import Text

    m = verification.manifest
    failed = len(verification.failed)
    table = Table(
        title=Text(f"Submission {m.run_id} (packed by mbctl {m.mbctl})"),
        caption=Text(
            "all checks pass"
            if not failed
            else f"{failed} of {len(verification.checks)} checks FAIL"
        ),
    )
    table.add_column("check")
    table.add_column("result")
    table.add_column("reason", overflow="fold")
    for c in verification.checks:
        table.add_row(Text(c.name), Text(c.status, style=_STYLES[c.status]), Text(c.reason))
    return table


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def verification_to_json(verification: Verification) -> dict[str, Any]:
    from orchestrator import references

    reference = verification.reference
    return {
        "bundle": verification.bundle,
        "run_id": verification.manifest.run_id,
        "mbctl": verification.manifest.mbctl,
        "passed": verification.passed,
        "min_measures": verification.min_measures,
        "checks": [dataclasses.asdict(c) for c in verification.checks],
        "report": report.to_json(verification.report),
        "reference": (
            references.to_json(verification.judgements, reference)
            if reference is not None
            else None
        ),
    }
