"""A multi-node job through the Docker backend: one container per node on a network of the job's own.

The scripted node program is test_plan_nodes.py's (standard library only): node 0 listens on the
master address and port, the others connect to it by the container name Docker's DNS resolves on
a user-defined network. The torch one runs DDP over two containers through benchkit's launch:
torchrun's static rendezvous at node 0, one gloo worker per node, on the matmul image that the
Docker tests build (torch + benchkit) with its main.py replaced.
"""

from __future__ import annotations

import hashlib
import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from imagesupport import CpuBuild
from scriptedimage import DOCKERFILE, _context
from test_docker_backend import Run

from orchestrator.backends.docker import (
    LABEL_RUN,
    DockerBackend,
    cleanup_run,
    node_container_name,
    remove_networks,
)
from orchestrator.plan import Job, PlanKind

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]


def _node_program() -> str:
    source = (ROOT / "tests" / "unit" / "test_plan_nodes.py").read_text()
    start = source.index('NODE_PROGRAM = """') + len('NODE_PROGRAM = """')
    return textwrap.dedent(source[start : source.index('"""', start)])


@pytest.fixture(scope="module")
def node_image(docker_client: Any, base_image: str) -> str:
    files = {
        "Dockerfile": DOCKERFILE.format(base=base_image),
        "main.py": _node_program(),
        "prepare.py": "",
    }
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:12]
    tag = f"mbctl-test/nodes:{digest}"
    try:
        docker_client.images.get(tag)
    except Exception:  # ImageNotFound: build it
        docker_client.images.build(fileobj=_context(files), custom_context=True, tag=tag, rm=True)
    return tag


@pytest.fixture
def run(tmp_path: Path, docker_client: Any) -> Iterator[Run]:
    made = Run(tmp_path, docker_client)
    yield made
    left = made.containers()
    networks = docker_client.networks.list(filters={"label": f"{LABEL_RUN}={made.ctx.run_id}"})
    cleanup_run(made.ctx.run_id, docker_client)
    remove_networks(docker_client, made.ctx.run_id)
    assert not left, f"containers left behind: {[c.name for c in left]}"
    assert not networks, f"networks left behind: {[n.name for n in networks]}"


def node_job(name: str, image: str, argv: tuple[str, ...] = ()) -> Job:
    return Job(
        id=f"{name}.N2",
        bench=name,
        tag="N2",
        definition="nodes",
        argv=argv,
        vendor="cpu",
        plan=PlanKind.NODES,
        nodes=2,
        max_duration=60,
        image=image,
    )


def test_two_nodes_as_two_containers_on_their_own_network(run: Run, node_image: str) -> None:
    outcome = run.execute(DockerBackend(nodes=2), node_job("two", node_image))
    assert [(s.status, s.reason) for s in outcome.states] == [("ok", None)]
    assert [e["value"] for e in run.events("two.N2", "rate")] == [20.0, 21.0, 22.0, 23.0, 24.0]
    master = node_container_name(run.ctx.run_id, "two.N2", 0)
    log = run.dir.log_path("two.N2").read_text()
    assert f"node 0 of 2 at {master} joined by [1]" in log
    assert f"node 1 reached {master}" in log


def test_a_failing_node_fails_the_job_and_stops_the_other(run: Run, node_image: str) -> None:
    outcome = run.execute(DockerBackend(nodes=2), node_job("broken", node_image, ("fails",)))
    state = outcome.states[0]
    assert (state.status, state.reason) == ("failed", "exited with code 3")
    assert state.elapsed < 30  # node 0 waited for node 1 until stopped, not until max_duration


def test_resume_replaces_a_stale_network_of_its_own_run(
    run: Run, node_image: str, docker_client: Any
) -> None:
    stale = docker_client.networks.create(
        f"mbctl-{run.ctx.run_id}-two.N2", labels={LABEL_RUN: run.ctx.run_id}
    )
    outcome = run.execute(DockerBackend(nodes=2), node_job("two", node_image))
    assert [s.status for s in outcome.states] == ["ok"]
    with pytest.raises(Exception, match="not found"):
        docker_client.networks.get(stale.id)


DDP_PROGRAM = """
import argparse, itertools, os

import benchkit
import torch


def train(args):
    device, world = benchkit.init_distributed("cpu")
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    rank = torch.distributed.get_rank()
    print(f"rank {rank} of {world} on node {os.environ['MBCTL_NODE_RANK']}", flush=True)
    loop = benchkit.TimedLoop(itertools.count(), batch_size=4 * world, warmup=1, measures=5, every=1)
    for _ in loop:
        loss = model(torch.randn(4, 16)).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        loop.log_loss(loss.detach())
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    benchkit.relaunch_under_torchrun(1)
    benchkit.silence_other_ranks()
    benchkit.main(train, argparse.ArgumentParser("ddp-nodes"))
"""


@pytest.mark.slow
def test_torch_ddp_over_two_containers_with_static_rendezvous(
    run: Run, docker_client: Any, cpu_build: CpuBuild
) -> None:
    matmul = next(b for b in cpu_build.built if b.spec.name == "matmul")
    files = {
        "Dockerfile": f"FROM {matmul.spec.tag}\nCOPY main.py ./main.py\n",
        "main.py": DDP_PROGRAM,
    }
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:12]
    tag = f"mbctl-test/ddp-nodes:{digest}"
    image, _ = docker_client.images.build(
        fileobj=_context(files), custom_context=True, tag=tag, rm=True
    )
    try:
        outcome = run.execute(DockerBackend(nodes=2), node_job("ddp", tag))
    finally:
        # a child of the shared matmul image would keep later tests from removing that image
        docker_client.images.remove(image.id, force=True)
    log = run.dir.log_path("ddp.N2").read_text()
    assert [(s.status, s.reason) for s in outcome.states] == [("ok", None)], log[-3000:]
    rates = run.events("ddp.N2", "rate")
    assert len(rates) == 5 and all(r["value"] > 0 for r in rates)
    # rank 0 speaks the protocol; rank 1's stdout is silenced, its agent's log lines are merged
    assert len(run.events("ddp.N2", "start")) == 1
    assert "rank 0 of 2 on node 0" in log
