"""Bundles of a real run: contents, reproducible bytes, a clean verify, and each tampering caught."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from bundles import (
    MATMUL_IMAGE,
    MINI,
    fake_digest,
    reason,
    repack,
    set_exit_images,
    status,
    verify,
    write_lock,
)

from orchestrator import __version__, submission
from orchestrator.errors import ConfigError, ResultsError
from orchestrator.results import read_events

ALL_PASS = {
    "manifest": "PASS",
    "signature": "SKIP",
    "suite": "PASS",
    "images": "PASS",
    "benchmarks": "PASS",
    "system": "PASS",
    "measurements": "PASS",
    "failures": "PASS",
    "score": "PASS",
}


def test_bundle_holds_the_run_suite_lock_and_images(
    bundle: Path, container_run: Path, lock_file: Path
) -> None:
    with tarfile.open(bundle, "r:gz") as tar:
        members = tar.getmembers()
    root = container_run.name
    names = [m.name for m in members]
    assert names == sorted(names)
    assert {m.mtime for m in members} == {0} and {(m.uid, m.gid) for m in members} == {(0, 0)}
    assert set(names) == {
        f"{root}/{name}"
        for name in (
            "MANIFEST.json",
            "images.json",
            "images.lock.yaml",
            "suite/mini.yaml",
            "run/meta.json",
            "run/summary.json",
            "run/fp32.0.jsonl",
            "run/fp32.0.log",
            "run/fp32-small.0.jsonl",
            "run/fp32-small.0.log",
        )
    }
    with tarfile.open(bundle, "r:gz") as tar:
        manifest = json.loads(tar.extractfile(f"{root}/MANIFEST.json").read())  # type: ignore[union-attr]
        recorded = json.loads(tar.extractfile(f"{root}/images.json").read())  # type: ignore[union-attr]
        lock = tar.extractfile(f"{root}/images.lock.yaml").read()  # type: ignore[union-attr]
        suite = tar.extractfile(f"{root}/suite/mini.yaml").read()  # type: ignore[union-attr]
    assert manifest["format"] == "mbctl-submission" and manifest["mbctl"] == __version__
    assert manifest["run_id"] == root and manifest["suite"] == "suite/mini.yaml"
    assert len(manifest["files"]) == len(names) - 1
    assert recorded == {"fp32.0": MATMUL_IMAGE, "fp32-small.0": MATMUL_IMAGE}
    assert lock == lock_file.read_bytes() and suite == MINI.read_bytes()


def test_the_same_run_packs_to_the_same_bytes(
    bundle: Path, container_run: Path, lock_file: Path, tmp_path: Path
) -> None:
    again = submission.create(container_run, tmp_path / "again.tar.gz", lock=lock_file)
    assert again.path.read_bytes() == bundle.read_bytes()
    assert again.sha256 == submission.file_entry(bundle).sha256


def test_a_clean_bundle_passes(bundle: Path, tmp_path: Path) -> None:
    extracted = submission.extract(bundle, tmp_path / "x")
    result = submission.verify(extracted)
    assert status(result) == ALL_PASS, result.checks
    assert result.passed and result.min_measures == 10  # the suite's min_measures
    assert "every job has ≥ 10 training rates (the suite's min_measures)" in reason(
        result, "measurements"
    )
    assert "torch" in reason(result, "system")
    assert {b.name for b in result.report.benchmarks} == {"fp32", "fp32-small"}
    summary = json.loads((extracted.run_dir / "summary.json").read_text())
    assert result.report.score == pytest.approx(summary["score"], rel=1e-12)


def test_measurement_counts_from_command_line_suite_or_default(
    bundle: Path, tmp_path: Path
) -> None:
    result = verify(bundle, tmp_path / "x", min_measures=13)
    assert reason(result, "measurements") == (
        "fewer than 13 training rates (--min-measures): fp32-small.0 has 12; fp32.0 has 12"
    )

    def no_setting(root: Path) -> None:
        path = root / "suite" / "mini.yaml"
        path.write_text(path.read_text().replace("min_measures: 10\n", ""))

    edited = verify(repack(bundle, tmp_path / "n.tar.gz", no_setting, rehash=True), tmp_path / "y")
    assert status(edited)["suite"] == "FAIL"  # the suite is part of what was run
    assert reason(edited, "measurements").startswith(
        "fewer than 30 training rates (default, Milabench report §3.1)"
    )


def test_tampered_summary_is_caught_by_checksum_and_by_recomputation(
    bundle: Path, tmp_path: Path
) -> None:
    def inflate(root: Path) -> None:
        path = root / "run" / "summary.json"
        data = json.loads(path.read_text())
        data["benchmarks"][0]["perf"] *= 1.5
        data["score"] *= 1.01
        path.write_text(json.dumps(data, indent=2))

    naive = verify(repack(bundle, tmp_path / "naive.tar.gz", inflate), tmp_path / "a")
    assert status(naive)["manifest"] == "FAIL" and status(naive)["score"] == "FAIL"
    assert reason(naive, "manifest") == "run/summary.json: SHA-256 does not match the manifest"

    forged = verify(repack(bundle, tmp_path / "f.tar.gz", inflate, rehash=True), tmp_path / "b")
    assert status(forged)["manifest"] == "PASS"
    assert status(forged)["score"] == "FAIL"
    assert "score: submitted" in reason(forged, "score")
    assert ".perf: submitted" in reason(forged, "score")


def test_replaced_result_file_is_caught(bundle: Path, tmp_path: Path) -> None:
    def faster(root: Path) -> None:
        path = root / "run" / "fp32.0.jsonl"
        events = read_events(path)
        for ev in events:
            if ev["event"] == "rate":
                ev["value"] *= 2
        path.write_text("".join(json.dumps(ev) + "\n" for ev in events))

    naive = verify(repack(bundle, tmp_path / "n.tar.gz", faster), tmp_path / "a")
    assert reason(naive, "manifest") == "run/fp32.0.jsonl: SHA-256 does not match the manifest"
    forged = verify(repack(bundle, tmp_path / "f.tar.gz", faster, rehash=True), tmp_path / "b")
    assert status(forged)["manifest"] == "PASS" and status(forged)["score"] == "FAIL"
    assert "fp32.perf" in reason(forged, "score")


def test_swapped_image_digest_is_caught(bundle: Path, tmp_path: Path) -> None:
    other = f"registry.example/mbctl/matmul@{fake_digest('a faster, patched image')}"

    def swap(root: Path) -> None:
        image = {**MATMUL_IMAGE, "ref": other, "digest": other}
        set_exit_images(root / "run", image)
        (root / "images.json").write_text(
            json.dumps({"fp32.0": image, "fp32-small.0": image}, indent=2, sort_keys=True)
        )

    result = verify(repack(bundle, tmp_path / "s.tar.gz", swap, rehash=True), tmp_path / "a")
    assert status(result) == {**ALL_PASS, "images": "FAIL"}
    assert f"fp32.0: ran {other.partition('@')[2]}, not in the lock" in reason(result, "images")


def test_tags_and_missing_images_are_refused(
    container_run: Path, lock_file: Path, tmp_path: Path
) -> None:
    set_exit_images(container_run, {"ref": "registry.example/mbctl/matmul:latest", "id": None})
    submission.create(container_run, tmp_path / "tag.tar.gz", lock=lock_file)
    result = verify(tmp_path / "tag.tar.gz", tmp_path / "a")
    assert "ran 'registry.example/mbctl/matmul:latest', a tag" in reason(result, "images")

    set_exit_images(container_run, None)
    submission.create(container_run, tmp_path / "local.tar.gz", lock=lock_file)
    result = verify(tmp_path / "local.tar.gz", tmp_path / "b")
    assert "fp32.0: no image recorded" in reason(result, "images")


def test_images_json_must_match_the_exit_events(bundle: Path, tmp_path: Path) -> None:
    def lie(root: Path) -> None:
        (root / "images.json").write_text(json.dumps({"fp32.0": MATMUL_IMAGE}))

    result = verify(repack(bundle, tmp_path / "l.tar.gz", lie, rehash=True), tmp_path / "a")
    assert "fp32-small.0: images.json disagrees with its exit event" in reason(result, "images")


def test_a_buyers_lock_overrides_the_bundled_one(bundle: Path, tmp_path: Path) -> None:
    theirs = write_lock(
        tmp_path / "buyer.lock.yaml",
        ref=f"registry.example/mbctl/matmul@{fake_digest('the buyer built it')}",
    )
    from orchestrator import images

    result = verify(bundle, tmp_path / "a", lock=images.read_lock(theirs))
    assert status(result)["images"] == "FAIL"
    assert "not in the lock" in reason(result, "images")


def test_dropped_benchmark_is_listed_and_scored_zero(bundle: Path, tmp_path: Path) -> None:
    def drop(root: Path) -> None:
        for path in (root / "run").glob("fp32-small.*"):
            path.unlink()
        (root / "images.json").write_text(json.dumps({"fp32.0": MATMUL_IMAGE}))

    result = verify(repack(bundle, tmp_path / "d.tar.gz", drop, rehash=True), tmp_path / "a")
    assert status(result)["benchmarks"] == "FAIL"
    assert reason(result, "benchmarks") == "fp32-small missing, scored 0 (did not run)"
    missing = result.report.benchmark("fp32-small")
    assert missing is not None and missing.status == "missing"
    # its weight (2 of 3) still counts: the score falls to (1 + fp32) ** (1/3)
    fp32 = result.report.benchmark("fp32")
    assert fp32 is not None
    assert result.report.score == pytest.approx((1 + fp32.score) ** (1 / 3))


def test_a_selected_subset_is_incomplete(
    recorded_run: Path, lock_file: Path, tmp_path: Path
) -> None:
    from orchestrator import report, workflow

    req = workflow.Request(
        suite=str(MINI),
        vendor="cpu",
        backend="local",
        select=("fp32",),
        results=tmp_path / "runs",
        data_dir=tmp_path / "data",
    )
    run = workflow.run(req, workflow.prepare(req)).run
    run.write_summary(report.to_json(report.report([run.path])))
    set_exit_images(run.path, MATMUL_IMAGE)
    submission.create(run.path, tmp_path / "subset.tar.gz", lock=lock_file)
    result = verify(tmp_path / "subset.tar.gz", tmp_path / "a")
    assert status(result)["score"] == "PASS"  # consistent with itself...
    assert reason(result, "benchmarks") == (  # ...but not the whole suite
        "fp32-small missing, scored 0 (left out with --select/--exclude)"
    )


def test_removed_system_field_is_caught(bundle: Path, tmp_path: Path) -> None:
    def forget(root: Path) -> None:
        path = root / "run" / "meta.json"
        meta = json.loads(path.read_text())
        del meta["system"]["host"]["cpu_model"]
        meta["system"]["software"].pop("torch")
        path.write_text(json.dumps(meta))

    result = verify(repack(bundle, tmp_path / "m.tar.gz", forget, rehash=True), tmp_path / "a")
    assert status(result) == {**ALL_PASS, "system": "FAIL"}
    assert reason(result, "system") == (
        "meta.json system lacks host.cpu_model, software.{torch,jax,tensorflow}"
    )


def test_accelerator_fields_are_required_beyond_the_cpu(bundle: Path, tmp_path: Path) -> None:
    def gpu(root: Path) -> None:
        path = root / "run" / "meta.json"
        meta = json.loads(path.read_text())
        meta["system"]["accelerators"].update(vendor="cuda", count=8, model="NVIDIA H100")
        path.write_text(json.dumps(meta))

    result = verify(repack(bundle, tmp_path / "g.tar.gz", gpu, rehash=True), tmp_path / "a")
    assert reason(result, "system") == (
        "meta.json system lacks accelerators.memory_mib, accelerators.driver"
    )


def test_edited_suite_is_caught(bundle: Path, tmp_path: Path) -> None:
    def heavier(root: Path) -> None:
        path = root / "suite" / "mini.yaml"
        path.write_text(path.read_text().replace("weight: 2", "weight: 20"))

    result = verify(repack(bundle, tmp_path / "w.tar.gz", heavier, rehash=True), tmp_path / "a")
    assert status(result)["suite"] == "FAIL"
    assert "the run recorded sha256:" in reason(result, "suite")


def test_extra_and_missing_members_are_caught(bundle: Path, tmp_path: Path) -> None:
    def smuggle(root: Path) -> None:
        (root / "run" / "extra.jsonl").write_text("{}\n")
        (root / "run" / "fp32.0.log").unlink()

    result = verify(repack(bundle, tmp_path / "e.tar.gz", smuggle), tmp_path / "a")
    assert reason(result, "manifest") == (
        "run/extra.jsonl: not in the manifest; run/fp32.0.log: in the manifest but not in the bundle"
    )


def test_signed_bundle_verifies_and_tampering_breaks_it(
    container_run: Path, lock_file: Path, ssh_key: tuple[Path, Path], tmp_path: Path
) -> None:
    key, allowed = ssh_key
    signed = submission.create(container_run, tmp_path / "s.tar.gz", lock=lock_file, key=key)
    assert signed.signed
    again = submission.create(container_run, tmp_path / "s2.tar.gz", lock=lock_file, key=key)
    assert again.sha256 == signed.sha256  # ed25519 signatures are deterministic too

    good = verify(signed.path, tmp_path / "a", allowed_signers=allowed, identity="vendor@example")
    assert status(good)["signature"] == "PASS" and good.passed
    assert 'Good "mbctl-submission" signature for vendor@example' in reason(good, "signature")

    unchecked = verify(signed.path, tmp_path / "b")
    assert status(unchecked)["signature"] == "SKIP" and unchecked.passed
    assert "signer not checked" in reason(unchecked, "signature")

    stranger = verify(
        signed.path, tmp_path / "c", allowed_signers=allowed, identity="mallory@example"
    )
    assert status(stranger)["signature"] == "FAIL"

    def flip(root: Path) -> None:
        path = root / submission.SIGNATURE
        lines = path.read_text().splitlines()
        body = lines[1]
        lines[1] = body[:-4] + ("AAAA" if body[-4:] != "AAAA" else "BBBB")
        path.write_text("\n".join(lines) + "\n")

    broken = repack(signed.path, tmp_path / "broken.tar.gz", flip)
    result = verify(broken, tmp_path / "d", allowed_signers=allowed, identity="vendor@example")
    assert status(result)["signature"] == "FAIL"
    assert status(verify(broken, tmp_path / "e"))["signature"] == "FAIL"

    def inflate(root: Path) -> None:
        path = root / "run" / "summary.json"
        path.write_text(path.read_text().replace('"score": ', '"score": 1', 1))

    forged = repack(signed.path, tmp_path / "forged.tar.gz", inflate, rehash=True)
    result = verify(forged, tmp_path / "f", allowed_signers=allowed, identity="vendor@example")
    assert status(result)["manifest"] == "PASS"  # re-hashed: only the signature gives it away
    assert status(result)["signature"] == "FAIL"


def test_unsigned_bundle_fails_when_a_signature_is_required(
    bundle: Path, ssh_key: tuple[Path, Path], tmp_path: Path
) -> None:
    _, allowed = ssh_key
    result = verify(bundle, tmp_path / "a", allowed_signers=allowed, identity="vendor@example")
    assert reason(result, "signature") == "not signed, and --allowed-signers asks for a signature"


def test_lock_without_digests_is_refused(container_run: Path, tmp_path: Path) -> None:
    lock = tmp_path / "tags.lock.yaml"
    write_lock(lock)
    lock.write_text(
        lock.read_text().replace(MATMUL_IMAGE["ref"], "registry.example/mbctl/matmul:1.0")
    )  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="has no digest"):
        submission.create(container_run, tmp_path / "x.tar.gz", lock=lock)
    assert not (tmp_path / "x.tar.gz").exists()


def test_submit_needs_the_suite_the_run_used(
    container_run: Path, lock_file: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other.yaml"
    other.write_text(MINI.read_text().replace("--size: 384", "--size: 512"))
    with pytest.raises(ResultsError, match="does not give the settings run"):
        submission.create(container_run, tmp_path / "x.tar.gz", lock=lock_file, suite=other)
    with pytest.raises(ResultsError, match="not a run directory"):
        submission.create(tmp_path, tmp_path / "y.tar.gz", lock=lock_file)


def test_suite_includes_travel_with_the_bundle(
    container_run: Path, lock_file: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "suites"
    (folder / "parts").mkdir(parents=True)
    # defaults apply to their own file's benchmarks: they move to the included file with them
    head, _, body = MINI.read_text().partition("defaults:\n")
    (folder / "parts" / "matmuls.yaml").write_text("defaults:\n" + body)
    (folder / "main.yaml").write_text(head + "include: [parts/matmuls.yaml]\n")
    created = submission.create(
        container_run, tmp_path / "inc.tar.gz", lock=lock_file, suite=folder / "main.yaml"
    )
    assert created.manifest.suite == "suite/main.yaml"
    assert "suite/parts/matmuls.yaml" in created.manifest.files
    assert status(verify(created.path, tmp_path / "a"))["suite"] == "PASS"


def test_telemetry_travels_and_stray_files_stay(
    container_run: Path, lock_file: Path, tmp_path: Path
) -> None:
    (container_run / "telemetry").mkdir()
    (container_run / "telemetry" / "host.jsonl").write_text('{"t": 1, "devices": {}}\n')
    (container_run / "checkpoint.pt").write_bytes(b"weights a benchmark left behind")
    (container_run / "artifacts").mkdir()
    (container_run / "artifacts" / "x.jsonl").write_text("{}\n")
    created = submission.create(container_run, tmp_path / "t.tar.gz", lock=lock_file)
    assert "run/telemetry/host.jsonl" in created.manifest.files
    assert not any("checkpoint" in n or "artifacts" in n for n in created.manifest.files)
    assert verify(created.path, tmp_path / "a").passed


def test_recorded_digest_must_match_the_ref(bundle: Path, tmp_path: Path) -> None:
    def mismatch(root: Path) -> None:
        image = {**MATMUL_IMAGE, "digest": f"registry.example/mbctl/matmul@{fake_digest('x')}"}
        set_exit_images(root / "run", image)
        (root / "images.json").write_text(json.dumps({"fp32.0": image, "fp32-small.0": image}))

    result = verify(repack(bundle, tmp_path / "m.tar.gz", mismatch, rehash=True), tmp_path / "a")
    assert "fp32.0: its recorded digest registry.example" in reason(result, "images")


@pytest.mark.parametrize("value", ["0", "-3", "true", "ten", "2.5"])
def test_suite_min_measures_is_validated(tmp_path: Path, value: str) -> None:
    from orchestrator import config

    path = tmp_path / "s.yaml"
    path.write_text(MINI.read_text().replace("min_measures: 10", f"min_measures: {value}"))
    with pytest.raises(ConfigError, match=r"s.yaml:3: min_measures: must be a positive integer"):
        config.load_suite(path)
