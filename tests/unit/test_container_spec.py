"""The Docker backend without an engine: container specs (golden per vendor), exit judging, image records.

Golden specs live in tests/golden/docker/<name>.json. After an intended change to the spec (or to
the vendor table it reads), rewrite them with MBCTL_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from orchestrator import vendors
from orchestrator.backends.base import Phase, RunContext, Status
from orchestrator.backends.docker import (
    DockerBackend,
    DockerSettings,
    container_name,
    container_spec,
    image_record,
    invoking_user,
    judge,
    sdk_arguments,
)
from orchestrator.errors import BackendUnavailable, ConfigError
from orchestrator.plan import Job, PlanKind
from orchestrator.vendors import HostFacts

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "docker"
IMAGE = "registry.example.com/mbctl/matmul@sha256:" + "ab" * 32
SETTINGS = DockerSettings(user="1000:1000", shm_size="8g")
ROCM_HOST = HostFacts(
    render_nodes=("/dev/dri/renderD128", "/dev/dri/renderD129", "/dev/dri/renderD130"),
    video_gid=44,
    render_gid=109,
)


def make_job(vendor: str, devices: tuple[str, ...] = ("1",), **kw: Any) -> Job:
    """A per-GPU job on host device 1, with the env the planner gives it (host numbering)."""
    spec = vendors.get(vendor)
    devices = devices if spec.vendor is not vendors.Vendor.CPU else ()
    tag = f"D{devices[0]}" if devices else "0"
    fields: dict[str, Any] = {
        "id": f"fp32.{tag}",
        "bench": "fp32",
        "tag": tag,
        "definition": "matmul",
        "argv": ("--dtype", "fp32", "--size", "512"),
        "env": {"OMP_NUM_THREADS": "4", **spec.visible_devices(devices)},
        "vendor": spec.vendor.value,
        "devices": devices,
        "plan": PlanKind.PER_GPU,
        "max_duration": 120,
        "image": IMAGE,
    }
    return Job(**{**fields, **kw})


def context(phase: Phase = Phase.RUN) -> RunContext:
    return RunContext(
        run_id="20261123-104501-smoke-3f2a",
        run_dir=Path("/srv/runs/20261123-104501-smoke-3f2a"),
        data_dir=Path("/srv/cache/data"),
        benchmarks_root=Path("/srv/mbctl/benchmarks"),
        phase=phase,
    )


def check_golden(name: str, spec: dict[str, Any]) -> None:
    text = json.dumps(spec, indent=2, sort_keys=True) + "\n"
    path = GOLDEN / f"{name}.json"
    if os.environ.get("MBCTL_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"{path} is missing: run with MBCTL_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} changed: review, then run with MBCTL_UPDATE_GOLDEN=1"


@pytest.mark.parametrize("vendor", [v.value for v in vendors.Vendor])
def test_golden_spec_per_vendor(vendor: str) -> None:
    spec = container_spec(make_job(vendor), context(), SETTINGS, ROCM_HOST)
    json.dumps(spec)  # plain data only: the backend converts to docker.types at call time
    check_golden(vendor, spec)


def test_golden_prepare_spec() -> None:
    check_golden("cpu-prepare", container_spec(make_job("cpu"), context(Phase.PREPARE), SETTINGS))


def test_every_spec_is_unprivileged_detached_and_labelled() -> None:
    for vendor in vendors.Vendor:
        spec = container_spec(make_job(vendor.value), context(), SETTINGS, ROCM_HOST)
        assert spec["privileged"] is False and spec["detach"] is True
        assert "remove" not in spec and "auto_remove" not in spec  # the exit state is read first
        assert spec["labels"]["mbctl.run"] == "20261123-104501-smoke-3f2a"
        assert spec["labels"]["mbctl.job"] == spec["environment"]["MBCTL_JOB_ID"]


def test_devices_are_renumbered_inside_the_container() -> None:
    """Host device 1 is exposed, and the container sees it as device 0."""
    cuda = container_spec(make_job("cuda"), context(), SETTINGS)
    assert cuda["device_requests"][0]["device_ids"] == ["1"]
    assert cuda["environment"]["CUDA_VISIBLE_DEVICES"] == "0"
    rocm = container_spec(make_job("rocm"), context(), SETTINGS, ROCM_HOST)
    assert "/dev/dri/renderD129:/dev/dri/renderD129:rwm" in rocm["devices"]
    assert not any("renderD128" in d or "renderD130" in d for d in rocm["devices"])
    assert (
        rocm["environment"]["HIP_VISIBLE_DEVICES"]
        == rocm["environment"]["ROCR_VISIBLE_DEVICES"]
        == "0"
    )
    # Habana's runtime and the Level Zero mask number devices as the host does
    assert (
        container_spec(make_job("hpu"), context(), SETTINGS)["environment"][
            "HABANA_VISIBLE_MODULES"
        ]
        == "1"
    )
    assert (
        container_spec(make_job("xpu"), context(), SETTINGS)["environment"]["ZE_AFFINITY_MASK"]
        == "1"
    )


def test_data_is_read_only_in_run_and_writable_in_prepare() -> None:
    run = container_spec(make_job("cpu"), context(), SETTINGS)
    prepare = container_spec(make_job("cpu"), context(Phase.PREPARE), SETTINGS)
    assert run["volumes"]["/srv/cache/data"] == {"bind": "/data", "mode": "ro"}
    assert prepare["volumes"]["/srv/cache/data"] == {"bind": "/data", "mode": "rw"}
    results = "/srv/runs/20261123-104501-smoke-3f2a/files/fp32.0"
    assert run["volumes"][results] == {"bind": "/results", "mode": "rw"}
    assert "entrypoint" not in run and run["command"] == ["--dtype", "fp32", "--size", "512"]
    assert prepare["entrypoint"] == ["python", "prepare.py"]
    assert prepare["environment"]["MBCTL_PHASE"] == "prepare"
    assert (
        run["environment"]["MBCTL_DATA"] == "/data"
        and run["environment"]["MBCTL_RESULTS"] == "/results"
    )


def test_settings_user_memory_and_shm() -> None:
    job = make_job("cpu")
    assert container_spec(job, context(), DockerSettings())["user"] == invoking_user()
    assert "user" not in container_spec(job, context(), DockerSettings(user=None))
    limited = container_spec(job, context(), DockerSettings(mem_limit="96m", shm_size="1g"))
    assert limited["mem_limit"] == limited["memswap_limit"] == "96m"
    assert limited["shm_size"] == "1g"
    with pytest.raises(ValueError):
        DockerSettings(shm_size="lots")
    with pytest.raises(ValueError):
        DockerSettings(user="0:0; rm -rf /")


def test_job_without_image_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        container_spec(make_job("cuda", image=None), context(), SETTINGS)
    assert (
        str(info.value)
        == "benchmark fp32 has no image for vendor cuda (run `mbctl build` or pass --lock)"
    )
    assert info.value.exit_code == 2


def test_rocm_device_without_render_node_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="rocm device 1 has no render node"):
        container_spec(make_job("rocm"), context(), SETTINGS, HostFacts())


def test_container_names_are_sanitised() -> None:
    assert (
        container_name("20261123-104501-smoke-3f2a", "fp32.D0")
        == "mbctl-20261123-104501-smoke-3f2a-fp32.D0"
    )
    assert container_name("r 1", "a+b=c/d") == "mbctl-r-1-a-b-c-d"


def test_sdk_arguments_build_docker_types() -> None:
    from docker.types import DeviceRequest, Ulimit

    kwargs = sdk_arguments(container_spec(make_job("cuda"), context(), SETTINGS))
    assert isinstance(kwargs["device_requests"][0], DeviceRequest)
    assert kwargs["device_requests"][0]["DeviceIDs"] == ["1"]
    assert kwargs["device_requests"][0]["Capabilities"] == [["gpu"]]
    assert all(isinstance(u, Ulimit) for u in kwargs["ulimits"])


@pytest.mark.parametrize(
    ("state", "status", "reason"),
    [
        ({"ExitCode": 0}, Status.OK, None),
        ({"ExitCode": 3}, Status.FAILED, "exited with code 3"),
        (
            {"ExitCode": 137, "OOMKilled": True},
            Status.OOM,
            "killed by the out-of-memory killer (exit 137)",
        ),
        (
            {"ExitCode": 137, "OOMKilled": False},
            Status.FAILED,
            "killed by SIGKILL (exit 137, not by the out-of-memory killer)",
        ),
        ({"ExitCode": 143}, Status.FAILED, "killed by SIGTERM (exit 143)"),
        ({"ExitCode": 127, "Error": 'exec: "python": not found'}, Status.ERROR, None),
    ],
)
def test_judge(state: dict[str, Any], status: Status, reason: str | None) -> None:
    result = judge(state)
    assert result.status is status and result.return_code == state["ExitCode"]
    if reason is not None:
        assert result.reason == reason
    elif status is Status.ERROR:
        assert result.reason is not None and "python" in result.reason


def test_image_record_picks_the_digest_of_the_repository_that_ran() -> None:
    image_id = "sha256:" + "1" * 64
    digests = [
        "other.example/x@sha256:" + "2" * 64,
        "localhost:5000/mbctl/matmul@sha256:" + "3" * 64,
    ]
    assert image_record("localhost:5000/mbctl/matmul:cpu-abc", image_id, digests) == {
        "ref": "localhost:5000/mbctl/matmul:cpu-abc",
        "id": image_id,
        "digest": "localhost:5000/mbctl/matmul@sha256:" + "3" * 64,
    }
    assert image_record("mbctl-test/scripted:dev", image_id, [])["digest"] is None
    assert (
        image_record("python:3.11", image_id, ["python@sha256:" + "4" * 64])["digest"]
        == "python@sha256:" + "4" * 64
    )
    assert image_record("docker.io/library/python:3.11", image_id, ["python@sha256:" + "4" * 64])[
        "digest"
    ]
    # pinned by digest but run from an image the engine lists no repo digest for (loaded, not pulled)
    assert image_record(IMAGE, image_id, [])["digest"] == IMAGE


def test_check_names_the_engine_and_how_to_start_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no.sock")
    with pytest.raises(BackendUnavailable) as info:
        DockerBackend().check()
    message = str(info.value)
    assert message.startswith(f"Docker engine not reachable at unix://{tmp_path}/no.sock: ")
    assert message.endswith("(start dockerd (make docker-up) or set DOCKER_HOST)")
    assert info.value.exit_code == 3
