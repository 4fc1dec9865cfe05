"""`rerun`: a signed bundle run again with its settings on its locked images, and nothing else.

The benchmark is a fixed-rate stand-in for matmul, so a faithful re-run agrees exactly: no
test compares two real timings.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from bundles import MATMUL_REF, RecordingBackend, repack, status, verify, write_lock

from orchestrator import images, report, submission
from orchestrator.errors import BackendUnavailable, ConfigError, ResultsError, UsageError
from orchestrator.plan import Job, Plan, PlanKind
from orchestrator.results import RunDir
from orchestrator.submission.rerunning import _check_locked


def rerun(bundle: Path, tmp_path: Path, **options: object) -> submission.Rerun:
    extracted = submission.extract(bundle, tmp_path / "extracted")
    return submission.rerun(
        extracted,
        results=tmp_path / "reruns",
        data_dir=tmp_path / "data",
        **{"backend": "recording", **options},  # type: ignore[arg-type]
    )


def signed(run: Path, lock: Path, key: Path, tmp_path: Path) -> Path:
    return submission.create(run, tmp_path / "signed.tar.gz", lock=lock, key=key).path


def test_signed_bundle_reruns_on_its_locked_images_and_agrees(
    fixed_rate_run: Path, lock_file: Path, ssh_key: tuple[Path, Path], tmp_path: Path
) -> None:
    key, allowed = ssh_key
    RecordingBackend.images.clear()
    result = rerun(
        signed(fixed_rate_run, lock_file, key, tmp_path),
        tmp_path,
        allowed_signers=allowed,
        identity="vendor@example",
        tolerance=0.0,
    )
    assert result.passed, result.rows
    assert [(row.name, row.ratio) for row in result.rows] == [
        ("fp32", 1.0),
        ("fp32-small", 1.0),
        ("score", 1.0),
    ]
    assert RecordingBackend.images == {"fp32.0": MATMUL_REF, "fp32-small.0": MATMUL_REF}
    assert any(note.startswith("signature: ") for note in result.notes)
    submitted = RunDir.open(fixed_rate_run)
    assert result.run.job_ids() == submitted.job_ids()
    assert result.run.meta()["suite"]["config_hash"] == submitted.meta()["suite"]["config_hash"]
    assert (result.run.path / "summary.json").is_file()
    # the re-run is itself a submission whose images check out
    again = submission.create(result.run.path, tmp_path / "again.tar.gz", lock=lock_file)
    assert status(verify(again.path, tmp_path / "v"))["images"] == "PASS"


def test_an_inflated_claim_fails_by_exactly_its_factor(
    fixed_rate_run: Path, lock_file: Path, tmp_path: Path
) -> None:
    bundle = submission.create(fixed_rate_run, tmp_path / "b.tar.gz", lock=lock_file).path

    def inflated(root: Path) -> None:  # consistent with itself: verify cannot tell
        for path in (root / "run").glob("*.jsonl"):
            events = [json.loads(line) for line in path.read_text().splitlines()]
            for ev in events:
                if ev["event"] == "rate":
                    ev["value"] *= 10
            path.write_text("".join(json.dumps(ev) + "\n" for ev in events))
        RunDir(root / "run").write_summary(report.to_json(report.report([root / "run"])))

    claim = repack(bundle, tmp_path / "claim.tar.gz", inflated, rehash=True)
    result = rerun(claim, tmp_path, insecure=True, tolerance=0.6)
    assert not result.passed and any("--insecure" in note for note in result.notes)
    ratios = {row.name: row.ratio for row in result.rows}
    assert ratios["fp32"] == pytest.approx(0.1) and ratios["fp32-small"] == pytest.approx(0.1)


def test_unsigned_bundle_needs_insecure(
    fixed_rate_run: Path, lock_file: Path, tmp_path: Path
) -> None:
    bundle = submission.create(fixed_rate_run, tmp_path / "b.tar.gz", lock=lock_file).path
    with pytest.raises(UsageError, match="pass --allowed-signers FILE and --identity SIGNER"):
        rerun(bundle, tmp_path)
    assert not (tmp_path / "reruns").exists()


def test_signature_of_another_signer_is_refused(
    fixed_rate_run: Path, lock_file: Path, ssh_key: tuple[Path, Path], tmp_path: Path
) -> None:
    key, allowed = ssh_key
    with pytest.raises(
        submission.VerificationFailed, match=r"refusing to re-run .*does not verify"
    ):
        rerun(
            signed(fixed_rate_run, lock_file, key, tmp_path),
            tmp_path,
            allowed_signers=allowed,
            identity="someone-else@example",
        )
    assert not (tmp_path / "reruns").exists()


def test_tampered_files_are_refused_even_insecure(
    fixed_rate_run: Path, lock_file: Path, tmp_path: Path
) -> None:
    bundle = submission.create(fixed_rate_run, tmp_path / "b.tar.gz", lock=lock_file).path

    def tamper(root: Path) -> None:
        (root / "suite" / "mini.yaml").write_text("benchmarks: {x: {definition: ../../etc}}\n")

    forged = repack(bundle, tmp_path / "forged.tar.gz", tamper)
    with pytest.raises(submission.VerificationFailed, match="SHA-256 does not match"):
        rerun(forged, tmp_path, insecure=True)
    assert not (tmp_path / "reruns").exists()


def test_code_outside_the_benchmarks_root_is_refused_before_anything_runs(
    fixed_rate_run: Path, lock_file: Path, tmp_path: Path
) -> None:
    """Even a bundle signed by a trusted vendor cannot point a definition out of benchmarks/."""
    bundle = submission.create(fixed_rate_run, tmp_path / "b.tar.gz", lock=lock_file).path
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "main.py").write_text("open(__file__ + '.ran', 'w')\n")

    def escape(root: Path) -> None:
        path = root / "suite" / "mini.yaml"
        relative = os.path.relpath(evil, os.environ["MBCTL_BENCHMARKS"])
        path.write_text(path.read_text().replace("definition: matmul", f"definition: {relative}"))

    forged = repack(bundle, tmp_path / "forged.tar.gz", escape, rehash=True)
    with pytest.raises(ConfigError, match="definition: must be a relative folder"):
        rerun(forged, tmp_path, insecure=True)
    assert not (tmp_path / "reruns").exists() and not (evil / "main.py.ran").exists()


def test_no_local_backend_ever(
    fixed_rate_run: Path, lock_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = submission.create(fixed_rate_run, tmp_path / "b.tar.gz", lock=lock_file).path
    with pytest.raises(UsageError, match="the local backend runs this machine's code"):
        rerun(bundle, tmp_path, backend="local", insecure=True)
    # auto without an engine would fall back to local: refused, nothing started
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(BackendUnavailable, match=r"refusing to re-run .* with the local backend"):
        submission.rerun(
            submission.extract(bundle, tmp_path / "auto"),
            results=tmp_path / "reruns",
            backend="auto",
            insecure=True,
        )
    assert not (tmp_path / "reruns").exists()


def test_only_the_locked_image_may_start(tmp_path: Path) -> None:
    lock = images.read_lock(write_lock(tmp_path / "l.yaml"))
    job = Job(
        id="fp32.0",
        bench="fp32",
        tag="0",
        definition="matmul",
        vendor="cpu",
        plan=PlanKind.PER_GPU,
        max_duration=1,
        image=MATMUL_REF,
    )
    plan = Plan(suite="s", vendor="cpu", devices=(), nodes=1, jobs=(job,))
    _check_locked(plan, lock, tmp_path)
    local = plan.model_copy(
        update={"jobs": (job.model_copy(update={"image": "mbctl/matmul:cpu"}),)}
    )
    with pytest.raises(ResultsError, match="would start mbctl/matmul:cpu, the bundled lock pins"):
        _check_locked(local, lock, tmp_path)
    other = plan.model_copy(update={"jobs": (job.model_copy(update={"definition": "convnet"}),)})
    with pytest.raises(ResultsError, match="pins no image for convnet"):
        _check_locked(other, lock, tmp_path)


def test_rerun_refuses_a_suite_that_is_not_the_one_run(
    fixed_rate_run: Path, lock_file: Path, tmp_path: Path
) -> None:
    bundle = submission.create(fixed_rate_run, tmp_path / "b.tar.gz", lock=lock_file).path

    def smaller(root: Path) -> None:
        path = root / "suite" / "mini.yaml"
        path.write_text(path.read_text().replace("--size: 384", "--size: 128"))

    forged = repack(bundle, tmp_path / "forged.tar.gz", smaller, rehash=True)
    with pytest.raises(ResultsError, match="does not give the settings it was run with"):
        rerun(forged, tmp_path, insecure=True)
    assert not (tmp_path / "reruns").exists()
