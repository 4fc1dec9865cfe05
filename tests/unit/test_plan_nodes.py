"""Multi-node planning and runs: --nodes, Backend.max_nodes, and N node processes on loopback.

The node program is scripted with the standard library: node 0 listens on the master address
and port of the multi-node contract, the other nodes connect to it, so a run passes only if
every node got the same, reachable rendezvous and its own rank.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator import config, workflow
from orchestrator.backends.base import Backend
from orchestrator.backends.local import LocalBackend
from orchestrator.cli.main import app
from orchestrator.plan import PlanKind, make_plan, parse_devices
from orchestrator.results import read_events

NODE_PROGRAM = """
    import json, os, socket, sys, time

    def emit(event, **kw):
        print(json.dumps({"mbctl": 1, "event": event, "t": time.time(), **kw}), flush=True)

    nnodes = int(os.environ["MBCTL_NNODES"])
    rank = int(os.environ["MBCTL_NODE_RANK"])
    master = (os.environ["MBCTL_MASTER_ADDR"], int(os.environ["MBCTL_MASTER_PORT"]))
    if rank == 0:
        server = socket.create_server(("", master[1]))
        joined = sorted(int(server.accept()[0].recv(16)) for _ in range(nnodes - 1))
        emit("start", bench="nodes", argv=sys.argv[1:], versions={"python": "3"}, pid=os.getpid())
        print(f"node 0 of {nnodes} at {master[0]} joined by {joined}", flush=True)
        for i in range(5):
            emit("rate", value=10.0 * nnodes + i, units="items/s", task="train")
        emit("end", status="early_stop")
    elif sys.argv[1:] == ["fails"]:
        raise SystemExit(3)
    else:
        for _ in range(300):
            try:
                socket.create_connection(master).sendall(str(rank).encode())
                break
            except OSError:
                time.sleep(0.1)
        print(f"node {rank} reached {master[0]}", flush=True)
