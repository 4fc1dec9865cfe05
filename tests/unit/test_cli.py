"""The CLI wiring: options reach the library, errors become one line with the right exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli.main import app

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_help_lists_commands() -> None:
    code, out, _ = invoke("--help")
    assert code == 0
    for command in ("list", "vendors", "run", "prepare", "report", "compare"):
        assert command in out


def test_list_and_vendors_json() -> None:
    code, out, _ = invoke("list", "--suite", "smoke", "--format", "json")
    assert code == 0
    assert json.loads(out)["name"] == "smoke"
    code, out, _ = invoke("vendors", "--format", "json")
    payload = json.loads(out)
    assert {v["vendor"] for v in payload["vendors"]} == {"cpu", "cuda", "rocm", "hpu", "xpu"}
    assert payload["detected"]["reasons"]


def test_dry_run_json_for_a_gpu_vendor_without_gpus() -> None:
    code, out, _ = invoke(
        "run",
        "--dry-run",
        "--vendor",
        "cuda",
        "--devices",
        "2",
        "--backend",
        "local",
        "--format",
        "json",
    )
    assert code == 0, out
    plan = json.loads(out)
    assert plan["vendor"] == "cuda" and plan["backend"] == "local"
    per_gpu = [j for j in plan["jobs"] if j["plan"] == "per_gpu"]
    assert {j["env"]["CUDA_VISIBLE_DEVICES"] for j in per_gpu} == {"0", "1"}


def test_dry_run_table() -> None:
    code, out, _ = invoke(
        "run", "--dry-run", "--vendor", "cpu", "--backend", "local", "--select", "fp32"
    )
    assert code == 0
    assert "fp32.0" in out and "matmul/main.py" in out


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("run", "--dry-run", "--vendor", "tpu"), 2, "error: unknown vendor 'tpu'"),
        (
            ("run", "--dry-run", "--select", "ghost"),
            2,
            "error: --select 'ghost': no such benchmark or tag",
        ),
        (("run", "--dry-run", "--suite", "nope"), 2, "error: no suite named 'nope'"),
        (("run", "--dry-run", "--backend", "lsf"), 2, "error: no such backend: 'lsf'"),
        (("run", "--dry-run", "--set", "fp32.weight=heavy"), 2, "--set.fp32.weight"),
        (
            ("report", "/nonexistent/run"),
            2,
            "error: no such run directory or file: /nonexistent/run",
        ),
    ],
)
def test_errors_are_one_line(args: tuple[str, ...], code: int, message: str) -> None:
    exit_code, _, err = invoke(*args)
    assert exit_code == code
    assert message in err
    assert "Traceback" not in err


def test_bad_suite_file_lists_problems(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("benchmarks:\n  a: {weight: x, colour: red}\n")
    code, _, err = invoke("run", "--dry-run", "--suite", str(bad))
    assert code == 2
    assert (
        f"{bad}:2: benchmarks.a.weight" in err
        and f"{bad}:2: benchmarks.a.colour: unknown key" in err
    )
