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


def _commands(group: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, command in getattr(group, "commands", {}).items():
        out.append((*prefix, name))
        out += _commands(command, (*prefix, name))
    return out


def test_every_subcommand_help_runs() -> None:
    import typer.main

    commands = _commands(typer.main.get_command(app))
    assert ("render", "compose") in commands and ("report",) in commands
    for command in commands:
        code, out, err = invoke(*command, "--help")
        assert code == 0, (command, err)
        assert "Usage:" in out


def test_options_show_their_choices() -> None:
    out = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "200"}).stdout
    assert "[cpu|cuda|rocm|hpu|xpu]" in out and "[auto|local|docker|kubernetes|slurm]" in out
    assert "[tiny|full]" in out and "<list[str]>" not in out


def _finished_run(root: Path) -> Path:
    """A run of the smoke suite's fp32 whose one job finished: resuming it runs nothing."""
    from orchestrator.plan import Job, PlanKind
    from orchestrator.results import RunDir

    meta = {
        "suite": {"name": "smoke", "file": "smoke", "profile": None, "select": ["fp32"]},
        "backend": "local",
        "vendor": "cpu",
    }
    run = RunDir.create(root, meta, run_id="20260101-000000-smoke-0000")
    job = Job(
        id="fp32.0",
        bench="fp32",
        tag="0",
        definition="matmul",
        vendor="cpu",
        plan=PlanKind.NJOBS,
        weight=1.0,
        max_duration=60,
        unit="TFLOPS",
    )
    rec = run.recorder(job)
    for i in range(3):
        rec.event({"event": "rate", "t": 1.0 + i, "value": 2.0, "task": "train"})
    rec.finish(0, "ok")
    return run.path


def test_resume_builds_its_request_and_runs_only_what_is_missing(tmp_path: Path) -> None:
    run = _finished_run(tmp_path)
    code, out, err = invoke("run", "--resume", str(run), "--backend", "local", "--vendor", "cpu")
    assert code == 0, err
    assert "fp32" in out and f"results: {run}" in err


@pytest.mark.parametrize(
    ("devices", "message"),
    [
        ("0,0", "error: --devices '0,0': device 0 listed more than once"),
        ("0", "error: --devices '0': plan for at least one device"),
        ("1", "error: --devices 0: the cpu vendor has no devices to choose"),
        ("1", "error: --devices 0: no cuda device is detected on this host"),
    ],
)
def test_devices_are_checked(devices: str, message: str) -> None:
    vendor = "cuda" if "cuda" in message else "cpu"
    code, _, err = invoke("run", "--vendor", vendor, "--devices", devices, "--backend", "local")
    assert code == 2 and message in err, err


def test_devices_for_another_vendor_warn_on_dry_run() -> None:
    code, _, err = invoke(
        "run", "--dry-run", "--vendor", "cuda", "--devices", "2", "--backend", "local"
    )
    assert code == 0
    assert "warning: --devices 0,1: no cuda device is detected on this host" in err


def test_cpu_runs_default_to_the_tiny_profile() -> None:
    code, out, err = invoke(
        "run", "--dry-run", "--suite", "standard", "--vendor", "cpu", "--backend", "local",
        "--select", "resnet50", "--format", "json",
    )  # fmt: skip
    assert code == 0, err
    assert "profile: tiny (the CPU default" in err
    code, full, _ = invoke(
        "run", "--dry-run", "--suite", "standard", "--vendor", "cpu", "--backend", "local",
        "--select", "resnet50", "--format", "json", "--profile", "full",
    )  # fmt: skip
    assert json.loads(out)["jobs"][0]["argv"] != json.loads(full)["jobs"][0]["argv"]


def test_report_output_suffix_picks_the_format_and_latest(tmp_path: Path) -> None:
    run = _finished_run(tmp_path / "runs")
    code, _, err = invoke(
        "report", "latest", "--results", str(tmp_path / "runs"), "-o", str(tmp_path / "r.html")
    )
    assert code == 0, err
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    code, _, _ = invoke("report", str(run), "-o", str(tmp_path / "r.json"))
    assert json.loads((tmp_path / "r.json").read_text())["verdict"] == {
        "passed": True,
        "problems": [],
    }
    code, _, err = invoke("report", "latest", "--results", str(tmp_path / "nothing"))
    assert code == 2, err
    assert "error: latest: no run folder in" in err


