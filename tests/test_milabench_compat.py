"""Milabench run folders (and zips of them) give the numbers Milabench's own report gives.

The fixture ``data/milabench/8xGPU.2025-01-15`` is written in Milabench's format: one
``<bench>.<tag>.data`` file per job, each line ``{"event", "data", "pipe"}``. The expected
values below are computed here, independently, following Milabench's code
(``milabench/summary.py`` and ``milabench/report.py``):

* a job succeeds when it has a ``stop`` event (early stop), or ``end.return_code == 0``
  with at least one ``train`` rate and no NaN loss; a file without ``config`` or without
  exactly one ``start`` and one ``end`` is ignored (not counted at all);
* ``trim(xs)`` = ``sorted(xs)[1:-1]`` when ``len(xs) >= 5``; the benchmark's rates are
  pooled over its jobs (failed ones included): ``perf = mean(trim)``, ``std = pstdev(trim)``,
  ``sem = std / sqrt(len(trim))``;
* per-GPU jobs (config ``device``): ``throughput = Σ_device mean(trim(rates of device))``,
  else ``throughput = perf``; ``score = throughput * (1 - fail / n)``;
* ``peak_memory = max_device max(trim(used memory))``, ignoring samples whose used
  memory is 1 or whose load is 0, and samples of other devices than the job's;
* global score = ``exp(Σ w_i ln(1 + score_i) / Σ w_i)`` over enabled benchmarks (NaN → 0);
  failure rate = ``Σ fail / Σ n`` over every benchmark that ran, PASS at ≤ 1 %.
"""

from __future__ import annotations

import json
import math
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from orchestrator.metrics import MetricsParser
from orchestrator.plan import Job, PlanKind
from orchestrator.report import BenchmarkSpec, BenchmarkSummary, Report, load, report, to_json
from orchestrator.results import RunDir, job_status

FOLDER = Path(__file__).parent / "data" / "milabench" / "8xGPU.2025-01-15"

RESNET = {
    "0": [300.5, 310.2, 305.1, 290.7, 312.9, 308.4, 301.3, 250.0],  # early stop, rc -15
    "1": [298.0, 303.6, 307.7, 295.2, 320.1, 299.9, 304.4],  # rc 0
}
BERT = {"0": [120.0, 121.5, 119.8, 122.3, 118.9, 121.0], "1": [117.0, 118.2, 119.1]}  # D1: rc 1
LLAMA = [1500.0, 1510.0, 1490.0, 1505.0, 1495.0]  # one njobs job, NaN loss
DLRM = [50000.0, 52000.0, 51000.0, 49000.0]  # fewer than 5 samples
CONVNEXT = [80.0, 81.0, 79.0, 82.0, 80.5]  # enabled: false, weight 3
WEIGHTS = {"resnet50": 2.0, "bert": 1.0, "llama": 1.0, "dlrm": 1.0}

# Printed by a line-for-line transcription of Milabench's make_summary / make_dataframe /
# _score, run with pandas on this folder (with and without a config that adds ``whisper``).
MILABENCH_SCORE = 295.01873669882644
MILABENCH_SCORE_WITH_WHISPER = 114.34258311777154


def trim(xs: list[float]) -> list[float]:
    xs = sorted(xs)
    return xs[1:-1] if len(xs) >= 5 else xs


def mean(xs: list[float]) -> float:
    return float(np.mean(trim(xs)))


def expected_scores() -> dict[str, float]:
    return {
        "resnet50": mean(RESNET["0"]) + mean(RESNET["1"]),
        "bert": (mean(BERT["0"]) + mean(BERT["1"])) * (1 - 1 / 2),
        "llama": mean(LLAMA) * (1 - 1 / 1),
        "dlrm": mean(DLRM),
    }


def row(rep: Report, name: str) -> BenchmarkSummary:
    bench = rep.benchmark(name)
    assert bench is not None, name
    return bench


@pytest.fixture(scope="module")
def rep() -> Report:
    return report([FOLDER])


