"""The Docker backend against a real engine, driven by the real runner.

A tiny image (the debootstrapped base + one script) plays every kind of benchmark: good, failing,
hanging, out of memory, printing garbage. Every test checks that no container of its run is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from imagesupport import CpuBuild
from scriptedimage import Scripted, scripted_image  # noqa: F401 - the `scripted` fixture
from typer.testing import CliRunner

from orchestrator.backends.base import Phase, RunContext
from orchestrator.backends.docker import (
    LABEL_RUN,
    DockerBackend,
    DockerSettings,
    clean,
    cleanup_run,
    container_name,
    invoking_user,
    leftovers,
    network_name,
    remove_networks,
)
from orchestrator.cli.main import app
from orchestrator.plan import Job, Plan, PlanKind
from orchestrator.resources import Resources
from orchestrator.results import RunDir, read_events
from orchestrator.runner import JobState, Outcome, Progress, execute
from orchestrator.vendors import HostFacts

pytestmark = pytest.mark.docker

#: Who jobs run as by default: whoever runs the tests, or an unprivileged uid when that is root.
UID, GID = (int(i) for i in (invoking_user() or "0:0").split(":"))


def job(
    name: str, image: str, *, tag: str = "0", max_duration: float = 60, argv: Sequence[str] = ()
) -> Job:
    return Job(
        id=f"{name}.{tag}",
        bench=name,
        tag=tag,
        definition="scripted",
        argv=tuple(argv) or (name,),
        vendor="cpu",
        plan=PlanKind.PER_GPU,
        max_duration=max_duration,
        image=image,
    )


class Run:
    """One run folder and context, and the check that it leaves no container behind."""

    def __init__(self, tmp: Path, client: Any, phase: Phase = Phase.RUN) -> None:
        self.client = client
        (tmp / "data").mkdir(exist_ok=True)
        self.dir = RunDir.create(
            tmp / "runs", {"suite": {"name": "docker-test"}}, run_id=f"test-{secrets.token_hex(4)}"
        )
        self.ctx = RunContext(
            run_id=self.dir.run_id,
            run_dir=self.dir.path.resolve(),
            data_dir=(tmp / "data").resolve(),
            benchmarks_root=tmp,
            phase=phase,
        )

    def execute(
        self, backend: DockerBackend, *jobs: Job, progress: Progress | None = None
    ) -> Outcome:
        plan = Plan(suite="docker-test", vendor="cpu", devices=(), nodes=1, jobs=jobs)
        try:
            return execute(plan, backend, self.dir, self.ctx, progress=progress)
        finally:
            # workflow.run's clean-up, less the containers: each test checks those itself
            remove_networks(self.client, self.ctx.run_id)

    def containers(self) -> list[Any]:
        return list(
            self.client.containers.list(
                all=True, filters={"label": f"{LABEL_RUN}={self.ctx.run_id}"}
            )
        )

    def exits(self) -> dict[str, dict[str, Any]]:
        return {j: read_events(self.dir.events_path(j))[-1] for j in self.dir.job_ids()}

    def events(self, job_id: str, kind: str) -> list[dict[str, Any]]:
        return [e for e in read_events(self.dir.events_path(job_id)) if e["event"] == kind]


@pytest.fixture
def run(tmp_path: Path, docker_client: Any) -> Iterator[Run]:
    made = Run(tmp_path, docker_client)
    yield made
    left = made.containers()
    cleanup_run(made.ctx.run_id, docker_client)
    assert not left, f"containers left behind: {[c.name for c in left]}"


def test_every_outcome_through_the_runner(run: Run, docker_client: Any, scripted: Scripted) -> None:
    ref = scripted.ref
    backend = DockerBackend(DockerSettings(mem_limit="128m"), client=docker_client)
    outcome = run.execute(
        backend,
        job("good", ref, tag="D0"),
        job("good", ref, tag="D1"),
        job("fails", ref),
        job("garbage", ref),
        job("hangs", ref, max_duration=4),
        job("oom", ref),
    )
    assert not outcome.interrupted
    exits = run.exits()
    assert {j: e["status"] for j, e in exits.items()} == {
        "good.D0": "ok",
        "good.D1": "ok",
        "fails.0": "failed",
        "garbage.0": "ok",
        "hangs.0": "timeout",
        "oom.0": "oom",
    }
    assert (
        exits["fails.0"]["reason"] == "exited with code 3" and exits["fails.0"]["return_code"] == 3
    )
    assert "max_duration=4s" in exits["hangs.0"]["reason"]
    assert exits["oom.0"]["reason"] == "killed by the out-of-memory killer (exit 137)"
    for record in exits.values():
        assert record["image"] == {"ref": ref, "id": scripted.id, "digest": None}

    assert [e["value"] for e in run.events("good.D1", "rate")] == [
        100.0,
        101.0,
        102.0,
        103.0,
        104.0,
    ]
    log = run.dir.log_path("good.D0").read_text()
    assert "plain output line" in log and "a line on stderr" in log
    assert [e["value"] for e in run.events("fails.0", "rate")] == [
        5.0
    ]  # kept from before the failure
    assert [e["value"] for e in run.events("hangs.0", "rate")] == [1.0]
    assert [e["value"] for e in run.events("garbage.0", "rate")] == [7.0]
    assert next(s for s in outcome.states if s.job.id == "garbage.0").warnings >= 2

    probe = run.events("good.D0", "meta")[0]["data"]
    assert probe["data"] == "Read-only file system"
    assert probe["uid"] == UID
    assert probe["env"]["MBCTL_DATA"] == "/data" and probe["env"]["MBCTL_RESULTS"] == "/results"
    assert (
        probe["env"]["MBCTL_RUN_ID"] == run.ctx.run_id and probe["env"]["MBCTL_JOB_ID"] == "good.D0"
    )
    out = run.ctx.run_dir / "files" / "good.D0" / "out.txt"
    assert out.read_text() == "good.D0"
    assert (out.stat().st_uid, out.stat().st_gid) == (UID, GID)


def test_labels_while_running_then_cancel_removes(
    run: Run, docker_client: Any, scripted: Scripted
) -> None:
    backend = DockerBackend(client=docker_client)
    handle = backend.submit(job("hangs", scripted.ref), run.ctx)
    lines: list[str] = []
    first = threading.Event()

    def read() -> None:
        for line in backend.stream(handle):
            lines.append(line)
            first.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert first.wait(20), "no output from the container"
        (container,) = run.containers()
        ours = {k: v for k, v in container.labels.items() if k.startswith("mbctl.")}
        assert ours == {
            "mbctl.run": run.ctx.run_id,
            "mbctl.job": "hangs.0",
            "mbctl.bench": "hangs",
            "mbctl.phase": "run",
        }
        assert container.name == f"mbctl-{run.ctx.run_id}-hangs.0"
        host = container.attrs["HostConfig"]
        assert host["Privileged"] is False and host["Init"] is True and host["AutoRemove"] is False
        mounts = {m["Destination"]: m["RW"] for m in container.attrs["Mounts"]}
        assert mounts == {"/data": False, "/results": True}
        assert backend.wait(handle, timeout=0) is None
        assert container.status == "running"
    finally:
        started = time.monotonic()
        backend.cancel(handle)
        done = backend.wait(handle, timeout=None)
    # init forwards SIGTERM: the job stops at once rather than after the grace period
    assert time.monotonic() - started < 4
    assert done is not None and done.image is not None and done.image["id"] == scripted.id
    reader.join(timeout=10)
    assert lines and json.loads(lines[0])["value"] == 1.0
    backend.cancel(handle)  # safe after exit and removal
    assert run.containers() == []


class InterruptOnceMeasured:
    """Sends this process SIGINT (a Ctrl-C) once every job has reported a rate."""

    def __init__(self, jobs: int) -> None:
        self.jobs, self.measured, self.sent = jobs, set[str](), False

    def update(self, state: JobState) -> None:
        if state.measures:
            self.measured.add(state.job.id)
        if len(self.measured) == self.jobs and not self.sent:
            self.sent = True
            signal.raise_signal(signal.SIGINT)


def test_ctrl_c_removes_containers_and_keeps_results(
    run: Run, docker_client: Any, scripted: Scripted
) -> None:
    backend = DockerBackend(client=docker_client)
    started = time.monotonic()
    outcome = run.execute(
        backend,
        job("hangs", scripted.ref, tag="D0"),
        job("hangs", scripted.ref, tag="D1"),
        progress=InterruptOnceMeasured(2),
    )
    assert time.monotonic() - started < 20
    assert outcome.interrupted
    assert {j: e["status"] for j, e in run.exits().items()} == {
        "hangs.D0": "cancelled",
        "hangs.D1": "cancelled",
    }
    assert [e["value"] for e in run.events("hangs.D0", "rate")] == [1.0]
    assert run.exits()["hangs.D0"]["image"]["id"] == scripted.id
    assert run.containers() == []


def test_prepare_writes_the_cache_that_run_reads(
    tmp_path: Path, docker_client: Any, scripted: Scripted
) -> None:
    backend = DockerBackend(client=docker_client)
    prepare = Run(tmp_path, docker_client, phase=Phase.PREPARE)
    prepare.execute(backend, job("good", scripted.ref))
    assert prepare.exits()["good.0"]["return_code"] == 0
    assert "dataset written" in prepare.dir.log_path("good.0").read_text()
    written = tmp_path / "data" / "prepared.txt"
    assert written.read_text() == "ready" and written.stat().st_uid == UID

    measure = Run(tmp_path, docker_client)
    measure.execute(backend, job("good", scripted.ref))
    probe = measure.events("good.0", "meta")[0]["data"]
    assert probe["prepared"] == "ready" and probe["data"] == "Read-only file system"
    assert prepare.containers() == measure.containers() == []


@pytest.mark.skipif(os.getuid() != 0, reason="handing the results folder to another uid needs root")
def test_results_belong_to_the_configured_user(
    run: Run, docker_client: Any, scripted: Scripted
) -> None:
    backend = DockerBackend(DockerSettings(user="1234:1234"), client=docker_client)
    run.execute(backend, job("good", scripted.ref))
    assert run.exits()["good.0"]["status"] == "ok"
    assert run.events("good.0", "meta")[0]["data"]["uid"] == 1234
    out = run.ctx.run_dir / "files" / "good.0" / "out.txt"
    assert (out.stat().st_uid, out.stat().st_gid) == (1234, 1234)


def test_digest_of_a_pushed_image_is_recorded(
    run: Run, docker_client: Any, scripted: Scripted, registry: str
) -> None:
    repository = f"{registry}/mbctl-test/scripted"
    version = scripted.ref.rpartition(":")[2]
    docker_client.images.get(scripted.id).tag(repository, version)
    docker_client.images.push(repository, version)
    pinned = next(
        d
        for d in docker_client.images.get(scripted.id).attrs["RepoDigests"]
        if d.startswith(repository)
    )
    run.execute(DockerBackend(client=docker_client), job("good", pinned))
    assert run.exits()["good.0"]["image"] == {"ref": pinned, "id": scripted.id, "digest": pinned}


def test_start_failures_are_job_errors_and_leave_nothing(
    run: Run, docker_client: Any, scripted: Scripted
) -> None:
    # ROCm exposure of a GPU this host does not have: the engine creates the container, then
    # cannot start it
    backend = DockerBackend(
        client=docker_client, host=HostFacts(render_nodes=("/dev/dri/renderD200",))
    )
    rocm = job("good", scripted.ref).model_copy(update={"vendor": "rocm", "devices": ("0",)})
    absent = job("absent", "127.0.0.1:9/mbctl-test/absent:none")
    run.execute(backend, rocm, absent)
    exits = run.exits()
    assert exits["good.0"]["status"] == "error"
    assert exits["good.0"]["reason"].startswith("cannot start the container of good.0:")
    assert exits["absent.0"]["status"] == "error"
    assert exits["absent.0"]["reason"].startswith(
        "image 127.0.0.1:9/mbctl-test/absent:none of absent.0 is not in the engine and could not be pulled: "
    )


def test_leftovers_and_clean_touch_only_mbctl_containers(
    docker_client: Any, scripted: Scripted
) -> None:
    crashed = f"crashed-{secrets.token_hex(4)}"
    ours = docker_client.containers.create(
        scripted.id,
        ["good"],
        labels={LABEL_RUN: crashed, "mbctl.job": "good.0"},
        name=f"mbctl-{crashed}-good.0",
    )
    alive = docker_client.containers.run(
        scripted.id,
        ["hangs"],
        labels={LABEL_RUN: crashed, "mbctl.job": "hangs.0"},
        detach=True,
        init=True,
    )
    stranger = docker_client.containers.create(
        scripted.id, ["good"], labels={"mbctl.job": "not-ours"}
    )
    try:
        found = {
            c.id: c for c in leftovers(docker_client, exclude_run="current-run") if c.run == crashed
        }
        assert set(found) == {ours.short_id, alive.short_id}
        assert found[ours.short_id].job == "good.0" and not found[ours.short_id].running
        assert found[alive.short_id].running
        assert not [c for c in leftovers(docker_client, exclude_run=crashed) if c.run == crashed]

        # without --run or --all only stopped containers are candidates (a dry run: other
        # sessions may share this engine)
        listed = {c.id for c in clean(docker_client, dry_run=True)}
        assert (
            ours.short_id in listed
            and alive.short_id not in listed
            and stranger.short_id not in listed
        )
        assert alive.short_id in {c.id for c in clean(docker_client, everything=True, dry_run=True)}

        result = CliRunner().invoke(app, ["clean", "--run", crashed, "--dry-run"])
        assert result.exit_code == 0, result.output
        assert "would remove 2 container(s)" in result.output
        assert (
            len(
                docker_client.containers.list(all=True, filters={"label": f"{LABEL_RUN}={crashed}"})
            )
            == 2
        )

        result = CliRunner().invoke(app, ["clean", "--run", crashed])
        assert result.exit_code == 0, result.output
        assert "removed 2 container(s)" in result.output
        assert (
            docker_client.containers.list(all=True, filters={"label": f"{LABEL_RUN}={crashed}"})
            == []
        )
        stranger.reload()  # still there: it carries no mbctl.run label
        result = CliRunner().invoke(app, ["clean", "--run", crashed])
        assert result.exit_code == 0 and f"no container of run {crashed}" in result.output
    finally:
        for container in (ours, alive, stranger):
            with contextlib.suppress(Exception):  # already removed by the test
                container.remove(force=True)


@pytest.mark.slow
def test_a_real_benchmark_image(run: Run, docker_client: Any, cpu_build: CpuBuild) -> None:
    """The smoke suite's matmul image, as `mbctl build` makes it, runs as the backend expects."""
    built = next(b for b in cpu_build.built if b.spec.name == "matmul")
    argv = ("--dtype", "fp32", "--size", "64", "--warmup", "1", "--measures", "3", "--every", "2")
    run.execute(DockerBackend(client=docker_client), job("fp32", built.spec.tag, argv=argv))
    exit_event = run.exits()["fp32.0"]
    assert exit_event["status"] == "ok", run.dir.log_path("fp32.0").read_text()[-2000:]
    assert exit_event["image"]["id"] == built.image_id
    rates = run.events("fp32.0", "rate")
    assert len(rates) == 3 and all(r["units"] == "TFLOPS" and r["value"] > 0 for r in rates)


