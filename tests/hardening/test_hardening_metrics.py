"""Metrics that survive real programs: progress bars, voir's smuggled lines, absurd rates, one status."""

from __future__ import annotations

import io
import json
import math
import textwrap
from pathlib import Path

import pytest

from orchestrator import workflow
from orchestrator.backends.base import split_lines
from orchestrator.metrics import MetricsParser
from orchestrator.results import job_status, read_events

smuggle = pytest.importorskip("voir.smuggle", reason="voir is in the test extra")


def voir_line(event: str, data: object) -> str:
    return json.dumps({"event": event, "data": data, "pipe": "data"})


VOIR_LINES = [
    voir_line("start", {"command": ["python", "main.py"], "time": 1.0}),
    *(
        voir_line("data", {"rate": 10.0 + i, "units": "items/s", "task": "train", "time": 2.0 + i})
        for i in range(5)
    ),
    voir_line("data", {"loss": 0.5, "task": "train", "time": 8.0}),
    voir_line("data", {"gpudata": {"0": {"memory": [1.0, 2.0], "load": 0.5}}, "time": 9.0}),
    voir_line("data", {"task": "early_stop", "progress": [5, 5], "time": 9.5}),
    voir_line("stop", {"time": 10.0}),
]


def smuggled_stream() -> str:
    """What a benchmark under voir's overseer writes: data smuggled between ordinary output."""
    out = io.StringIO()
    writer = smuggle.SmuggleWriter(out)
    for i, line in enumerate(VOIR_LINES):
        out.write(f"ordinary output {i}\n" if i % 2 else "progress ")
        writer.write(line + "\n")  # voir's overseer writes each data line in one call
    out.write("done\n")
    return out.getvalue()


def events_of(parser: MetricsParser, lines: list[str]) -> tuple[list[dict[str, object]], list[str]]:
    events, logged = [], []
    for line in lines:
        found, rest = parser.parse(line)
        events += found
        if rest is not None:
            logged.append(rest)
    return events, logged


@pytest.mark.parametrize("max_line", [1 << 20, 97, 7])
def test_voir_smuggled_stream_scores_like_plain_json_lines(max_line: int) -> None:
    raw = smuggled_stream().encode()
    assert b'"rate"' not in raw  # the data really is hidden in escape sequences
    chunks = [raw[i : i + 13] for i in range(0, len(raw), 13)]
    # a small max_line cuts the sequences anywhere, as a runaway line would be cut
    lines = list(split_lines(chunks, max_line=max_line))
    smuggled, logged = events_of(MetricsParser(clock=lambda: 0.0), lines)
    plain, _ = events_of(MetricsParser(clock=lambda: 0.0), VOIR_LINES)
    assert smuggled == plain
    assert [e["value"] for e in smuggled if e["event"] == "rate"] == [10.0, 11.0, 12.0, 13.0, 14.0]
    assert (
        "".join(logged)
        == "".join(f"progress ordinary output {i}" for i in range(1, 10, 2)) + "done"
    )
    if max_line > len(raw):
        assert logged[0] == "progress ordinary output 1" and logged[-1] == "done"


def test_benchmate_setupvoir_bare_data_lines() -> None:
    """benchmate's setupvoir prints bare data objects through a SmuggleWriter (two writes per
    print: the text, then the newline), with ``t`` as their time."""
    out = io.StringIO()
    writer = smuggle.SmuggleWriter(out)
    print("loading model", file=out)
    for i in range(3):
        print(
            json.dumps({"task": "train", "rate": 2.5 * i, "units": "Tflops", "t": 5.0 + i}),
            file=writer,
        )
    print(
        json.dumps({"task": "main", "gpudata": {"0": {"memory": [1, 2], "load": 0.1}}}), file=writer
    )
    print(json.dumps(["not", "an", "object"]), file=writer)
    parser = MetricsParser(clock=lambda: 0.0)
    events, logged = events_of(parser, list(split_lines([out.getvalue().encode()])))
    assert [(e["event"], e.get("value"), e["t"]) for e in events] == [
        ("rate", 0.0, 5.0),
        ("rate", 2.5, 6.0),
        ("rate", 5.0, 7.0),
        ("gpu", None, 0.0),
    ]
    assert logged == ["loading model"] and parser.warnings == 1


def test_protocol_lines_after_carriage_return_noise() -> None:
    parser = MetricsParser(clock=lambda: 0.0)
    rate = json.dumps(
        {"mbctl": 1, "event": "rate", "value": 3.5, "units": "items/s", "task": "train"}
    )
    for noise in ("\r 45%|####      | 45/100", "\r\x1b[K 10%|#", "epoch 1\r"):
        events, rest = parser.parse(noise + rate)
        assert [e["value"] for e in events] == [3.5] and rest is None
    assert parser.parse("50%|##### \r and no protocol") == ([], "50%|##### \r and no protocol")
    assert parser.warnings == 0


