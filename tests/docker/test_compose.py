"""Rendered Compose files against Debian's docker-compose (1.29): `config` for every vendor, `up` on CPU."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from scriptedimage import Scripted, scripted_image  # noqa: F401 - the `scripted` fixture

from orchestrator import vendors
from orchestrator.backends.docker import DockerSettings, invoking_user
from orchestrator.compose import dump_compose, render_compose
from orchestrator.plan import Job, Plan, PlanKind
from orchestrator.vendors import HostFacts

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = shutil.which("docker-compose")
needs_compose = pytest.mark.skipif(
    COMPOSE is None and not os.environ.get("CI"), reason="docker-compose is not installed"
)
ROCM_HOST = HostFacts(
    render_nodes=("/dev/dri/renderD128", "/dev/dri/renderD129"), video_gid=44, render_gid=109
)


def compose(
    *args: str, env: dict[str, str] | None = None, timeout: int = 120
) -> subprocess.CompletedProcess[str]:
    assert COMPOSE is not None, "docker-compose is not installed"
    return subprocess.run(
        [COMPOSE, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def two_gpu_plan(vendor: str) -> Plan:
    spec = vendors.get(vendor)
    devices = () if spec.vendor is vendors.Vendor.CPU else ("0", "1")
    jobs = []
    for tag, devs in [("0", ())] if not devices else [(f"D{d}", (d,)) for d in devices]:
        jobs.append(
            Job(
                id=f"fp32.{tag}",
                bench="fp32",
                tag=tag,
                definition="matmul",
                argv=("--dtype", "fp32"),
                env={"NCCL_DEBUG": "WARN", **spec.visible_devices(devs)},
                vendor=spec.vendor.value,
                devices=devs,
                plan=PlanKind.PER_GPU,
                max_duration=60,
                image=f"registry.example.com/mbctl/matmul:{vendor}",
            )
        )
    return Plan(suite="smoke", vendor=vendor, devices=devices, nodes=1, jobs=tuple(jobs))


@needs_compose
@pytest.mark.parametrize("vendor", [v.value for v in vendors.Vendor])
def test_config_accepts_the_render_of_every_vendor(vendor: str, tmp_path: Path) -> None:
    file = tmp_path / f"{vendor}.yml"
    file.write_text(
        dump_compose(
            render_compose(two_gpu_plan(vendor), DockerSettings(user="1000:1000"), host=ROCM_HOST)
        )
    )
    done = compose(
        "-f", str(file), "config", env={"MBCTL_DATA": "/srv/data", "MBCTL_RESULTS": "/srv/results"}
    )
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    last = services["fp32.D1" if vendor != "cpu" else "fp32.0"]
    assert last["volumes"][0] == "/srv/data:/data:ro"
    assert last["user"] == "1000:1000"
    if vendor == "cuda":
        devices = last["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"capabilities": ["gpu"], "device_ids": ["1"], "driver": "nvidia"}]
        assert last["environment"]["CUDA_VISIBLE_DEVICES"] == "0"
    if vendor == "rocm":
        assert "/dev/dri/renderD129:/dev/dri/renderD129:rwm" in last["devices"]


@needs_compose
def test_config_accepts_the_checked_in_example() -> None:
    done = compose("-f", str(ROOT / "compose" / "smoke-cpu.yml"), "config", "--services")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["fp32.0", "convnet.0", "jax-mlp.0"]


@needs_compose
@pytest.mark.docker
def test_up_runs_a_cpu_service_and_down_removes_it(
    tmp_path: Path, scripted: Scripted, docker_client: Any
) -> None:
    job = Job(
        id="good.0",
        bench="good",
        tag="0",
        definition="scripted",
        argv=("good",),
        vendor="cpu",
        plan=PlanKind.PER_GPU,
        max_duration=60,
        image=scripted.ref,
    )
    plan = Plan(suite="compose-test", vendor="cpu", devices=(), nodes=1, jobs=(job,))
    file = tmp_path / "compose.yml"
    file.write_text(dump_compose(render_compose(plan, DockerSettings())))
    (tmp_path / "data").mkdir()
    (tmp_path / "results" / "files" / "good.0").mkdir(parents=True)
    # the rendered user (never root: 1000:1000 when root renders) must own what the job writes
    uid, gid = (int(i) for i in (invoking_user() or "0:0").split(":"))
    if os.getuid() == 0:
        os.chown(tmp_path / "results" / "files" / "good.0", uid, gid)
    project = f"mbctltest{secrets.token_hex(3)}"
    base = ["-f", str(file), "-p", project]
    try:
        up = compose(*base, "--profile", "good", "up", "--no-color")
        assert up.returncode == 0, up.stderr
        logs = compose(*base, "logs", "--no-color")
        assert logs.returncode == 0, logs.stderr
        lines = [line.partition("| ")[2] for line in logs.stdout.splitlines() if "| " in line]
        events = [json.loads(line) for line in lines if line.startswith('{"mbctl"')]
        assert [e["value"] for e in events if e["event"] == "rate"] == [
            100.0,
            101.0,
            102.0,
            103.0,
            104.0,
        ]
        probe = next(e for e in events if e["event"] == "meta")["data"]
        assert probe["data"] == "Read-only file system" and probe["uid"] == uid
        assert probe["env"]["MBCTL_RUN_ID"] == "compose-compose-test"
        out = tmp_path / "results" / "files" / "good.0" / "out.txt"
        assert out.read_text() == "good.0" and out.stat().st_uid == uid
    finally:
        down = compose(*base, "down")
    assert down.returncode == 0, down.stderr
    label = f"com.docker.compose.project={project}"
    assert docker_client.containers.list(all=True, filters={"label": label}) == []
