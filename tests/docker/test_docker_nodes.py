"""A multi-node job through the Docker backend: one container per node on a network of the job's own.

The node program is test_plan_nodes.py's (standard library only): node 0 listens on the master
address and port, the others connect to it by the container name Docker's DNS resolves on a
user-defined network. The real torch path over nodes is test_catalogue_nodes.py (local backend).
"""

from __future__ import annotations

import hashlib
import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scriptedimage import DOCKERFILE, _context
from test_docker_backend import Run

from orchestrator.backends.docker import (
    LABEL_RUN,
    DockerBackend,
    cleanup_run,
    node_container_name,
    remove_node_networks,
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
    remove_node_networks(docker_client, made.ctx.run_id)
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