def test_absurd_rates_are_rejected_and_counted() -> None:
    parser = MetricsParser()
    for value in ("1e308", "-1", "NaN", "Infinity", '"fast"'):
        line = f'{{"mbctl": 1, "event": "rate", "value": {value}, "units": "x", "task": "train"}}'
        assert parser.parse(line) == ([], line)
    assert parser.parse(voir_line("data", {"rate": 1e300, "units": "x", "task": "train"}))[0] == []
    assert parser.rejected_rates == 6 and parser.warnings == 6


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        (("ok", 0, None), {"early_stop": False, "train_rates": 3, "nan_loss": False}, ("ok", None)),
        (
            ("failed", 3, "exited with code 3"),
            {"early_stop": True, "train_rates": 3, "nan_loss": False},
            ("ok", None),
        ),
        (
            ("ok", 0, None),
            {"early_stop": False, "train_rates": 0, "nan_loss": False},
            ("failed", "exited 0 without reporting any training rate"),
        ),
        (
            ("ok", 0, None),
            {"early_stop": False, "train_rates": 2, "nan_loss": True},
            ("failed", "loss became NaN"),
        ),
        (
            ("failed", 3, None),
            {"early_stop": False, "train_rates": 2, "nan_loss": False},
            ("failed", "exited with code 3"),
        ),
        (
            ("timeout", None, "ran past"),
            {"early_stop": True, "train_rates": 2, "nan_loss": False},
            ("timeout", "ran past"),
        ),
        (
            ("failed", None, "disk full"),
            {"early_stop": True, "train_rates": 2, "nan_loss": False},
            ("failed", "disk full"),
        ),
        (
            ("ok", 0, None),
            {"early_stop": False, "train_rates": 0, "nan_loss": False, "measuring": False},
            ("ok", None),
        ),
    ],
)
def test_one_status_rule(
    args: tuple[str, int | None, str | None],
    kwargs: dict[str, bool | int],
    expected: tuple[str, str | None],
) -> None:
    assert job_status(*args, **kwargs) == expected  # type: ignore[arg-type]


SCRIPTS = {
    # a tqdm-style bar on stderr, redrawn with \r, while the metrics go to stdout
    "bar": """
        import json, sys, time
        print('{"mbctl": 1, "event": "rate", "value": 1e308, "units": "items/s", "task": "train"}')
        for i in range(8):
            sys.stderr.write(f"\\r{i * 12}%|{'#' * i}")
            sys.stderr.flush()
            print(json.dumps({"mbctl": 1, "event": "rate", "value": 50.0, "units": "items/s", "task": "train"}), flush=True)
        sys.stderr.write("\\n")
    """,
    # Milabench's code under voir: smuggled data, stopped early, killed with a non-zero code
    "voir": """
        import json, sys
        from voir.smuggle import SmuggleWriter
        out = SmuggleWriter(sys.stdout)
        def data(**d):
            out.write(json.dumps({"event": "data", "data": d, "pipe": "data"}) + "\\n")
        for i in range(6):
            print(f"step {i}")
            data(rate=20.0, units="items/s", task="train")
        data(task="early_stop", progress=[6, 6])
        out.write(json.dumps({"event": "stop", "data": None, "pipe": "data"}) + "\\n")
        sys.stdout.flush()
        raise SystemExit(3)
    """,
}


@pytest.fixture
def bench_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "benchmarks"
    for name, body in SCRIPTS.items():
        (root / name).mkdir(parents=True)
        (root / name / "main.py").write_text(textwrap.dedent(body))
    (root / "benchkit").mkdir()
    (root / "suites").mkdir()
    suite = {
        "name": "scripted",
        "defaults": {"max_duration": 60},
        "benchmarks": {n: {} for n in SCRIPTS},
    }
    (root / "suites" / "scripted.yaml").write_text(json.dumps(suite))
    monkeypatch.setenv("MBCTL_BENCHMARKS", str(root))
    return root


def test_real_jobs_keep_every_rate_and_agree_on_status(bench_root: Path, tmp_path: Path) -> None:
    from orchestrator import report

    req = workflow.Request(
        suite="scripted",
        vendor="cpu",
        backend="local",
        results=tmp_path / "runs",
        data_dir=tmp_path / "d",
    )
    result = workflow.run(req, workflow.prepare(req))
    run = result.run
    bar = read_events(run.events_path("bar.0"))
    assert [e["value"] for e in bar if e["event"] == "rate"] == [50.0] * 8
    assert (bar[-1]["rejected_rates"], bar[-1]["warnings"]) == (1, 1)
    assert "84%|#######" in run.stderr_path("bar.0").read_text()
    assert '"value": 1e308' in run.log_path("bar.0").read_text()  # kept as output, not scored
    voir = read_events(run.events_path("voir.0"))
    assert [e["value"] for e in voir if e["event"] == "rate"] == [20.0] * 6
    assert run.log_path("voir.0").read_text().splitlines() == [f"step {i}" for i in range(6)]
    # the same status in the CLI (outcome), the exit event and the report
    states = {s.job.id: (s.status, s.reason) for s in result.outcome.states}
    assert states == {"bar.0": ("ok", None), "voir.0": ("ok", None)}
    assert voir[-1]["status"] == "ok" and voir[-1]["return_code"] == 3
    scored = report.report([run.path])
    assert {b.name: b.fail for b in scored.benchmarks} == {"bar": 0, "voir": 0}
    assert math.isclose(scored.benchmarks[0].perf, 50.0)
