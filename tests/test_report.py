"""Reports of mbctl run directories: job success rules, statistics, score, compare, renderers."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from orchestrator.errors import ResultsError
from orchestrator.plan import Job, PlanKind
from orchestrator.report import (
    BenchmarkSpec,
    JobResult,
    Report,
    compare,
    comparison_table,
    comparison_to_csv,
    comparison_to_html,
    comparison_to_json,
    comparison_to_markdown,
    global_score,
    load,
    metrics,
    report,
    report_table,
    summarize,
    to_csv,
    to_html,
    to_json,
    to_junit,
    to_markdown,
)
from orchestrator.report.render import system_rows
from orchestrator.results import RunDir

SUITE = [
    {"name": "convnet", "weight": 2.0, "enabled": True},
    {"name": "matmul", "weight": 1.0, "enabled": True},
    {"name": "jaxmlp", "weight": 1.0, "enabled": True},
    {"name": "old", "weight": 5.0, "enabled": False},
]
CONVNET = {"0": [100.0, 110.0, 105.0, 95.0, 400.0, 101.0], "1": [90.0, 92.0, 91.0]}
MATMUL = [20.0, 21.0, 22.0, 19.0, 20.5]


def job(bench: str, tag: str, devices: tuple[str, ...], plan: PlanKind, weight: float) -> Job:
    return Job(
        id=f"{bench}.{tag}",
        bench=bench,
        tag=tag,
        definition=bench,
        vendor="cuda",
        devices=devices,
        plan=plan,
        weight=weight,
        max_duration=60,
        unit="items/s",
    )


def record(
    run: RunDir,
    j: Job,
    rates: list[float],
    *,
    rc: int | None = 0,
    status: str | None = "ok",
    losses: tuple[float, ...] = (),
    early_stop: bool = False,
    gpu: list[dict[str, Any]] | None = None,
) -> None:
    rec = run.recorder(j)
    for i, value in enumerate(rates):
        rec.event(
            {"event": "rate", "t": 100.0 + i, "value": value, "units": "items/s", "task": "train"}
        )
    rec.event({"event": "rate", "t": 200.0, "value": 1e6, "units": "items/s", "task": "eval"})
    for loss in losses:
        rec.event({"event": "loss", "t": 150.0, "value": loss, "task": "train"})
    for devices in gpu or ():
        rec.event({"event": "gpu", "t": 150.0, "devices": devices})
    if early_stop:
        rec.event({"event": "end", "t": 300.0, "status": "early_stop"})
    if status is not None:
        rec.finish(rc, status, reason=None if status == "ok" else f"{status} here")


def make_run(root: Path, run_id: str = "r1", scale: float = 1.0) -> RunDir:
    meta = {
        "suite": {"name": "standard", "benchmarks": SUITE},
        "plan": {"skipped": [{"bench": "jaxmlp", "reason": "no jax for this vendor"}]},
    }
    run = RunDir.create(root, meta, run_id=run_id)
    for dev, rates in CONVNET.items():
        # in the container the one visible device is "0", whatever the host device
        gpu = [
            {"0": {"memory": [1000.0 * (i + 1) + 500 * int(dev), 8000.0], "load": 0.9}}
            for i in range(6)
        ]
        record(
            run,
            job("convnet", f"D{dev}", (dev,), PlanKind.PER_GPU, 2.0),
            [r * scale for r in rates],
            gpu=gpu,
        )
    record(run, job("matmul", "0", ("0", "1"), PlanKind.NJOBS, 1.0), [r * scale for r in MATMUL])
    return run


def trimmed(xs: list[float]) -> list[float]:
    xs = sorted(xs)
    return xs[1:-1] if len(xs) >= 5 else xs


def test_metrics_follow_milabench() -> None:
    xs = [10.0, 70.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    s = metrics(xs)
    kept = [20.0, 30.0, 40.0, 50.0, 60.0]
    assert (s.mean, s.std) == (np.mean(kept), np.std(kept))
    assert s.sem == np.std(kept) / len(kept) ** 0.5
    assert (s.min, s.q1, s.median, s.q3, s.max) == (20.0, 30.0, 40.0, 50.0, 60.0)
    assert metrics([1.0, 2.0, 3.0, 4.0]).mean == 2.5  # fewer than 5: nothing dropped
    assert metrics([4.0, 1.0, 2.0, 3.0, 5.0]).mean == 3.0
    assert math.isnan(metrics([]).mean)


def test_run_directory_report(tmp_path: Path) -> None:
    rep = report([make_run(tmp_path).path])
    conv, mm = rep.benchmark("convnet"), rep.benchmark("matmul")
    assert conv is not None and mm is not None
    pooled = trimmed(CONVNET["0"] + CONVNET["1"])
    assert conv.n == 2 and conv.fail == 0 and conv.status == "ok"
    assert conv.perf == pytest.approx(np.mean(pooled))
    assert conv.std_pct == pytest.approx(np.std(pooled) / np.mean(pooled))
    per_device = {d: np.mean(trimmed(r)) for d, r in CONVNET.items()}
    assert conv.per_device == pytest.approx(per_device)
    assert conv.throughput == conv.score == pytest.approx(sum(per_device.values()))
    # telemetry: device 1's samples were keyed "0" inside its container; 6 samples -> max dropped
    assert conv.peak_memory == 5000.0 + 500
    assert (conv.weight, conv.units, conv.ngpu) == (2.0, "items/s", 1)
    assert mm.throughput == mm.perf == pytest.approx(np.mean(trimmed(MATMUL)))
    assert mm.ngpu == 2 and math.isnan(mm.peak_memory)
    missing = rep.benchmark("jaxmlp")
    # planned as skipped (cannot run on this target): listed with its reason, scored 0
    assert missing is not None and missing.status == "skipped"
    assert missing.reason == "no jax for this vendor" and math.isnan(missing.score)
    assert rep.benchmark("old") is None  # disabled and never ran: not a row
    # eq. 1 over enabled benchmarks; the missing one counts as 0
    expected = math.exp((2 * math.log1p(conv.score) + 1 * math.log1p(mm.score) + 0) / 4)
    assert rep.score == pytest.approx(expected)
    assert rep.total_weight == 4.0
    assert (rep.failure_rate, rep.passed) == (0.0, True)
    assert [b.name for b in rep.benchmarks] == ["convnet", "jaxmlp", "matmul"]
    assert {s.job: s.times for s in rep.samples["convnet"]}["convnet.D1"] == [0.0, 1.0, 2.0]


def test_missing_benchmark_lowers_the_score(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    full = report(
        [run.path],
        expected=[BenchmarkSpec(b["name"], b["weight"], b["enabled"]) for b in SUITE[:2]],
    )
    partial = report([run.path])
    assert partial.score < full.score
    assert "| jaxmlp | 0 | 0 | 0 | skipped |" in to_markdown(partial)
    assert any(
        b["name"] == "jaxmlp" and b["status"] == "skipped" for b in to_json(partial)["benchmarks"]
    )


@pytest.mark.parametrize(
    ("kwargs", "success", "why"),
    [
        ({"rc": 0}, True, None),
        ({"rc": -15, "status": "failed", "early_stop": True}, True, None),
        (
            {"rc": -15, "status": "cancelled", "early_stop": True},
            False,
            "cancelled: cancelled here",
        ),
        ({"rc": 0, "losses": (1.0, float("nan"))}, False, "nan: NaN loss"),
        ({"rc": 1, "status": "failed"}, False, "exit: failed here"),
        ({"rc": None, "status": "timeout"}, False, "timeout: timeout here"),
        ({"rc": 0, "status": None}, False, "incomplete: did not finish (no exit event)"),
    ],
)
def test_job_success_rule(
    tmp_path: Path, kwargs: dict[str, Any], success: bool, why: str | None
) -> None:
    run = RunDir.create(tmp_path, {}, run_id="r")
    record(run, job("b", "D0", ("0",), PlanKind.PER_GPU, 1.0), [10.0], **kwargs)
    (res,) = load([run.path])[0].jobs
    assert res.success is success
    b = summarize([res]).benchmarks[0]
    assert b.fail == (0 if success else 1)
    assert b.score == (10.0 if success else 0.0)
    assert b.reason == (None if success else f"{why} (1/1 jobs)")


def test_no_training_rate_fails() -> None:
    res = JobResult("b.0", "b", "src", 1.0, True, "b", None, return_code=0, status="ok")
    from orchestrator.report.causes import classify

    assert not res.success and str(classify(res)) == "no-rate: exited 0 without a training rate"
    b = summarize([res]).benchmarks[0]
    assert math.isnan(b.perf) and math.isnan(b.score)
    assert summarize([res]).score == 1.0  # exp(ln(1 + 0)): a NaN score counts as 0


def test_global_score_weights() -> None:
    rep = summarize(
        [
            JobResult("a.0", "a", "s", 3.0, True, "a", None, rates=[100.0], return_code=0),
            JobResult("b.0", "b", "s", 1.0, True, "b", None, rates=[200.0], return_code=0),
            JobResult("c.0", "c", "s", 0.0, True, "c", None, rates=[999.0], return_code=0),
            JobResult("d.0", "d", "s", 7.0, False, "d", None, rates=[5.0], return_code=1),
        ]
    )
    assert rep.score == pytest.approx(math.exp((3 * math.log(101) + math.log(201)) / 4))
    assert rep.failure_rate == 0.25 and not rep.passed  # disabled jobs still count in n/fail
    score, total = global_score([])
    assert math.isnan(score) and total == 0


def test_merging_runs_pools_jobs(tmp_path: Path) -> None:
    a, b = make_run(tmp_path, "a"), make_run(tmp_path, "b", scale=2.0)
    rep = report([a.path, b.path])
    conv = rep.benchmark("convnet")
    assert conv is not None and conv.n == 4
    assert conv.perf == pytest.approx(
        np.mean(trimmed([r * s for s in (1, 2) for rs in CONVNET.values() for r in rs]))
    )
    assert rep.label == "a + b" and len(rep.runs) == 2


def test_zip_of_a_run_directory(tmp_path: Path) -> None:
    run = make_run(tmp_path / "runs")
    archive = tmp_path / "run.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in run.path.iterdir():
            zf.write(p, f"r1/{p.name}")
    assert to_json(report([archive])) == {
        **to_json(report([run.path])),
        "runs": to_json(report([archive]))["runs"],
    }


def test_garbage_and_unreadable_jobs_become_notes(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    with open(run.events_path("convnet.D0"), "a") as f:
        f.write('not json\n\x00\x01\n[1, 2]\n{"event": "rate", "t": 1, "valu')
    run.events_path("stray.0").write_text('{"event": "rate", "value": 1}\n')
    rep = report([run.path])
    conv = rep.benchmark("convnet")
    assert conv is not None and conv.n == 2 and conv.fail == 0
    assert rep.notes == [f"{run.events_path('stray.0')}: ignored, no config event"]


def test_load_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match=r"no such run directory or file: .*missing"):
        load([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ResultsError, match=r"empty holds no results"):
        load([tmp_path / "empty"])
    (tmp_path / "file.txt").write_text("hello")
    with pytest.raises(ResultsError, match=r"file\.txt is neither a run directory nor a zip"):
        load([tmp_path / "file.txt"])
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as zf:
        zf.writestr("readme.txt", "nothing")
    with pytest.raises(ResultsError, match=r"empty\.zip holds no results"):
        load([tmp_path / "empty.zip"])


def _report(tmp_path: Path) -> Report:
    run = make_run(tmp_path)
    record(run, job("matmul", "1", ("0", "1"), PlanKind.NJOBS, 1.0), [1.0], rc=1, status="failed")
    return report([run.path])


def test_json_rendering_is_standard_json(tmp_path: Path) -> None:
    obj = to_json(_report(tmp_path), samples=True)
    text = json.dumps(obj, allow_nan=False)
    assert {"score", "failure_rate", "passed", "benchmarks"} <= set(obj)
    assert obj["failure_rate"] == pytest.approx(1 / 4) and obj["passed"] is False
    jax = next(b for b in obj["benchmarks"] if b["name"] == "jaxmlp")
    assert jax["perf"] is None and jax["score"] is None
    assert "convnet" in json.loads(text)["samples"]


def test_csv_rendering(tmp_path: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(_report(tmp_path)))))
    assert [r["name"] for r in rows] == ["convnet", "jaxmlp", "matmul"]
    assert rows[1]["perf"] == "" and rows[1]["status"] == "skipped"
    assert rows[2]["fail"] == "1" and rows[2]["n"] == "2" and rows[2]["status"] == "partial"
    assert float(rows[0]["score"]) == pytest.approx(_report(tmp_path / "b").benchmarks[0].score)


def test_markdown_and_rich_table(tmp_path: Path) -> None:
    rep = _report(tmp_path)
    md = to_markdown(rep)
    assert md.startswith("# Benchmark results: r1\n")
    assert "**Failure rate**: 25.00% (FAIL)" in md
    assert re.search(r"\| matmul \| 2 \| 1 \| 0 \| [\d.]+ \| items/s \|", md)
    console = Console(record=True, width=220)
    console.print(report_table(rep))
    text = console.export_text()
    assert "convnet" in text and "skipped" in text and f"Score: {rep.score:.2f}" in text


def test_html_is_self_contained_with_plots(tmp_path: Path) -> None:
    rep = _report(tmp_path)
    page = to_html(rep)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page and "<link" not in page
    assert set(re.findall(r"https?://[^\"' ]+", page)) == {"http://www.w3.org/2000/svg"}
    # one bar chart per unit (items/s; jaxmlp has none, it is listed) + convnet and matmul
    assert page.count("<svg") == 1 + 2 and "Scored 0, no rate: jaxmlp: skipped" in page
    assert page.count("<polyline") == 2 + 2  # one line per job with rates
    assert "jaxmlp" in page and "skipped" in page


def test_html_escapes_names() -> None:
    res = JobResult("x.0", "<b>&bench", "s", 1.0, True, "g", None, rates=[1.0, 2.0], return_code=0)
    page = to_html(summarize([res]))
    assert "<b>&bench" not in page and "&lt;b&gt;&amp;bench" in page


def test_compare(tmp_path: Path) -> None:
    base = report([make_run(tmp_path, "base").path])
    other = report([make_run(tmp_path, "fast", scale=2.0).path])
    other.benchmarks = [b for b in other.benchmarks if b.name != "matmul"]
    other.benchmarks.append(
        summarize(
            [JobResult("new.0", "new", "s", 1.0, True, "new", None, rates=[5.0], return_code=0)]
        ).benchmarks[0]
    )
    cmp = compare(base, [other])
    rows = {r.name: r for r in cmp.rows}
    assert rows["convnet"].ratios == [pytest.approx(2.0)]
    assert math.isnan(rows["matmul"].values[0]) and math.isnan(rows["matmul"].ratios[0])
    assert math.isnan(rows["jaxmlp"].base) and math.isnan(rows["new"].base)
    assert cmp.score_ratios == [pytest.approx(other.score / base.score)]
    assert compare(base, [other], metric="throughput").rows[0].ratios == [pytest.approx(2.0)]
    obj = comparison_to_json(cmp)
    json.dumps(obj, allow_nan=False)
    assert obj["rows"][0]["ratios"] == [pytest.approx(2.0)] and obj["others"] == ["fast"]
    md = comparison_to_markdown(cmp)
    assert "| matmul | items/s |" in md and "missing" in md and "| score |" in md
    rows_csv = list(csv.reader(io.StringIO(comparison_to_csv(cmp))))
    assert rows_csv[0] == ["name", "units", "base", "base_state", "value_0", "ratio_0", "state_0"]
    assert rows_csv[-1][0] == "score"
    console = Console(record=True, width=200)
    console.print(comparison_table(cmp))
    assert "ratio fast" in console.export_text()


def test_comparison_html_is_self_contained(tmp_path: Path) -> None:
    base = report([make_run(tmp_path, "base").path])
    other = report([make_run(tmp_path, "<fast>", scale=2.0).path])
    page = comparison_to_html(compare(base, [other]))
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    assert set(re.findall(r"https?://[^\"' ]+", page)) == {"http://www.w3.org/2000/svg"}
    assert "&lt;fast&gt;" in page and "<fast>" not in page
    assert page.count("<rect") == 3  # convnet, matmul and the score; jaxmlp is missing
    assert "missing" in page


# --- system, energy, failure causes, skipped benchmarks, compare states ---------------------


#: benchkit's ``device`` object of a torch job on one H100 (the start event's, meta.json's).
H100_DEVICE: dict[str, Any] = {
    "vendor": "cuda",
    "type": "cuda",
    "name": "NVIDIA H100 80GB HBM3",
    "count": 1,
    "driver": "550.54.15",
    "runtime": "12.4",
    "framework": {
        "name": "torch",
        "version": "2.4.0+cu124",
        "path": "/opt/venv/lib/python3.11/site-packages/torch",
        "build": {"cuda": "12.4", "git_version": "e2d141dbde5"},
    },
}


def energy_run(
    root: Path, run_id: str = "e1", *, watts: float = 200.0, scale: float = 1.0
) -> RunDir:
    """convnet on two GPUs drawing ``watts`` each, an OOM-killed bert, a timed-out matmul and
    a skipped jaxmlp, in a run whose meta.json describes the machine."""
    meta = {
        "suite": {
            "name": "standard",
            "profile": "full",
            "benchmarks": [*SUITE[:3], {"name": "bert", "weight": 1.0, "enabled": True}],
        },
        "vendor": "cuda",
        "backend": "docker",
        "plan": {"skipped": [{"bench": "jaxmlp", "reason": "not built yet"}]},
        "system": {
            "host": {"hostname": "node1", "cpu_model": "EPYC 9654", "cpu_cores": 192, "memory_gb": 1511.0},
            "os": {"name": "Ubuntu 22.04", "kernel": "6.5"},
            "accelerators": {"vendor": "cuda", "count": 2, "model": "NVIDIA H100 80GB HBM3", "memory_mib": 81559, "driver": "550.54"},
            "software": {"mbctl": "0.1.0", "torch": "2.4.0", "cuda": "12.4"},
        },
    }  # fmt: skip
    run = RunDir.create(root, meta, run_id=run_id)
    for dev in ("0", "1"):
        rec = run.recorder(job("convnet", f"D{dev}", (dev,), PlanKind.PER_GPU, 2.0))
        t0 = time.time()  # the recorder's config event marks the job's start on this clock
        rec.event({"event": "start", "t": t0, "device": H100_DEVICE})
        for i in range(10):
            rec.event({"event": "rate", "t": t0 + i, "value": 100.0 * scale, "task": "train"})
            rec.event({"event": "gpu", "t": t0 + i, "devices": {"0": {"power": watts}}})
        rec.event({"event": "exit", "t": t0 + 10, "return_code": 0, "status": "ok"})
        rec._close()  # the exit event above is the one a 10 s job would have
    rec = run.recorder(job("bert", "0", ("0", "1"), PlanKind.NJOBS, 1.0))
    rec.log("loading model")
    rec.log("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
    rec.finish(1, "failed", reason="exit code 1")
    rec = run.recorder(job("matmul", "0", ("0", "1"), PlanKind.NJOBS, 1.0))
    rec.event({"event": "rate", "t": 1.0, "value": 5.0, "units": "items/s", "task": "train"})
    rec.finish(None, "timeout", reason="ran past max_duration=60s and was killed")
    return run


def test_system_energy_and_causes(tmp_path: Path) -> None:
    rep = report([energy_run(tmp_path).path])
    conv = rep.benchmark("convnet")
    assert conv is not None and conv.energy is not None
    # 2 jobs x 200 W x 10 s (from the config event to the exit event)
    assert conv.energy.mean_w == {"0": 200.0, "1": 200.0}
    assert conv.energy.median_w == {"0": 200.0, "1": 200.0}
    assert conv.energy.items_per_joule == pytest.approx(conv.score / 400.0)
    assert conv.energy.kj == pytest.approx(2 * 200.0 * 10 / 1000, rel=0.01)
    assert not math.isnan(rep.energy_score)
    bert, mm, jax = rep.benchmark("bert"), rep.benchmark("matmul"), rep.benchmark("jaxmlp")
    assert bert is not None and mm is not None and jax is not None
    assert bert.failures == [
        "oom: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    ]
    assert mm.failures[0].startswith("timeout: ran past max_duration=60s")
    assert (jax.status, jax.reason, jax.score != jax.score) == ("skipped", "not built yet", True)
    assert bert.energy is None
    # every format carries the system block, energy and the causes
    obj = to_json(rep)
    assert obj["system"]["accelerators"]["model"] == "NVIDIA H100 80GB HBM3"
    assert obj["system"]["devices"] == [{**H100_DEVICE, "jobs": ["convnet.D0", "convnet.D1"]}]
    md = to_markdown(rep)
    # the hardware that ran, from the jobs' start events: model, count, driver, runtime, build
    assert "- **device**: 1 × NVIDIA H100 80GB HBM3 (cuda, cuda)" in md
    assert "- **device driver**: 550.54.15" in md and "- **device runtime**: cuda 12.4" in md
    assert "- **framework**: torch 2.4.0+cu124 (cuda 12.4, git_version e2d141dbde5)" in md
    assert "job " not in md
    assert "- **accelerator**: 2 × NVIDIA H100 80GB HBM3, 81,559 MiB each" in md
    assert "- **runtime**: cuda 12.4" in md and "**backend**: docker" in md
    assert (
        "bert: failed: oom: torch.OutOfMemoryError" in md and "jaxmlp: skipped: not built yet" in md
    )
    assert "convnet: " in md and " kJ; mean/median per device: 0 200/200 W" in md
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(to_csv(rep)))}
    assert rows["convnet"]["power_mean_w"] == "400.0" and rows["bert"]["energy_kj"] == ""
    assert rows["convnet"]["accelerator"].startswith("2 × NVIDIA H100")
    assert rows["bert"]["device"] == "1 × NVIDIA H100 80GB HBM3 (cuda, cuda)"
    assert (
        rows["bert"]["device driver"] == "550.54.15"
        and rows["bert"]["device runtime"] == "cuda 12.4"
    )
    assert rows["bert"]["framework"] == "torch 2.4.0+cu124 (cuda 12.4, git_version e2d141dbde5)"
    page = to_html(rep)
    assert "NVIDIA H100 80GB HBM3" in page and "convnet: power" in page and "oom:" in page
    assert (
        "<dt>framework</dt><dd>torch 2.4.0+cu124 (cuda 12.4, git_version e2d141dbde5)</dd>" in page
    )
    console = Console(record=True, width=90)
    console.print(report_table(rep, width=90))
    text = console.export_text()
    assert "2 × NVIDIA H100" in text and "jaxmlp: skipped: not built yet" in text
    assert "device driver" in text and "torch 2.4.0+cu124 (cuda 12.4" in text
    assert max(len(line) for line in text.splitlines()) <= 90


def test_no_power_samples_is_said(tmp_path: Path) -> None:
    rep = report([make_run(tmp_path).path])
    assert math.isnan(rep.energy_score)
    assert "no power samples" in to_markdown(rep) and "no power samples" in to_html(rep)
    assert to_json(rep)["energy_score"] is None


def test_milabench_meta_becomes_the_system_block() -> None:
    from orchestrator import sysinfo

    system = sysinfo.from_milabench(
        {
            "cpu": {"count": 64, "brand": "AMD EPYC 7543"},
            "os": {"sysname": "Linux", "nodename": "cn-l001", "release": "5.15", "machine": "x86_64"},
            "accelerators": {"arch": "cuda", "gpus": {"0": {"product": "NVIDIA L40S", "memory": {"used": 1, "total": 46068}}, "1": {"product": "NVIDIA L40S"}}},
            "pytorch": {"torch": "2.3.1", "cuda": "12.1"},
        }
    )  # fmt: skip
    rows = dict(sysinfo.rows(system))
    assert rows["accelerator"] == "2 × NVIDIA L40S, 46,068 MiB each"
    assert rows["runtime"] == "cuda 12.1" and rows["software"] == "torch 2.3.1"
    assert rows["cpu"] == "AMD EPYC 7543 (64 cores)"


def test_compare_keeps_failures_out_of_ratios_and_warns(tmp_path: Path) -> None:
    base_run = energy_run(tmp_path / "a", "base")
    other_run = make_run(tmp_path / "b", "other", scale=2.0)
    base, other = report([base_run.path]), report([other_run.path])
    cmp = compare(base, [other], metas=[base_run.meta(), other_run.meta()])
    rows = {r.name: r for r in cmp.rows}
    assert rows["matmul"].base_state == "failed" and math.isnan(rows["matmul"].ratios[0])
    assert rows["jaxmlp"].base_state == "not run" and rows["jaxmlp"].states == ["not run"]
    assert rows["bert"].states == ["missing"]
    assert rows["convnet"].ratios[0] == pytest.approx(other.benchmark("convnet").perf / 100.0)
    assert any("vendor differs" not in w and "profile differs" not in w for w in cmp.warnings)
    assert "other: only 2 of 3 benchmarks ran in both" in cmp.warnings
    md = comparison_to_markdown(cmp)
    assert "| matmul | items/s | failed |" in md and "warning: other:" in md
    assert comparison_to_json(cmp)["warnings"] == cmp.warnings


def test_compare_warns_on_device_count(tmp_path: Path) -> None:
    a, b = energy_run(tmp_path / "a", "a"), energy_run(tmp_path / "b", "b")
    meta = b.meta()
    meta["system"]["accelerators"]["count"] = 8
    meta["suite"]["profile"] = "tiny"
    (b.path / "meta.json").write_text(json.dumps(meta))
    cmp = compare(report([a.path]), [report([b.path])], metas=[a.meta(), b.meta()])
    assert "b: device count differs: 2 vs 8" in cmp.warnings
    assert "b: profile differs: full vs tiny" in cmp.warnings


def test_junit_lists_each_benchmark(tmp_path: Path) -> None:
    from xml.etree import ElementTree

    rep = report([energy_run(tmp_path).path])
    root = ElementTree.fromstring(to_junit(rep, ["failure rate 50.00% is above 1%"]))
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert cases["bert"].find("failure") is not None
    assert cases["jaxmlp"].find("skipped") is not None
    assert cases["convnet"].find("failure") is None
    assert cases["verdict"].find("failure").get("message") == "failure rate 50.00% is above 1%"


def test_failure_causes() -> None:
    from orchestrator.report.causes import classify

    def cause(**kw: Any) -> str:
        return str(classify(JobResult("j", "b", "s", 1.0, True, "b", None, **kw)))

    assert (
        cause(return_code=-9, status="failed")
        == "signal: killed by SIGKILL (likely the OOM killer)"
    )
    assert (
        cause(
            return_code=1,
            status="failed",
            log_tail=[
                "Traceback (most recent call last):",
                '  File "x"',
                "ModuleNotFoundError: No module named 'timm'",
            ],
        )
        == "import: ModuleNotFoundError: No module named 'timm'"
    )
    assert (
        cause(return_code=2, status="failed", log_tail=["step 1", "RuntimeError: shapes differ"])
        == "exit: RuntimeError: shapes differ"
    )
    assert cause(return_code=0, status="ok") == "no-rate: exited 0 without a training rate"
    assert cause(return_code=143, status="cancelled") == "cancelled: cancelled before it ended"


def test_nodes_from_meta_and_from_kubernetes_node_events(tmp_path: Path) -> None:
    from orchestrator import sysinfo

    slurm = [
        {"name": "gpu01", "gpu_product": "H100", "jobs": ["a.0"]},
        {"name": "gpu02", "jobs": []},
    ]
    assert dict(sysinfo.rows({"nodes": slurm}))["nodes"] == "2: gpu01 (H100), gpu02"
    by_name = {"gpu01": {"gpu_product": "H100"}, "gpu02": "8 GPUs"}
    assert dict(sysinfo.rows({"nodes": by_name}))["nodes"] == "2: gpu01 (H100), gpu02 (8 GPUs)"
    run = RunDir.create(tmp_path, {}, run_id="k")
    rec = run.recorder(job("b", "0", ("0",), PlanKind.NJOBS, 1.0))
    for rank, name in enumerate(("node-a", "node-b")):
        node = {"name": name, "kernel": "6.1", "labels": {"x": "y"}}
        rec.event({"event": "meta", "kind": "node", "rank": rank, "pod": f"p-{rank}", "node": node})
    rec.event({"event": "rate", "t": 1.0, "value": 5.0, "task": "train"})
    rec.finish(0, "ok")
    rep = report([run.path])
    assert list(rep.system["nodes"]) == ["node-a", "node-b"]
    assert rep.system["nodes"]["node-a"]["jobs"] == ["b.0"]
    assert "- **nodes**: 2: node-a, node-b" in to_markdown(rep)


def k8s_node(name: str, product: str, count: int) -> dict[str, Any]:
    """A node as the Kubernetes backend describes it (backends.kubernetes.nodes.describe_node)."""
    return {
        "name": name,
        "labels": {
            "nvidia.com/gpu.product": product,
            "nvidia.com/cuda.driver-version.full": "550.54.15",
            "kubernetes.io/arch": "amd64",
        },
        "allocatable": {"cpu": "96", "memory": "1056Gi", "nvidia.com/gpu": str(count)},
        "device_resource": "nvidia.com/gpu",
        "devices": count,
        "kernel": "5.15.0",
        "os": "Ubuntu 22.04.4 LTS",
        "container_runtime": "containerd://1.7.13",
        "kubelet": "v1.29.2",
    }


def test_kubernetes_nodes_and_meta_devices(tmp_path: Path) -> None:
    """meta.json ``nodes`` (name → node description) and ``devices`` (job id → benchkit's
    device object) of a Kubernetes run: the nodes' GPUs and each job's device are shown."""
    jax_device = {
        "vendor": "cuda", "type": "gpu", "name": "NVIDIA H100 80GB HBM3", "count": 8,
        "driver": "550.54.15", "runtime": None,
        "framework": {"name": "jax", "version": "0.4.30", "path": "/opt/venv/jax",
                      "build": {"jaxlib": "0.4.30", "backend": "gpu"}},
    }  # fmt: skip
    meta = {
        "backend": "kubernetes",
        "nodes": {n: k8s_node(n, "NVIDIA-H100-80GB-HBM3", 8) for n in ("gpu-a", "gpu-b")},
        "devices": {"convnet.D0": H100_DEVICE, "jaxmlp.0": jax_device},
    }
    run = RunDir.create(tmp_path, meta, run_id="k8s")
    for bench, tag, plan in (("convnet", "D0", PlanKind.PER_GPU), ("jaxmlp", "0", PlanKind.NJOBS)):
        rec = run.recorder(job(bench, tag, ("0",), plan, 1.0))
        rec.event({"event": "rate", "t": 1.0, "value": 5.0, "task": "train"})
        rec.finish(0, "ok")
    rep = report([run.path])
    obj = to_json(rep)
    assert obj["system"]["nodes"]["gpu-a"]["labels"]["nvidia.com/gpu.product"] == (
        "NVIDIA-H100-80GB-HBM3"
    )
    assert [d["jobs"] for d in obj["system"]["devices"]] == [["convnet.D0"], ["jaxmlp.0"]]
    rows = dict(system_rows(rep))
    assert rows["nodes"] == (
        "2: gpu-a (NVIDIA-H100-80GB-HBM3 × 8, driver 550.54.15), "
        "gpu-b (NVIDIA-H100-80GB-HBM3 × 8, driver 550.54.15)"
    )
    # two different devices: each group's lines name its jobs
    assert rows["device [convnet.D0]"] == "1 × NVIDIA H100 80GB HBM3 (cuda, cuda)"
    assert rows["framework [convnet.D0]"].startswith("torch 2.4.0+cu124 (cuda 12.4")
    assert rows["device [jaxmlp.0]"] == "8 × NVIDIA H100 80GB HBM3 (cuda, gpu)"
    assert rows["framework [jaxmlp.0]"] == "jax 0.4.30 (jaxlib 0.4.30, backend gpu)"
    assert "device runtime [jaxmlp.0]" not in rows
    table = {r["name"]: r for r in csv.DictReader(io.StringIO(to_csv(rep)))}
    assert table["jaxmlp"]["framework"] == (
        "torch 2.4.0+cu124 (cuda 12.4, git_version e2d141dbde5) | "
        "jax 0.4.30 (jaxlib 0.4.30, backend gpu)"
    )
    assert "gpu-a (NVIDIA-H100-80GB-HBM3 × 8" in to_html(rep)


def test_slurm_nodes_with_gpu_counts_from_exit_events(tmp_path: Path) -> None:
    """Slurm: meta.json ``nodes`` is name → {name, gpu_product, jobs}; the count comes from the
    jobs' exit events (``nodes: [{name, gpu_product, gpu_count, gpu_indices}]``)."""
    meta = {
        "backend": "slurm",
        "nodes": {
            "cn-a": {"name": "cn-a", "gpu_product": "a100", "jobs": ["b.0"]},
            "cn-b": {"name": "cn-b", "gpu_product": None, "jobs": []},
        },
    }
    run = RunDir.create(tmp_path, meta, run_id="slurm")
    rec = run.recorder(job("b", "0", ("0", "1"), PlanKind.NJOBS, 1.0))
    rec.event({"event": "rate", "t": 1.0, "value": 5.0, "task": "train"})
    ran = [{"name": "cn-a", "gpu_product": "a100", "gpu_count": 4, "gpu_indices": "0-3"}]
    rec.finish(0, "ok", nodes=ran)
    rep = report([run.path])
    assert rep.system["nodes"]["cn-a"] == {
        "name": "cn-a", "gpu_product": "a100", "jobs": ["b.0"], "gpu_count": 4,
    }  # fmt: skip
    assert dict(system_rows(rep))["nodes"] == "2: cn-a (a100 × 4), cn-b"
    # without meta.json's nodes (a run still going), the exit events name them
    bare = RunDir.create(tmp_path, {}, run_id="bare")
    rec = bare.recorder(job("b", "0", ("0",), PlanKind.NJOBS, 1.0))
    rec.event({"event": "start", "t": 1.0, "device": {**H100_DEVICE, "count": 4}})
    rec.event({"event": "rate", "t": 1.0, "value": 5.0, "task": "train"})
    rec.finish(0, "ok", nodes=ran)
    rep = report([bare.path])
    assert dict(system_rows(rep))["nodes"] == "1: cn-a (a100 × 4)"
    assert dict(system_rows(rep))["device"] == "4 × NVIDIA H100 80GB HBM3 (cuda, cuda)"