"""


def _suite_entries() -> dict[str, object]:
    return {
        "two": {"definition": "nodes", "plan": {"nodes": 2}},
        "three": {"definition": "nodes", "plan": {"nodes": 3}},
        "one": {"definition": "nodes", "plan": {"nodes": 1}},
        "broken": {"definition": "nodes", "plan": {"nodes": 2}, "argv": ["fails"]},
    }


@pytest.fixture
def bench_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "benchmarks"
    (root / "nodes").mkdir(parents=True)
    (root / "nodes" / "main.py").write_text(textwrap.dedent(NODE_PROGRAM))
    (root / "benchkit").mkdir()
    (root / "suites").mkdir()
    suite = {"name": "nodes", "defaults": {"max_duration": 60}, "benchmarks": _suite_entries()}
    (root / "suites" / "nodes.yaml").write_text(json.dumps(suite))
    monkeypatch.setenv("MBCTL_BENCHMARKS", str(root))
    return root


def request(tmp_path: Path, **kw: object) -> workflow.Request:
    base: dict[str, object] = {
        "suite": "nodes",
        "vendor": "cpu",
        "backend": "local",
        "results": tmp_path / "runs",
        "data_dir": tmp_path / "data",
    }
    return workflow.Request(**{**base, **kw})  # type: ignore[arg-type]


class Cluster(Backend):
    """A backend that places ``size`` nodes and runs nothing: only its capacity matters here."""

    name = "cluster"

    def __init__(self, size: int) -> None:
        self.size = size

    def max_nodes(self) -> int:
        return self.size


class Plain(Backend):
    name = "plain"


def test_backends_place_one_node_unless_they_know_better() -> None:
    assert Plain().max_nodes() == 1
    assert LocalBackend().max_nodes() == 1
    assert LocalBackend(nodes=3).max_nodes() == 3


def test_standard_plans_every_nodes_benchmark_over_two_nodes() -> None:
    suite = config.load_suite(config.benchmarks_root() / "suites" / "standard.yaml")
    multinode = {b.name for b in suite.benchmarks if b.plan.kind is PlanKind.NODES}
    assert multinode == {"llm-lora-ddp-nodes", "llm-full-mp-nodes", "diffusion-nodes"}
    plan = make_plan(suite, vendor="cuda", devices=parse_devices("8"), nodes=2)
    jobs = {j.bench: j for j in plan.jobs if j.plan is PlanKind.NODES}
    assert set(jobs) == multinode
    assert all(j.nodes == 2 and j.id.endswith(".N2") and len(j.devices) == 8 for j in jobs.values())
    alone = make_plan(suite, vendor="cuda", devices=parse_devices("8"), nodes=1)
    reasons = {s.bench: s.reason for s in alone.skipped}
    assert {b: reasons.get(b) for b in multinode} == dict.fromkeys(
        multinode, "needs 2 nodes, 1 available (--nodes 2 on a backend that can place them)"
    )


def test_dry_run_trusts_nodes_and_plans_nodes_benchmarks_across_them() -> None:
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--dry-run",
            "--vendor",
            "cuda",
            "--devices",
            "8",
            "--nodes",
            "2",
            "--suite",
            "standard",
            "--backend",
            "local",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["nodes"] == 2
    nodes_jobs = {j["bench"]: j["nodes"] for j in plan["jobs"] if j["bench"].endswith("-nodes")}
    assert nodes_jobs == {"llm-lora-ddp-nodes": 2, "llm-full-mp-nodes": 2, "diffusion-nodes": 2}
    assert not [s for s in plan["skipped"] if s["bench"].endswith("-nodes")]


@pytest.mark.parametrize(
    ("asked", "capacity", "planned"),
    [
        (None, 1, {"one"}),
        (None, 3, {"one", "two", "three", "broken"}),
        (3, 2, {"one", "two", "broken"}),
        (2, 3, {"one", "two", "broken"}),
    ],
)
def test_run_plans_for_what_the_backend_places(
    bench_root: Path, tmp_path: Path, asked: int | None, capacity: int, planned: set[str]
) -> None:
    req = request(tmp_path, nodes=asked)
    fitted = workflow.fit_nodes(req, workflow.prepare(req), Cluster(capacity), workflow.Phase.RUN)
    assert {j.bench for j in fitted.plan.jobs} == planned
    for skipped in fitted.plan.skipped:
        assert "nodes," in skipped.reason and "available" in skipped.reason


def test_two_nodes_run_as_two_processes_with_one_rendezvous(
    bench_root: Path, tmp_path: Path
) -> None:
    req = request(tmp_path, nodes=2, select=("two", "broken"))
    result = workflow.run(req, workflow.prepare(req))
    states = {s.job.id: s for s in result.outcome.states}
    assert states["two.N2"].status == "ok"
    rates = [
        e["value"] for e in read_events(result.run.events_path("two.N2")) if e["event"] == "rate"
    ]
    assert rates == [20.0, 21.0, 22.0, 23.0, 24.0]
    log = result.run.log_path("two.N2").read_text()
    assert "node 0 of 2 at 127.0.0.1 joined by [1]" in log
    assert "node 1 reached 127.0.0.1" in log
    # node 1 failing stops node 0 (which would wait for it until max_duration) and is the verdict
    assert states["broken.N2"].status == "failed"
    assert states["broken.N2"].reason == "exited with code 3"
    assert states["broken.N2"].elapsed < 30


def test_without_nodes_the_local_backend_places_one(bench_root: Path, tmp_path: Path) -> None:
    req = request(tmp_path, select=("one", "two"))
    result = workflow.run(req, workflow.prepare(req))
    assert [s.job.id for s in result.outcome.states] == ["one.N1"]
    skipped = {s["bench"]: s["reason"] for s in result.run.meta()["plan"]["skipped"]}
    assert skipped == {
        "two": "needs 2 nodes, 1 available (--nodes 2 on a backend that can place them)"
    }


def test_docker_nodes_are_containers_named_by_rank_on_the_job_network(tmp_path: Path) -> None:
    from orchestrator.backends.base import Phase, RunContext
    from orchestrator.backends.docker import DockerSettings, container_spec, node_specs
    from orchestrator.plan import Job

    job = Job(
        id="diffusion-nodes.N2",
        bench="diffusion-nodes",
        tag="N2",
        definition="diffusion",
        argv=("--devices", "1"),
        vendor="cpu",
        plan=PlanKind.NODES,
        nodes=2,
        max_duration=60,
        image="mbctl/diffusion:cpu",
    )
    ctx = RunContext("r1", tmp_path, tmp_path / "data", tmp_path, Phase.RUN)
    settings = DockerSettings(user="1000:1000")
    single = container_spec(job, ctx, settings)
    specs = node_specs(job, ctx, settings)
    assert [s["name"] for s in specs] == [
        "mbctl-r1-diffusion-nodes.N2-node0",
        "mbctl-r1-diffusion-nodes.N2-node1",
    ]
    assert {s["network"] for s in specs} == {"mbctl-r1-diffusion-nodes.N2"}
    assert [s["labels"]["mbctl.node"] for s in specs] == ["0", "1"]
    for rank, spec in enumerate(specs):
        assert spec["environment"] == {
            **single["environment"],
            "MBCTL_NNODES": "2",
            "MBCTL_NODE_RANK": str(rank),
            "MBCTL_MASTER_ADDR": "mbctl-r1-diffusion-nodes.N2-node0",
            "MBCTL_MASTER_PORT": "29500",
        }
        rest = {
            k: v
            for k, v in spec.items()
            if k not in ("name", "hostname", "labels", "environment", "network")
        }
        assert rest == {
            k: v for k, v in single.items() if k not in ("name", "labels", "environment")
        }


class Uncountable(Backend):
    """A cluster backend without the right to list its nodes."""

    name = "uncountable"

    def max_nodes(self) -> int:
        from orchestrator.errors import BackendUnavailable

        raise BackendUnavailable("cannot list nodes", hint="or pass --nodes N")


def test_a_backend_that_cannot_count_trusts_nodes_or_fails(
    bench_root: Path, tmp_path: Path
) -> None:
    from orchestrator.errors import BackendUnavailable

    req = request(tmp_path, nodes=2)
    fitted = workflow.fit_nodes(req, workflow.prepare(req), Uncountable(), workflow.Phase.RUN)
    assert {j.bench for j in fitted.plan.jobs} == {"one", "two", "broken"}
    assert "nodes: trusting --nodes 2 (cannot list nodes)" in fitted.notes
    bare = request(tmp_path)
    with pytest.raises(BackendUnavailable, match="cannot list nodes"):
        workflow.fit_nodes(bare, workflow.prepare(bare), Uncountable(), workflow.Phase.RUN)


def test_resume_plans_the_nodes_of_the_run_it_continues(bench_root: Path, tmp_path: Path) -> None:
    req = request(tmp_path, nodes=2, select=("one", "two"))
    first = workflow.run(req, workflow.prepare(req))
    assert first.run.meta()["plan"]["nodes"] == 2
    events = first.run.events_path("two.N2")
    events.unlink()  # as if the run had been killed before this job
    result = CliRunner().invoke(
        app, ["run", "--resume", str(first.run.path), "--backend", "local", "--vendor", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert [e["value"] for e in read_events(events) if e["event"] == "rate"] == [
        20.0,
        21.0,
        22.0,
        23.0,
        24.0,
    ]