def test_report_gates_for_ci(tmp_path: Path) -> None:
    run = _finished_run(tmp_path)
    junit = tmp_path / "junit.xml"
    code, _, err = invoke("report", str(run), "--fail-under", "1e9", "--junit", str(junit))
    assert code == 1 and "error: the run does not pass: score" in err
    text = junit.read_text()
    assert '<testcase classname="mbctl.benchmark" name="fp32"' in text
    assert "is under --fail-under" in text
    code, _, _ = invoke("report", str(run), "--fail-under", "1")
    assert code == 0


def test_report_weights_rescore(tmp_path: Path) -> None:
    run = _finished_run(tmp_path)
    code, out, err = invoke("report", str(run), "--weights", "smoke", "-f", "json")
    # the smoke suite's other benchmarks did not run: they count as 0, but no job failed
    assert code == 0, err
    names = {b["name"]: b for b in json.loads(out)["benchmarks"]}
    assert names["convnet"]["status"] == "missing" and names["fp32"]["status"] == "ok"


def test_narrow_table_keeps_names_and_numbers_whole(tmp_path: Path) -> None:
    import subprocess
    import sys

    run = _finished_run(tmp_path)
    env = {**__import__("os").environ, "COLUMNS": "72"}
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "report", str(run)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 72, result.stdout
    (row,) = [line for line in lines if line.startswith("│fp32")]
    assert "2.00" in row and "TFLOPS" in row and "ok" in row  # one line, nothing cut


def test_report_compare_render_need_no_extras(tmp_path: Path) -> None:
    """`pip install .` without extras: no numpy, docker, kubernetes or NVML to import."""
    import os
    import subprocess
    import sys

    run = _finished_run(tmp_path / "runs")
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\n"
        "for name in ('numpy', 'docker', 'kubernetes', 'pynvml', 'amdsmi', 'torch', 'jax'):\n"
        "    sys.modules[name] = None  # import raises ImportError\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{blocker}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    commands = [
        ["report", str(run), "-f", "json"],
        ["compare", str(run), str(run), "-f", "md"],
        ["render", "compose", "--vendor", "cpu", "--registry", "r.example/lab", "-o", str(tmp_path / "c.yml")],
    ]  # fmt: skip
    for args in commands:
        result = subprocess.run(
            [sys.executable, "-m", "orchestrator", *args],
            capture_output=True, text=True, env=env, cwd=tmp_path, check=False,
        )  # fmt: skip
        assert result.returncode == 0, (args, result.stderr)


def test_live_view_header_pending_eta_and_scored_rate() -> None:
    import time

    from rich.console import Console

    from orchestrator import workflow
    from orchestrator.cli.running import LiveView
    from orchestrator.runner import JobState

    prepared = workflow.prepare(
        workflow.Request(suite="smoke", vendor="cpu", backend="local", dry_run=True)
    )
    jobs = prepared.plan.jobs
    assert len(jobs) >= 2
    view = LiveView("20260101-000000-smoke-abcd", prepared)
    states = [JobState(job) for job in jobs]
    for state in states:
        view.update(state)
    first = states[0]
    first.started, first.status = time.monotonic() - 5, "running"
    for i, rate in enumerate([1.0, 10.0, 11.0, 12.0, 100.0]):
        first.measures, first.rate = i + 1, rate
        view.update(first)
    first.finished, first.status = time.monotonic(), "ok"
    view.update(first)
    console = Console(record=True, width=160)
    console.print(view)
    text = console.export_text()
    header = text.splitlines()[0]
    assert "run 20260101-000000-smoke-abcd" in header and "suite smoke" in header
    assert "backend local" in header and f"1/{len(jobs)} jobs done" in header
    limits = {}
    for job in jobs[1:]:
        limits[job.bench] = max(limits.get(job.bench, 0.0), job.max_duration)
    eta = sum(limits.values())
    assert f"ETA ≤ {int(eta // 60)}m{int(eta % 60):02d}s" in header
    assert f"pending ({len(jobs) - 1}): " + ", ".join(j.id for j in jobs[1:]) in text
    # the finished job shows the report's rate: one min and one max dropped, then the mean
    assert view.scored_rate(first.job.id) == 11.0 and "11.00" in text