def test_xpu_device_and_node_label_keys() -> None:
    from orchestrator import sysinfo
    from orchestrator.backends.kubernetes import nodes

    xpu = {
        "vendor": "xpu", "type": "xpu", "name": "Intel(R) Data Center GPU Max 1550", "count": 2,
        "driver": "1.3.27642", "runtime": "20240129",
        "framework": {"name": "torch", "version": "2.1.0a0+cxx11.abi",
                      "build": {"xpu": "20240129", "git_version": "abc"}, "ipex": "2.1.10+xpu"},
    }  # fmt: skip
    rows = dict(sysinfo.rows({"devices": sysinfo.job_devices({"a": xpu, "b": xpu, "c": {}})}))
    assert rows["device"] == "2 × Intel(R) Data Center GPU Max 1550 (xpu, xpu)"
    assert (
        rows["framework"]
        == "torch 2.1.0a0+cxx11.abi (xpu 20240129, git_version abc), ipex 2.1.10+xpu"
    )
    assert rows["device runtime"] == "xpu 20240129"
    rocm = {"type": "cuda", "runtime": "6.2.4", "framework": {"build": {"hip": "6.2.4"}}}
    assert dict(sysinfo.device_rows([rocm]))["device runtime"] == "hip 6.2.4"
    gaudi = {"type": "hpu", "runtime": "1.18.0", "framework": {"name": "torch"}}
    assert dict(sysinfo.device_rows([gaudi]))["device runtime"] == "hpu 1.18.0"
    # the report reads node labels without importing the Kubernetes backend: same keys
    assert sysinfo.NODE_PRODUCT_LABELS == nodes.PRODUCT_LABELS
    assert sysinfo.NODE_DRIVER_LABELS == nodes.DRIVER_LABELS