def test_resume_replaces_its_own_stale_container_but_no_other(
    run: Run, docker_client: Any, scripted: Scripted
) -> None:
    """A container of an interrupted attempt of this run holds the job's name: it is replaced."""
    import docker.errors

    stale = docker_client.containers.create(
        scripted.id,
        ["hangs"],
        name=container_name(run.ctx.run_id, "good.0"),
        labels={LABEL_RUN: run.ctx.run_id},
    )
    foreign = docker_client.containers.create(
        scripted.id, ["hangs"], name=container_name(run.ctx.run_id, "fails.0")
    )
    try:
        run.execute(
            DockerBackend(client=docker_client),
            job("good", scripted.ref),
            job("fails", scripted.ref),
        )
        exits = run.exits()
        assert exits["good.0"]["status"] == "ok"
        assert exits["fails.0"]["status"] == "error" and "Conflict" in exits["fails.0"]["reason"]
        foreign.reload()  # untouched: it is not labelled as this run's
        with pytest.raises(docker.errors.NotFound):
            stale.reload()
    finally:
        foreign.remove(force=True)


def test_least_privilege_resources_and_own_network(
    run: Run, docker_client: Any, scripted: Scripted
) -> None:
    """Non-root, no capabilities, no new privileges, the suite's resources, the run's network."""
    backend = DockerBackend(client=docker_client)
    limited = job("hangs", scripted.ref).model_copy(
        update={"resources": Resources(memory="256Mi", pids=64, cpus=0.5)}
    )
    handle = backend.submit(limited, run.ctx)
    try:
        container = handle.native
        container.reload()
        host = container.attrs["HostConfig"]
        assert container.attrs["Config"]["User"] == invoking_user() != "0:0"
        assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd")
        assert "no-new-privileges:true" in host["SecurityOpt"] and host["Privileged"] is False
        assert (host["Memory"], host["MemorySwap"]) == (256 * 2**20, 256 * 2**20)
        assert (host["PidsLimit"], host["NanoCpus"]) == (64, 500_000_000)
        assert host["NetworkMode"] == network_name(run.ctx.run_id)
        (network,) = docker_client.networks.list(names=[network_name(run.ctx.run_id)])
        assert network.attrs["Labels"][LABEL_RUN] == run.ctx.run_id
    finally:
        backend.cancel(handle)
        backend.wait(handle, timeout=None)
    backend.cleanup_run(run.ctx.run_id)
    assert docker_client.networks.list(names=[network_name(run.ctx.run_id)]) == []
