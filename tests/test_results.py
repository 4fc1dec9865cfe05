"""The run directory: ids, meta.json, live per-job files, resume, atomic writes, killed runs."""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import ResultsError
from orchestrator.plan import Job, PlanKind
from orchestrator.results import (
    RunDir,
    atomic_write_json,
    atomic_write_text,
    new_run_id,
    read_events,
)


def make_job(bench: str = "resnet50", tag: str = "D0", **kw: Any) -> Job:
    fields: dict[str, Any] = {
        "id": f"{bench}.{tag}",
        "bench": bench,
        "tag": tag,
        "definition": bench,
        "vendor": "cuda",
        "devices": ("0",),
        "plan": PlanKind.PER_GPU,
        "max_duration": 600,
    }
    fields.update(kw)
    return Job(**fields)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def run(tmp_path: Path) -> RunDir:
    return RunDir.create(tmp_path / "runs", {"suite": {"name": "smoke"}}, run_id="r1")


def test_run_ids_sort_by_time_and_are_unique() -> None:
    early = new_run_id("Standard Suite!", now=datetime(2026, 11, 23, 10, 45, 1, tzinfo=UTC))
    late = new_run_id("standard", now=datetime(2026, 11, 23, 10, 45, 2, tzinfo=UTC))
    assert early.startswith("20261123-104501-standard-suite-") and len(early.rsplit("-", 1)[1]) == 4
    assert early < late
    assert len({new_run_id("smoke") for _ in range(300)}) > 290
    assert new_run_id("///").split("-")[2] == "run"


def test_create_writes_meta_atomically(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "runs", {"suite": {"name": "smoke"}, "x": float("nan")})
    meta = json.loads((run.path / "meta.json").read_text())
    assert meta["run_id"] == run.path.name == run.run_id and run.run_id.split("-")[2] == "smoke"
    assert meta["x"] is None and "created" in meta
    assert [p.name for p in run.path.iterdir()] == ["meta.json"]


def test_create_refuses_an_existing_run(run: RunDir) -> None:
    with pytest.raises(ResultsError, match="already exists"):
        RunDir.create(run.path.parent, {}, run_id="r1")


def test_open_names_what_is_wrong(tmp_path: Path, run: RunDir) -> None:
    assert RunDir.open(run.path).meta()["run_id"] == "r1"
    with pytest.raises(ResultsError, match=r"^not a run directory: .*nowhere \(no meta.json\)$"):
        RunDir.open(tmp_path / "nowhere")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "meta.json").write_text("{oops")
    with pytest.raises(ResultsError, match="not valid JSON"):
        RunDir.open(tmp_path / "bad")
    (tmp_path / "bad" / "meta.json").write_text("[1]")
    with pytest.raises(ResultsError, match="JSON object"):
        RunDir.open(tmp_path / "bad")


def test_update_meta_merges_and_leaves_no_temp_file(run: RunDir) -> None:
    run.update_meta(system={"gpus": 8}, finished=True)
    assert run.meta()["system"] == {"gpus": 8} and run.meta()["suite"] == {"name": "smoke"}
    assert sorted(p.name for p in run.path.iterdir()) == ["meta.json"]


def test_summary_is_standard_json(run: RunDir) -> None:
    run.write_summary({"score": float("nan"), "rows": [float("inf"), 1.5]})
    assert json.loads((run.path / "summary.json").read_text()) == {
        "score": None,
        "rows": [None, 1.5],
    }