def test_energy_from_host_telemetry_within_the_job(tmp_path: Path) -> None:
    """A job without its own power samples gets the host sampler's for its devices while it ran."""
    run = RunDir.create(tmp_path, {}, run_id="h")
    rec = run.recorder(job("b", "0", ("1",), PlanKind.NJOBS, 1.0))
    t0 = time.time()
    rec.event({"event": "rate", "t": t0 + 1, "value": 50.0, "task": "train"})
    rec.event({"event": "exit", "t": t0 + 20, "return_code": 0, "status": "ok"})
    rec._close()
    samples = [
        (t0 + 5, "1", 100.0),
        (t0 + 10, "1", 300.0),
        (t0 + 10, "0", 999.0),  # another device: not this job's
        (t0 + 99, "1", 999.0),  # after the job
    ]
    lines = [
        {
            "event": "gpu",
            "t": t,
            "source": "host",
            "devices": {f"GPU-{d}": {"index": d, "power": w}},
        }
        for t, d, w in samples
    ]
    (run.path / "telemetry").mkdir()
    (run.path / "telemetry" / "host.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    b = report([run.path]).benchmark("b")
    assert b is not None and b.energy is not None
    assert b.energy.mean_w == {"1": 200.0} and b.energy.median_w == {"1": 200.0}
    assert b.energy.kj == pytest.approx(200.0 * 20 / 1000, rel=0.01)
    assert b.energy.items_per_joule == pytest.approx(50.0 / 200.0)


@pytest.mark.parametrize("separators", [(", ", ": "), (",", ":")])
def test_milabench_failure_cause_from_its_stdout(
    tmp_path: Path, separators: tuple[str, str]
) -> None:
    events = [
        {"event": "config", "data": {"name": "b", "tag": ["b", "D0"], "device": "0", "weight": 1}},
        {"event": "start", "data": {"time": 1.0}},
        {"event": "line", "data": "Traceback (most recent call last):\n", "pipe": "stderr"},
        {
            "event": "line",
            "data": "ModuleNotFoundError: No module named 'timm'\n",
            "pipe": "stderr",
        },
        {"event": "end", "data": {"time": 2.0, "return_code": 1}},
    ]
    folder = tmp_path / "mb"
    folder.mkdir()
    (folder / "b.D0.data").write_text(
        "".join(json.dumps(e, separators=separators) + "\n" for e in events)
    )
    b = report([folder]).benchmark("b")
    assert b is not None and b.failures == ["import: ModuleNotFoundError: No module named 'timm'"]


def test_compare_flags_a_partial_benchmark(tmp_path: Path) -> None:
    base = report([make_run(tmp_path / "a", "base").path])
    partial = _report(tmp_path / "b")  # matmul: 1 of its 2 jobs failed
    cmp = compare(base, [partial])
    row = next(r for r in cmp.rows if r.name == "matmul")
    assert row.states == ["partial"] and not math.isnan(row.ratios[0])
    assert re.search(
        r"\| matmul \| items/s \| [\d.]+ \| [\d.]+ \(partial\) \|", comparison_to_markdown(cmp)
    )