def test_rows(rep: Report) -> None:
    assert [b.name for b in rep.benchmarks] == ["llama", "bert", "dlrm", "convnext", "resnet50"]
    scores = expected_scores()
    for name, rates, fail, n in [
        ("resnet50", RESNET["0"] + RESNET["1"], 0, 2),
        ("bert", BERT["0"] + BERT["1"], 1, 2),
        ("llama", LLAMA, 1, 1),
        ("dlrm", DLRM, 0, 1),
        ("convnext", CONVNEXT, 0, 1),
    ]:
        b = row(rep, name)
        kept = trim(rates)
        assert (b.n, b.fail) == (n, fail), name
        assert b.perf == pytest.approx(np.mean(kept), rel=1e-12)
        assert b.std == pytest.approx(np.std(kept), rel=1e-12)
        assert b.sem == pytest.approx(np.std(kept) / math.sqrt(len(kept)), rel=1e-12)
        assert b.std_pct == pytest.approx(np.std(kept) / np.mean(kept), rel=1e-12)
        assert b.sem_pct == pytest.approx(
            np.std(kept) / math.sqrt(len(kept)) / np.mean(kept), rel=1e-12
        )
        assert (b.min, b.q1, b.median, b.q3, b.max) == pytest.approx(
            list(np.percentile(kept, [0, 25, 50, 75, 100])), rel=1e-12
        )
        if name in scores:
            assert b.score == pytest.approx(scores[name], rel=1e-12), name
            assert b.weight == WEIGHTS[name] and b.enabled
    assert row(rep, "resnet50").per_device == pytest.approx({d: mean(r) for d, r in RESNET.items()})
    assert row(rep, "llama").per_device == {} and row(rep, "llama").nan == 1
    assert row(rep, "llama").throughput == pytest.approx(1500.0)
    assert row(rep, "llama").ngpu == 2 and row(rep, "resnet50").ngpu == 1
    convnext = row(rep, "convnext")
    assert (convnext.weight, convnext.enabled, convnext.score) == (
        3.0,
        False,
        pytest.approx(mean(CONVNEXT)),
    )


def test_peak_memory(rep: Report) -> None:
    # D0 keeps 20000, 30000, 30500, 31000 (1 MiB, load-0 and device-1 samples ignored; < 5 kept)
    # D1 keeps 28000, 32000
    assert row(rep, "resnet50").peak_memory == 32000.0
    assert math.isnan(row(rep, "bert").peak_memory)


def test_global_score_and_failure_rate(rep: Report) -> None:
    scores = expected_scores()
    total = sum(WEIGHTS.values())
    expected = math.exp(sum(WEIGHTS[k] * math.log(1 + s) for k, s in scores.items()) / total)
    assert rep.score == pytest.approx(expected, rel=1e-12)
    assert rep.score == pytest.approx(MILABENCH_SCORE, rel=1e-12)
    assert rep.total_weight == total
    assert rep.failure_rate == pytest.approx(2 / 7) and not rep.passed


def test_ignored_files_are_reported(rep: Report) -> None:
    assert rep.benchmark("whisper") is None
    assert [n.split(": ", 1)[1] for n in rep.notes] == [
        "ignored, not a run (no config event with a name)",
        "ignored, did not finish cleanly (1 start and 0 end events)",
    ]
    assert rep.notes[1].startswith(str(FOLDER / "whisper.D0.data"))


def test_missing_enabled_benchmark_counts_as_zero(rep: Report) -> None:
    specs = [BenchmarkSpec(k, w) for k, w in WEIGHTS.items()] + [
        BenchmarkSpec("whisper", 1.0),
        BenchmarkSpec("convnext", 3.0, enabled=False),
    ]
    with_missing = report([FOLDER], expected=specs)
    whisper = row(with_missing, "whisper")
    assert whisper.status == "missing" and whisper.n == 0 and math.isnan(whisper.score)
    scores = expected_scores()
    expected = math.exp(
        sum(WEIGHTS[k] * math.log(1 + s) for k, s in scores.items()) / (sum(WEIGHTS.values()) + 1)
    )
    assert with_missing.score == pytest.approx(expected, rel=1e-12)
    assert with_missing.score == pytest.approx(MILABENCH_SCORE_WITH_WHISPER, rel=1e-12)
    assert with_missing.score < rep.score
    assert (
        with_missing.failure_rate == rep.failure_rate
    )  # Milabench: a missing bench adds no n/fail


def test_zip_gives_the_same_report(tmp_path: Path, rep: Report) -> None:
    for arcroot in ("", "results/8xGPU.2025-01-15/"):
        archive = tmp_path / f"run{len(arcroot)}.zip"
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for f in sorted(FOLDER.iterdir()):
                zf.write(f, arcroot + f.name)
        zipped = report([archive])
        assert {k: v for k, v in to_json(zipped).items() if k not in ("runs", "notes")} == {
            k: v for k, v in to_json(rep).items() if k not in ("runs", "notes")
        }
        assert len(zipped.notes) == 2


