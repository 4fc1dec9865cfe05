"""Containers without an engine: least privilege and resources in the specs, a silent engine."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.backends import docker
from orchestrator.backends.base import RunContext
from orchestrator.backends.docker import DockerSettings, container_spec
from orchestrator.cli.main import app
from orchestrator.compose import compose_service
from orchestrator.plan import Job, PlanKind
from orchestrator.resources import Resources
from orchestrator.vendors import HostFacts


def make_job(vendor: str = "cpu", resources: Resources | None = None) -> Job:
    return Job(
        id="b.D0",
        bench="b",
        tag="D0",
        definition="b",
        vendor=vendor,
        devices=("0",) if vendor != "cpu" else (),
        plan=PlanKind.PER_GPU,
        max_duration=60,
        image="registry.example/b@sha256:" + "0" * 64,
        resources=resources,
    )


CTX = RunContext(
    run_id="r", run_dir=Path("/runs/r"), data_dir=Path("/data"), benchmarks_root=Path(".")
)
HOST = HostFacts(render_nodes=("/dev/dri/renderD128",), video_gid=44, render_gid=109)


@pytest.mark.parametrize("vendor", ["cpu", "cuda", "rocm", "hpu", "xpu"])
def test_every_vendor_drops_all_capabilities_but_its_own(vendor: str) -> None:
    spec = container_spec(make_job(vendor), CTX, DockerSettings(user="1000:1000"), HOST)
    assert spec["cap_drop"] == ["ALL"] and spec["privileged"] is False
    assert spec["cap_add"] == ["SYS_NICE"] if vendor == "hpu" else "cap_add" not in spec
    assert "no-new-privileges:true" in spec["security_opt"]


def test_jobs_never_run_as_root_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(docker.USER_ENV, raising=False)
    monkeypatch.setattr(os, "getuid", lambda: 0)
    assert docker.invoking_user() == docker.NONROOT_USER == "1000:1000"
    monkeypatch.setattr(os, "getuid", lambda: 1234)
    monkeypatch.setattr(os, "getgid", lambda: 99)
    assert docker.invoking_user() == "1234:99"
    monkeypatch.setenv(docker.USER_ENV, "0:0")  # configurable, root included, on purpose only
    assert DockerSettings().user == "0:0"
    monkeypatch.setenv(docker.USER_ENV, "image")
    assert DockerSettings().user is None


def test_resources_reach_docker_and_compose_alike() -> None:
    job = make_job(resources=Resources(memory="16Gi", pids=4096, cpus=8))
    spec = container_spec(job, CTX, DockerSettings(user="1000:1000", mem_limit="1g"))
    assert spec["mem_limit"] == spec["memswap_limit"] == 16 * 2**30  # the suite's value wins
    assert (spec["pids_limit"], spec["nano_cpus"]) == (4096, 8_000_000_000)
    service = compose_service(spec)
    assert (service["mem_limit"], service["pids_limit"], service["cpus"]) == (16 * 2**30, 4096, 8)
    assert service["cap_drop"] == ["ALL"]
    plain = container_spec(make_job(), CTX, DockerSettings(user="1000:1000"))
    assert not {"pids_limit", "nano_cpus", "mem_limit"} & set(plain)


@pytest.fixture
def silent_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A Docker socket that accepts connections and never answers."""
    path = tmp_path / "silent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    yield path
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_clean_does_not_hang_on_an_engine_that_never_answers(silent_engine: Path) -> None:
    result = CliRunner().invoke(app, ["clean"])
    assert result.exit_code == 3, result.output
    assert f"Docker engine not reachable at unix://{silent_engine}" in result.output
    assert "Traceback" not in result.output
