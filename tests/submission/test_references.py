"""Reference files with tolerances: loading, judging a report, `report --reference`, `verify --reference`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from bundles import reason, status, verify
from typer.testing import CliRunner

from orchestrator import references, report
from orchestrator.cli.main import app
from orchestrator.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
H100 = ROOT / "references" / "h100-milabench-report.yaml"


def write_reference(path: Path, entries: dict[str, dict[str, object]], **top: object) -> Path:
    path.write_text(yaml.safe_dump({"system": "test box", **top, "reference": entries}))
    return path


def entry(value: float, lower: float | None = -0.1, upper: float | None = 0.1) -> dict[str, object]:
    return {"value": value, "lower": lower, "upper": upper, "unit": "TFLOPS"}


def perf(run: Path, name: str) -> float:
    bench = report.report([run]).benchmark(name)
    assert bench is not None
    return bench.perf


def test_shipped_h100_reference() -> None:
    ref = references.load(H100)
    assert ref.metric == "perf" and "H100" in ref.system
    assert len(ref.reference) == 41  # Table 4's 26 rows + Table 5's 15 not in Table 4
    expected = {
        "reformer": (103.7, "sentences/s", "Table 4"),
        "llm-lora-ddp-nodes": (56200, "tokens/s", "Table 4 (56.2K)"),
        "resnet50": (1700, "images/s", "Table 4 (1.7K)"),
        "ppo": (38_800_000, "steps/s", "Table 4 (38.8M)"),
        "recursiongfn": (10900, "graph nodes/s", "Table 4 (10.9K)"),
        "bf16": (784, "TFLOPS", "Table 5"),
        "fp32": (52, "TFLOPS", "Table 5"),
        "bert-fp32": (111, "sentences/s", "Table 5"),
        "rlhf-gpus": (16000, "tokens/s", "Table 5 (16K, truncated)"),
    }
    for name, (value, unit, source) in expected.items():
        got = ref.reference[name]
        assert (got.value, got.unit, got.source) == (value, unit, source), name
    assert all(v.lower == -0.10 and v.upper is None for v in ref.reference.values())
    assert ref.score is not None and ref.score.value == 2263.7


def test_bounds_and_verdicts(recorded_run: Path, tmp_path: Path) -> None:
    fp32 = perf(recorded_run, "fp32")
    path = write_reference(
        tmp_path / "r.yaml",
        {
            "fp32": entry(fp32 * 1.05),
            "fp32-small": entry(1e6, lower=None, upper=None),
        },
        score={"value": 1e9, "lower": -0.5, "upper": None, "unit": "score"},
    )
    ref = references.load(path)
    judged = {j.name: j for j in references.check(ref, report.report([recorded_run]))}
    assert judged["fp32"].verdict == "within"
    assert judged["fp32"].ratio == pytest.approx(1 / 1.05)
    assert judged["fp32-small"].verdict == "within"  # unbounded both ways
    assert judged["score"].verdict == "below"
    assert ref.reference["fp32"].low == pytest.approx(fp32 * 1.05 * 0.9)
    assert math.isinf(ref.reference["fp32-small"].high)

    slow = references.load(write_reference(tmp_path / "s.yaml", {"fp32": entry(fp32 * 2)}))
    (only,) = references.check(slow, report.report([recorded_run]))
    assert only.verdict == "below" and not only.within
    fast = references.load(write_reference(tmp_path / "f.yaml", {"fp32": entry(fp32 / 2)}))
    assert references.check(fast, report.report([recorded_run]))[0].verdict == "above"


def test_shipped_reference_on_a_partial_run(recorded_run: Path) -> None:
    """The H100 reference names ~40 benchmarks; a run with two of them is judged on those two."""
    judged = {
        j.name: j for j in references.check(references.load(H100), report.report([recorded_run]))
    }
    assert judged["bert-fp32"].verdict == "not run" and math.isnan(judged["bert-fp32"].measured)
    assert judged["fp32"].verdict in ("within", "below", "above")
    assert judged["score"].verdict == "not comparable"
    assert all(j.name == "fp32" for j in references.outside(judged.values()))


def test_absent_benchmarks_are_not_run(recorded_run: Path, tmp_path: Path) -> None:
    ref = references.load(write_reference(tmp_path / "r.yaml", {"other": entry(1.0)}))
    (judged,) = references.check(ref, report.report([recorded_run]))
    assert judged.verdict == "not run" and math.isnan(judged.measured)
    assert references.outside([judged]) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "system: x\nreference:\n  a: {value: 1, lower: -0.1, upper: 0.1}\n",
            "reference.a.unit: missing required key",
        ),
        (
            "system: x\nreference:\n  a: {value: 1, lower: 0.1, upper: 0.1, unit: s}\n",
            ":3: reference.a.lower: Input should be less than or equal to 0",
        ),
        (
            "system: x\nreference:\n  a: {value: 0, lower: null, upper: null, unit: s}\n",
            "reference.a.value: Input should be greater than 0",
        ),
        ("system: x\ncolour: red\nreference: {}\n", ":2: colour: unknown key"),
        (
            "system: x\nmetric: speed\nreference: {}\n",
            "metric: Input should be 'perf', 'throughput' or 'score'",
        ),
        ("system: [x\n", "invalid YAML"),
        ("- a list\n", "a reference file must be a mapping"),
    ],
)
def test_bad_reference_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=None) as caught:
        references.load(path)
    assert message in str(caught.value)


def test_report_with_a_reference(recorded_run: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    fp32 = perf(recorded_run, "fp32")
    good = write_reference(tmp_path / "good.yaml", {"fp32": entry(fp32)})
    result = runner.invoke(app, ["report", str(recorded_run), "--reference", str(good)])
    assert result.exit_code == 0, result.output
    assert (
        "Reference: test box (perf)" in result.output and "1 of 1 within tolerance" in result.output
    )

    result = runner.invoke(
        app, ["report", str(recorded_run), "--reference", str(good), "-f", "json"]
    )
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["reference"]["benchmarks"][0]["verdict"] == "within"
    assert data["reference"]["benchmarks"][0]["high"] == pytest.approx(fp32 * 1.1)

    bad = write_reference(tmp_path / "bad.yaml", {"fp32": entry(fp32 * 3)})
    result = runner.invoke(app, ["report", str(recorded_run), "--reference", str(bad), "-f", "md"])
    assert result.exit_code == 1
    assert "| fp32 |" in result.stdout and "below" in result.stdout
    assert "error: 1 of 1 outside the tolerance of 'test box': fp32 (below)" in result.output

    # the shipped H100 reference on a run with a few of its benchmarks: judged on those
    result = runner.invoke(app, ["report", str(recorded_run), "--reference", str(H100)])
    assert result.exit_code == 1 and "not run" in result.stdout, result.output
    assert "fp32 (below)" in result.output and "bert-fp16 (" not in result.output
    result = runner.invoke(
        app, ["report", str(recorded_run), "--reference", str(good), "-f", "csv"]
    )
    assert result.exit_code == 2 and "--reference: use --format table, json or md" in result.output


def test_verify_with_a_reference(bundle: Path, recorded_run: Path, tmp_path: Path) -> None:
    fp32 = perf(recorded_run, "fp32")
    within = references.load(write_reference(tmp_path / "w.yaml", {"fp32": entry(fp32)}))
    result = verify(bundle, tmp_path / "a", reference=within)
    assert status(result)["reference"] == "PASS" and result.passed
    below = references.load(write_reference(tmp_path / "b.yaml", {"fp32": entry(fp32 * 3)}))
    result = verify(bundle, tmp_path / "b", reference=below)
    assert status(result)["reference"] == "FAIL"
    assert reason(result, "reference").startswith("outside the tolerance of 'test box': fp32 below")
    # the shipped reference names benchmarks this bundle's suite lacks: judged on what ran
    result = verify(bundle, tmp_path / "c", reference=references.load(H100))
    assert "bert-fp16" not in reason(result, "reference")