def test_merging_a_folder_with_its_copy_doubles_the_jobs(tmp_path: Path, rep: Report) -> None:
    shutil.copytree(FOLDER, tmp_path / "again")
    merged = report([FOLDER, tmp_path / "again"])
    assert row(merged, "resnet50").n == 4 and len(merged.runs) == 2
    assert row(merged, "dlrm").perf == pytest.approx(mean(DLRM + DLRM))


def test_milabench_benchmark_output_scored_unchanged(tmp_path: Path) -> None:
    """The voir lines a Milabench benchmark prints, fed through the parser into an mbctl
    run, score like the same job in a Milabench folder."""
    source = FOLDER / "resnet50.D0.data"
    alone = tmp_path / "milabench"
    alone.mkdir()
    shutil.copy(source, alone)
    run = RunDir.create(tmp_path / "runs", {}, run_id="r")
    job = Job(
        id="resnet50.D0",
        bench="resnet50",
        tag="D0",
        definition="resnet50",
        vendor="cuda",
        devices=("0",),
        plan=PlanKind.PER_GPU,
        weight=2.0,
        max_duration=600,
    )
    parser = MetricsParser()
    with run.recorder(job) as rec:
        for line in source.read_text().splitlines():
            if json.loads(line)["event"] in ("config", "start", "end"):
                continue  # written by Milabench's runner, not printed by the benchmark
            ev = parser.feed(line)
            if ev is None:
                rec.log(line)
            else:
                rec.event(ev)
        # voir stops a benchmark by killing it after its measurements: the runner's verdict
        rec.finish(
            -15,
            *job_status(
                "failed", -15, "killed by SIGTERM", early_stop=True, train_rates=60, nan_loss=False
            ),
        )
    assert parser.warnings == 0
    ours, theirs = row(report([run.path]), "resnet50"), row(report([alone]), "resnet50")
    for field in (
        "n",
        "fail",
        "perf",
        "std",
        "sem",
        "q1",
        "median",
        "q3",
        "peak_memory",
        "throughput",
        "score",
    ):
        assert getattr(ours, field) == getattr(theirs, field), field
    assert ours.peak_memory == 31000.0


def test_loaded_jobs(rep: Report) -> None:
    (run,) = load([FOLDER])
    jobs = {j.job_id: j for j in run.jobs}
    assert sorted(jobs) == [
        "bert.D0",
        "bert.D1",
        "convnext.D0",
        "dlrm.0",
        "llama.0",
        "resnet50.D0",
        "resnet50.D1",
    ]
    assert jobs["resnet50.D0"].early_stop and jobs["resnet50.D0"].return_code == -15
    assert jobs["resnet50.D0"].success and not jobs["bert.D1"].success
    assert (
        jobs["resnet50.D0"].rate_times[0] is not None and jobs["resnet50.D1"].rate_times[0] is None
    )
    series = {s.job: s for s in rep.samples["resnet50"]}
    assert series["resnet50.D0"].times == [float(i) for i in range(8)]
    assert series["resnet50.D1"].times is None and series["resnet50.D1"].values == RESNET["1"]


def test_rescore_with_a_suite_s_weights(tmp_path: Path) -> None:
    """`report --weights SUITE` (Milabench's `report --config`): the suite's weights and enabled
    set score the run; its benchmarks the run lacks count 0, the run's others do not count."""
    from typer.testing import CliRunner

    from orchestrator.cli.main import app

    suite = tmp_path / "mini.yaml"
    suite.write_text(
        "name: mini\n"
        "benchmarks:\n"
        "  resnet50: {definition: matmul, weight: 2.0}\n"
        "  whisper: {definition: matmul, weight: 1.0}\n"
    )
    result = CliRunner().invoke(app, ["report", str(FOLDER), "--weights", str(suite), "-f", "json"])
    assert result.exit_code == 1, result.output  # the folder's failure rate is above 1 %
    rows = {b["name"]: b for b in json.loads(result.stdout)["benchmarks"]}
    assert (rows["resnet50"]["weight"], rows["resnet50"]["enabled"]) == (2.0, True)
    assert rows["whisper"]["status"] == "missing"
    assert (rows["bert"]["weight"], rows["bert"]["enabled"]) == (0.0, False)
    resnet = rows["resnet50"]["score"]
    assert json.loads(result.stdout)["score"] == pytest.approx(math.exp(2 * math.log1p(resnet) / 3))
