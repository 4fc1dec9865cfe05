"""The wiring of `mbctl submit`, `verify` and `rerun`: output, formats, exit codes, one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from bundles import repack, write_lock
from typer.testing import CliRunner

from orchestrator import report, submission
from orchestrator.cli.main import app
from orchestrator.results import RunDir

runner = CliRunner()


def test_submit_then_verify(container_run: Path, lock_file: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "out" / "vendor.tar.gz"
    result = runner.invoke(
        app, ["submit", str(container_run), "--lock", str(lock_file), "-o", str(bundle)]
    )
    assert result.exit_code == 0, result.output
    sha = submission.file_entry(bundle).sha256
    assert f"sha256:{sha}  {bundle}" in result.stdout
    assert "wrote" in result.output and "(9 files)" in result.output

    result = runner.invoke(app, ["verify", str(bundle)])
    assert result.exit_code == 0, result.output
    assert "all checks pass" in result.stdout and "Benchmark results" in result.stdout

    result = runner.invoke(app, ["verify", str(bundle), "--format", "json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["passed"] is True and data["min_measures"] == 10 and data["reference"] is None
    assert [c["name"] for c in data["checks"]][:2] == ["manifest", "signature"]
    assert data["report"]["score"] > 1


def test_failed_checks_exit_1_with_one_line(bundle: Path, tmp_path: Path) -> None:
    def inflate(root: Path) -> None:
        path = root / "run" / "summary.json"
        data = json.loads(path.read_text())
        data["score"] *= 2
        path.write_text(json.dumps(data))

    forged = repack(bundle, tmp_path / "forged.tar.gz", inflate, rehash=True)
    result = runner.invoke(app, ["verify", str(forged), "--min-measures", "100"])
    assert result.exit_code == 1
    assert "error: 2 of 9 checks failed: measurements, score" in result.output
    result = runner.invoke(app, ["verify", str(forged), "-f", "json"])
    assert result.exit_code == 1 and json.loads(result.stdout)["passed"] is False


def test_unusable_input_exits_2(bundle: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_text("not a bundle")
    tags = write_lock(tmp_path / "tags.lock.yaml")
    tags.write_text(tags.read_text().replace("@sha256:", ":tag-"))
    cases = [
        (["verify", str(junk)], "not a readable submission bundle"),
        (["verify", str(tmp_path / "none.tar.gz")], "no such bundle"),
        (
            ["verify", str(bundle), "--identity", "x@y"],
            "--allowed-signers and --identity go together",
        ),
        (["verify", str(bundle), "--reference", str(tmp_path / "no.yaml")], "no reference file"),
        (["verify", str(bundle), "--lock", str(tmp_path / "no.lock")], "no images lock"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        lines = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and message in lines[0], result.output
    # images.read_lock lists every problem of a lock, one per line, as suite errors do
    result = runner.invoke(app, ["verify", str(bundle), "--lock", str(tags)])
    assert result.exit_code == 2 and "has no digest" in result.output


def test_signed_submission(
    container_run: Path, lock_file: Path, ssh_key: tuple[Path, Path], tmp_path: Path
) -> None:
    key, allowed = ssh_key
    bundle = tmp_path / "signed.tar.gz"
    args = ["submit", str(container_run), "--lock", str(lock_file), "-o", str(bundle)]
    result = runner.invoke(app, [*args, "--sign", str(key)])
    assert result.exit_code == 0 and "signed" in result.output
    result = runner.invoke(
        app,
        ["verify", str(bundle), "--allowed-signers", str(allowed), "--identity", "vendor@example"],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, [*args, "--sign", str(tmp_path / "nokey")])
    assert result.exit_code == 2 and "no such key file" in result.output


def test_rerun_catches_an_inflated_claim(
    fixed_rate_run: Path, lock_file: Path, tmp_path: Path
) -> None:
    bundle = submission.create(fixed_rate_run, tmp_path / "b.tar.gz", lock=lock_file).path

    def inflated(root: Path) -> None:
        for path in (root / "run").glob("*.jsonl"):
            events = [json.loads(line) for line in path.read_text().splitlines()]
            for ev in events:
                if ev["event"] == "rate":
                    ev["value"] *= 10
            path.write_text("".join(json.dumps(ev) + "\n" for ev in events))
        RunDir(root / "run").write_summary(report.to_json(report.report([root / "run"])))

    # a vendor can fabricate a bundle consistent with itself: verify passes, a re-run does not
    claim = repack(bundle, tmp_path / "claim.tar.gz", inflated, rehash=True)
    checks = json.loads(runner.invoke(app, ["verify", str(claim), "-f", "json"]).stdout)["checks"]
    assert {
        c["name"]: c["status"] for c in checks if c["name"] in ("manifest", "images", "score")
    } == {
        "manifest": "PASS",
        "images": "PASS",
        "score": "PASS",
    }
    args = ["rerun", str(claim), "--backend", "recording", "--tolerance", "0.6"]
    args += ["--results", str(tmp_path / "runs"), "--data", str(tmp_path / "data"), "-f", "json"]
    unsigned = runner.invoke(app, args)
    assert unsigned.exit_code == 2 and "--allowed-signers FILE and --identity" in unsigned.output
    shutil.rmtree(tmp_path / "claim")
    result = runner.invoke(app, [*args, "--insecure"])
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["passed"] is False and data["backend"] == "recording" and data["tolerance"] == 0.6
    rows = {row["name"]: row for row in data["rows"]}
    assert rows["fp32"]["within"] is False and rows["fp32"]["ratio"] == pytest.approx(0.1)
    assert "error: the re-run does not reproduce the submission within ±60%: fp32" in result.output
    assert submission.default_workdir(claim) == tmp_path / "claim"
    assert any((tmp_path / "claim").iterdir())

    again = runner.invoke(app, ["rerun", str(claim), "--backend", "recording", "--insecure"])
    assert again.exit_code == 2 and "is not an empty folder" in again.output
    local = runner.invoke(app, ["rerun", str(bundle), "--backend", "local", "--insecure"])
    assert local.exit_code == 2 and "the local backend runs this machine's code" in local.output


def test_lock_with_tags_is_a_config_error(container_run: Path, tmp_path: Path) -> None:
    lock = write_lock(tmp_path / "l.yaml")
    lock.write_text(lock.read_text().replace("@sha256:", ":tag-"))
    result = runner.invoke(
        app, ["submit", str(container_run), "--lock", str(lock), "-o", str(tmp_path / "b.tar.gz")]
    )
    assert result.exit_code == 2 and "has no digest" in result.output
