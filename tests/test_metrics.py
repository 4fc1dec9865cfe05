"""The metrics protocol parser: normalised events, warnings, voir lines, garbage, a replayed log."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

from orchestrator.metrics import MAX_WARNING_MESSAGES, MetricsParser

DATA = Path(__file__).parent / "data"
NOW = 1_700_000_000.0


def parser() -> MetricsParser:
    return MetricsParser(clock=lambda: NOW)


def tagged(event: str, **fields: Any) -> str:
    return json.dumps({"mbctl": 1, "event": event, **fields})


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            tagged("rate", t=1.5, value=1234.5, units="items/s", task="train"),
            {"event": "rate", "t": 1.5, "value": 1234.5, "units": "items/s", "task": "train"},
        ),
        (
            tagged("rate", t=2, value=0, units="TFLOPS", task="infer", step=3),
            {"event": "rate", "t": 2, "value": 0, "units": "TFLOPS", "task": "infer", "step": 3},
        ),
        (
            tagged("start", t=1.0, bench="b", argv=["x"], versions={"torch": "2.5"}, pid=7),
            {
                "event": "start",
                "t": 1.0,
                "bench": "b",
                "argv": ["x"],
                "versions": {"torch": "2.5"},
                "pid": 7,
            },
        ),
        (
            tagged(
                "gpu",
                t=1.0,
                devices={
                    "0": {"memory": [1.0, 2.0], "load": 0.5, "temperature": 40, "power": 99.5}
                },
            ),
            {
                "event": "gpu",
                "t": 1.0,
                "devices": {
                    "0": {"memory": [1.0, 2.0], "load": 0.5, "temperature": 40, "power": 99.5}
                },
            },
        ),
        (
            tagged("progress", t=1.0, step=3, total=60),
            {"event": "progress", "t": 1.0, "step": 3, "total": 60},
        ),
        (
            tagged("end", t=1.0, status="early_stop"),
            {"event": "end", "t": 1.0, "status": "early_stop"},
        ),
        (
            tagged("error", t=1.0, message="boom", type="RuntimeError"),
            {"event": "error", "t": 1.0, "message": "boom", "type": "RuntimeError"},
        ),
        (
            tagged("meta", t=1.0, kind="batch", data={"size": 64}),
            {"event": "meta", "t": 1.0, "kind": "batch", "data": {"size": 64}},
        ),
    ],
)
def test_protocol_events_are_stored_without_the_tag(line: str, expected: dict[str, Any]) -> None:
    p = parser()
    assert p.feed(line + "\n") == expected
    assert (p.events, p.warnings) == (1, 0)


def test_missing_time_is_the_time_the_line_was_read_and_comes_second() -> None:
    ev = parser().feed(tagged("end", status="done"))
    assert ev == {"event": "end", "t": NOW, "status": "done"}
    assert list(ev) == ["event", "t", "status"]


def test_nan_loss_is_an_event_and_extra_fields_are_kept() -> None:
    ev = parser().feed(
        '{"mbctl": 1, "event": "loss", "t": 3.0, "value": NaN, "task": "train", "epoch": 2}'
    )
    assert ev is not None and math.isnan(ev["value"])
    assert ev["epoch"] == 2


def test_whitespace_around_the_tag_is_accepted() -> None:
    ev = parser().feed('   {  "mbctl" : 1, "event": "end", "t": 1.0, "status": "done"}  \r\n')
    assert ev == {"event": "end", "t": 1.0, "status": "done"}


@pytest.mark.parametrize(
    "line",
    [
        "hello world",
        "",
        "\n",
        "{'loss': 2.1}",
        '{"loss": 2.2, "step": 10}',
        '[{"mbctl": 1}]',
        '{"event": "rate", "mbctl": 1, "value": 1}',
        '{"event": "data"',
        '{"event": "line", "data": "text\\n", "pipe": "stdout"}',
        "  10%|#         | 1/10 [00:01<00:09]",
        '"mbctl": 1',
    ],
)
def test_untagged_lines_go_to_the_log_without_warning(line: str) -> None:
    p = parser()
    assert p.feed(line) is None
    assert p.warnings == 0


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"mbctl": 1, "event": "rate", "value": 12', "not valid JSON"),
        ('{"mbctl": 1, "event": "end", "status": "done"} trailing', "extra data"),
        ('{"mbctl": 2, "event": "end", "status": "done"}', "version"),
        ('{"mbctl": true, "event": "end", "status": "done"}', "version"),
        ('{"mbctl": "1", "event": "end", "status": "done"}', "version"),
        ('{"mbctl": 1, "event": "checkpoint"}', "unknown event"),
        ('{"mbctl": 1, "event": "exit", "status": "ok"}', "unknown event"),
        ('{"mbctl": 1, "event": 3}', "unknown event"),
        ('{"mbctl": 1}', "unknown event"),
        (tagged("rate", value="fast", units="items/s", task="train"), "rate.value"),
        (tagged("rate", value=True, units="items/s", task="train"), "rate.value"),
        (tagged("rate", value=-1.0, units="items/s", task="train"), "rate.value"),
        (
            '{"mbctl": 1, "event": "rate", "value": NaN, "units": "x", "task": "train"}',
            "rate.value",
        ),
        (
            '{"mbctl": 1, "event": "rate", "value": Infinity, "units": "x", "task": "train"}',
            "rate.value",
        ),
        (tagged("rate", value=1.0, units=3, task="train"), "rate.units"),
        (tagged("rate", value=1.0, units="x", task="warmup"), "rate.task"),
        (tagged("rate", value=1.0, units="x", task="train", step=1.5), "rate.step"),
        (tagged("loss", value="nan"), "loss.value"),
        (tagged("gpu", devices=[1, 2]), "gpu.devices"),
        (tagged("gpu", devices={"0": {"memory": [1.0]}}), "gpu.devices"),
        (tagged("gpu", devices={"0": {"memory": [1.0, 2.0], "load": "high"}}), "gpu.devices"),
        (tagged("progress", step=1), "progress"),
        (tagged("end", status="crashed"), "end.status"),
        (tagged("error", message=None), "error.message"),
        (tagged("start", argv="main.py"), "start.argv"),
        (tagged("start", versions={"torch": 2}), "start.versions"),
        (tagged("start", pid="7"), "start.pid"),
        (tagged("meta", data={}), "meta.kind"),
        ('{"mbctl": 1, "event": "end", "t": NaN, "status": "done"}', "t must be"),
        (tagged("end", t="now", status="done"), "t must be"),
    ],
)
def test_malformed_tagged_lines_are_warnings(line: str, message: str) -> None:
    p = parser()
    assert p.feed(line) is None
    assert p.warnings == 1 and p.events == 0
    assert message in p.messages[0] and p.messages[0].startswith("line 1: ")


def test_warning_messages_are_capped_but_counted() -> None:
    p = parser()
    for _ in range(MAX_WARNING_MESSAGES + 30):
        p.feed('{"mbctl": 1, "event": "nope"}')
    assert p.warnings == MAX_WARNING_MESSAGES + 30
    assert len(p.messages) == MAX_WARNING_MESSAGES


def test_huge_and_deeply_nested_lines_are_warnings() -> None:
    p = MetricsParser(max_line_length=1000)
    assert (
        p.feed('{"mbctl": 1, "event": "meta", "kind": "x", "data": "' + "a" * 2000 + '"}') is None
    )
    deep = (
        '{"mbctl": 1, "event": "meta", "kind": "x", "data": ' + "[" * 100_000 + "]" * 100_000 + "}"
    )
    assert MetricsParser().feed(deep) is None
    assert p.warnings == 1


VOIR = [
    (
        {"task": "train", "rate": 61.0, "units": "items/s", "time": 5.0},
        {"event": "rate", "t": 5.0, "value": 61.0, "units": "items/s", "task": "train"},
    ),
    ({"task": "train", "loss": 5.87}, {"event": "loss", "t": NOW, "value": 5.87, "task": "train"}),
    (
        {
            "task": "main",
            "gpudata": {"1": {"memory": [3012.0, 81251.2], "load": 0.02, "temperature": 32}},
        },
        {
            "event": "gpu",
            "t": NOW,
            "devices": {"1": {"memory": [3012.0, 81251.2], "load": 0.02, "temperature": 32}},
        },
    ),
    (
        {"task": "early_stop", "progress": [3, 60]},
        {"event": "progress", "t": NOW, "step": 3, "total": 60},
    ),
    (
        {"task": "train", "progress": [0, 100000]},
        {
            "event": "meta",
            "t": NOW,
            "kind": "data",
            "data": {"task": "train", "progress": [0, 100000]},
        },
    ),
]


@pytest.mark.parametrize(("data", "expected"), VOIR)
def test_voir_data_lines_are_normalised(data: dict[str, Any], expected: dict[str, Any]) -> None:
    line = json.dumps({"event": "data", "data": data, "pipe": "data"})
    assert parser().feed(line) == expected


@pytest.mark.parametrize(
    ("event", "data", "expected"),
    [
        ("stop", {}, {"event": "end", "t": NOW, "status": "early_stop"}),
        (
            "start",
            {"command": ["voir", "main.py"], "time": 10.0},
            {"event": "start", "t": 10.0, "argv": ["voir", "main.py"]},
        ),
        (
            "end",
            {"command": ["voir"], "time": 11.0, "return_code": 0},
            {"event": "end", "t": 11.0, "status": "done", "return_code": 0},
        ),
        (
            "end",
            {"command": ["voir"], "return_code": 1},
            {"event": "end", "t": NOW, "status": "failed", "return_code": 1},
        ),
        (
            "error",
            {"type": "ValueError", "message": "bad"},
            {"event": "error", "t": NOW, "message": "bad", "type": "ValueError"},
        ),
        (
            "config",
            {"name": "bert"},
            {"event": "meta", "t": NOW, "kind": "config", "data": {"name": "bert"}},
        ),
        ("meta", {"cpu": {}}, {"event": "meta", "t": NOW, "kind": "meta", "data": {"cpu": {}}}),
        (
            "phase",
            {"name": "init"},
            {"event": "meta", "t": NOW, "kind": "phase", "data": {"name": "init"}},
        ),
        ("line", "text\n", None),
    ],
)
def test_other_voir_events(event: str, data: Any, expected: dict[str, Any] | None) -> None:
    assert parser().feed(json.dumps({"event": event, "data": data, "pipe": None})) == expected


@pytest.mark.parametrize(
    "data",
    [
        {"task": "train", "rate": "61", "units": "items/s"},
        {"task": "train", "rate": 61.0, "units": 1},
        {"task": "train", "loss": None},
        {"task": 1, "rate": 1.0},
        {"gpudata": {"0": {"memory": "lots"}}},
        {"task": "early_stop", "progress": [1]},
    ],
)
def test_voir_lines_with_wrong_types_are_warnings(data: dict[str, Any]) -> None:
    p = parser()
    assert p.feed(json.dumps({"event": "data", "data": data, "pipe": "data"})) is None
    assert p.warnings == 1


def _mutations(rng: random.Random, seeds: list[str]) -> str:
    kind = rng.randrange(8)
    seed = rng.choice(seeds)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(200))).decode(
            "utf-8", "replace"
        )
    if kind == 1:
        return seed[: rng.randrange(len(seed) + 1)]
    if kind == 2:
        i = rng.randrange(len(seed))
        return (
            seed[:i]
            + chr(rng.randrange(0x110000))
            .encode("utf-8", "surrogatepass")
            .decode("utf-8", "replace")
            + seed[i + 1 :]
        )
    if kind == 3:
        chars = list(seed)
        rng.shuffle(chars)
        return "".join(chars)
    if kind == 4:
        return (
            '{"mbctl": 1, "event": "meta", "kind": "k", "data": ' + "[" * rng.randrange(5000) + "]"
        )
    if kind == 5:
        value = rng.choice([None, True, "x", [], {}, -1, 1e308, "NaN", 2**70])
        return json.dumps(
            {"mbctl": 1, "event": rng.choice(["rate", "loss", "gpu", "end"]), "value": value}
        )
    if kind == 6:
        return json.dumps(
            {
                "event": rng.choice(["data", "stop", "end", "start"]),
                "data": rng.choice([None, 1, "s", [], {"rate": []}]),
            }
        )
    return seed.replace(rng.choice(',:{}[]"'), "", 1)


def test_fuzz_garbage_never_raises() -> None:
    rng = random.Random(1234)
    seeds = [
        tagged("rate", t=1.0, value=1.0, units="items/s", task="train"),
        tagged("gpu", t=1.0, devices={"0": {"memory": [1.0, 2.0], "load": 0.5}}),
        json.dumps(
            {"event": "data", "data": {"task": "train", "rate": 1.0, "units": "x"}, "pipe": "data"}
        ),
        json.dumps(
            {"event": "data", "data": {"task": "early_stop", "progress": [1, 2]}, "pipe": "data"}
        ),
    ]
    p = parser()
    for _ in range(20_000):
        ev = p.feed(_mutations(rng, seeds))
        assert ev is None or (isinstance(ev.get("event"), str) and "t" in ev and "mbctl" not in ev)
    assert p.lines == 20_000
    assert p.warnings > 0 and p.events > 0


def test_replay_captured_log() -> None:
    raw = (DATA / "captured" / "convnet.stdout").read_bytes().decode("utf-8", "replace")
    p = parser()
    events, logged = [], []
    for line in raw.split("\n"):
        ev = p.feed(line)
        (logged if ev is None else events).append(ev or line)
    kinds = [e["event"] for e in events]
    assert kinds.count("start") == 1 and kinds.count("end") == 1
    assert kinds.count("loss") == 10 and kinds.count("gpu") == 4 and kinds.count("progress") == 10
    train = [e["value"] for e in events if e["event"] == "rate" and e["task"] == "train"]
    assert train == [410.0, 455.5, 460.25, 458.0, 462.75, 459.5, 461.0, 457.25, 463.5, 460.0, 459.0]
    assert [e["value"] for e in events if e["event"] == "rate" and e["task"] == "eval"] == [900.0]
    assert events[-1] == {"event": "end", "t": 1736935218.0, "status": "early_stop"}
    # truncated, wrong type, unknown event, future version, and the line cut by the kill
    assert p.warnings == 5, p.messages
    assert any("Traceback" in line for line in logged)
    assert any(line.startswith('{"event": "line"') for line in logged)