def test_failed_atomic_write_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f.json"
    atomic_write_json(target, {"v": 1})

    def broken(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(ResultsError, match="cannot write"):
        atomic_write_text(target, "new")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_recorder_writes_config_events_log_and_exit(run: RunDir) -> None:
    job = make_job()
    rec = run.recorder(job)
    rec.event({"event": "rate", "t": 2.0, "value": 10.5, "units": "items/s", "task": "train"})
    rec.event({"event": "loss", "value": float("nan")})
    rec.log("some output\n")
    # flushed per line: readable while the job runs
    live = lines(run.events_path(job.id))
    assert live[0]["event"] == "config" and live[0]["job"] == job.describe()
    assert live[1] == {
        "event": "rate",
        "t": 2.0,
        "value": 10.5,
        "units": "items/s",
        "task": "train",
    }
    assert list(live[2]) == ["event", "t", "value"]
    assert run.log_path(job.id).read_text() == "some output\n"
    rec.finish(0, "ok", image={"digest": "sha256:abc"})
    last = lines(run.events_path(job.id))[-1]
    assert last == {**last, "event": "exit", "return_code": 0, "status": "ok", "reason": None}
    assert last["image"] == {"digest": "sha256:abc"}
    assert rec.finished
    with pytest.raises(ResultsError, match="already finished"):
        rec.event({"event": "rate"})
    with pytest.raises(ResultsError):
        rec.log("late")


def test_finish_rejects_an_unknown_status(run: RunDir) -> None:
    with run.recorder(make_job()) as rec, pytest.raises(ValueError, match="exit status"):
        rec.finish(0, "great")


def test_log_survives_undecodable_text(run: RunDir) -> None:
    with run.recorder(make_job()) as rec:
        rec.log("bad \udcff byte")
        rec.finish(0, "ok")
    assert "bad" in run.log_path("resnet50.D0").read_text()


def test_context_manager_records_how_the_block_ended(run: RunDir) -> None:
    with pytest.raises(RuntimeError), run.recorder(make_job(tag="D0")):
        raise RuntimeError("backend died")
    with pytest.raises(KeyboardInterrupt), run.recorder(make_job(tag="D1")):
        raise KeyboardInterrupt
    with run.recorder(make_job(tag="D2")):
        pass
    err = lines(run.events_path("resnet50.D0"))[-1]
    assert (err["status"], err["reason"]) == ("error", "RuntimeError: backend died")
    assert lines(run.events_path("resnet50.D1"))[-1]["status"] == "cancelled"
    assert lines(run.events_path("resnet50.D2"))[-1]["event"] == "config"
    assert run.completed_job_ids() == {"resnet50.D0"}


def test_completed_jobs_and_resume(run: RunDir) -> None:
    for tag, status in [("D0", "ok"), ("D1", "failed"), ("D2", "timeout"), ("D3", "cancelled")]:
        with run.recorder(make_job(tag=tag)) as rec:
            rec.finish(1, status)
    run.recorder(make_job(tag="D4"))  # the orchestrator was killed: no exit event
    assert run.completed_job_ids() == {"resnet50.D0", "resnet50.D1", "resnet50.D2"}
    # --resume replaces what an incomplete attempt left
    with run.recorder(make_job(tag="D4")) as rec:
        rec.log("second attempt")
        rec.finish(0, "ok")
    events = lines(run.events_path("resnet50.D4"))
    assert [e["event"] for e in events] == ["config", "exit"]
    assert run.log_path("resnet50.D4").read_text() == "second attempt\n"
    assert "resnet50.D4" in run.completed_job_ids()


def test_a_partial_last_line_is_tolerated(run: RunDir) -> None:
    with run.recorder(make_job(tag="D0")) as rec:
        rec.event({"event": "rate", "t": 1.0, "value": 1.0, "units": "x", "task": "train"})
        rec.finish(0, "ok")
    rec = run.recorder(make_job(tag="D1"))
    rec.event({"event": "rate", "t": 1.0, "value": 2.0, "units": "x", "task": "train"})
    with open(run.events_path("resnet50.D1"), "a") as f:
        f.write('{"event": "exit", "t": 2.0, "return_code": 0, "sta')  # killed mid-write
    with open(run.events_path("resnet50.D0"), "a") as f:
        f.write('{"event": "ra')
    assert run.completed_job_ids() == {"resnet50.D0"}
    assert [e["event"] for e in read_events(run.events_path("resnet50.D1"))] == ["config", "rate"]


def test_completed_reads_only_the_tail_of_long_files(run: RunDir) -> None:
    with run.recorder(make_job()) as rec:
        for i in range(5000):
            rec.event({"event": "rate", "t": float(i), "value": 1.0, "units": "x", "task": "train"})
        rec.finish(0, "ok", reason="x" * 70_000)
    assert run.completed_job_ids() == {"resnet50.D0"}


def test_job_ids_that_cannot_name_a_file_are_refused(run: RunDir) -> None:
    with pytest.raises(ResultsError, match="cannot name a result file"):
        run.recorder(make_job().model_copy(update={"id": "../escape"}))


def test_concurrent_writers_keep_lines_whole(run: RunDir) -> None:
    rec = run.recorder(make_job())

    def pump(task: str) -> None:
        for i in range(500):
            rec.event({"event": "rate", "t": float(i), "value": 1.0, "units": "x", "task": task})
            rec.log(f"{task} line {i}")

    threads = [threading.Thread(target=pump, args=(t,)) for t in ("train", "eval")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rec.finish(0, "ok")
    events = lines(run.events_path("resnet50.D0"))
    assert len(events) == 1 + 1000 + 1 and events[-1]["event"] == "exit"
    assert len(run.log_path("resnet50.D0").read_text().splitlines()) == 1000
