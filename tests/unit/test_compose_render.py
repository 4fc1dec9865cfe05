"""Compose rendering without an engine: the translation of container specs, and the checked-in example."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from test_container_spec import ROCM_HOST, SETTINGS, context, make_job
from typer.testing import CliRunner

from orchestrator import vendors
from orchestrator.backends.base import Phase
from orchestrator.backends.docker import DockerSettings, container_spec
from orchestrator.cli.main import app
from orchestrator.compose import compose_service, dump_compose, render_compose
from orchestrator.errors import ConfigError
from orchestrator.plan import Plan

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "compose" / "smoke-cpu.yml"
#: The command that renders compose/smoke-cpu.yml (compose/README.md shows it too).
EXAMPLE_ARGS = (
    "render", "compose", "--vendor", "cpu", "--suite", "smoke", "--image-registry", "registry.example.com",
    "--user", "1000:1000",
)  # fmt: skip


def plan_of(vendor: str, *jobs_devices: tuple[str, ...]) -> Plan:
    jobs = tuple(make_job(vendor, devices) for devices in jobs_devices or [("0",)])
    return Plan(suite="smoke", vendor=vendor, devices=(), nodes=1, jobs=jobs)


@pytest.mark.parametrize("vendor", [v.value for v in vendors.Vendor])
def test_every_spec_key_has_a_compose_equivalent(vendor: str) -> None:
    spec = container_spec(make_job(vendor), context(), SETTINGS, ROCM_HOST)
    service = compose_service(spec)
    assert "name" not in service and "detach" not in service
    assert service["privileged"] is False
    assert service["image"] == spec["image"] and service["command"] == spec["command"]
    assert service["environment"] == spec["environment"]


def test_an_unknown_spec_key_is_an_error_so_backend_and_compose_cannot_drift() -> None:
    spec = container_spec(make_job("cpu"), context(), SETTINGS)
    with pytest.raises(ValueError, match="'oom_kill_disable' has no Compose equivalent"):
        compose_service({**spec, "oom_kill_disable": True})


def test_cuda_devices_become_a_device_reservation() -> None:
    service = compose_service(container_spec(make_job("cuda", ("3",)), context(), SETTINGS))
    assert service["deploy"] == {
        "resources": {
            "reservations": {
                "devices": [{"driver": "nvidia", "device_ids": ["3"], "capabilities": ["gpu"]}]
            }
        }
    }
    assert service["ipc"] == "host"
    assert service["ulimits"]["memlock"] == {"soft": -1, "hard": -1}
    assert service["environment"]["CUDA_VISIBLE_DEVICES"] == "0"


def test_rocm_hpu_xpu_exposure() -> None:
    rocm = compose_service(container_spec(make_job("rocm"), context(), SETTINGS, ROCM_HOST))
    assert rocm["devices"] == [
        "/dev/kfd:/dev/kfd:rwm",
        "/dev/dri/renderD129:/dev/dri/renderD129:rwm",
    ]
    assert rocm["group_add"] == ["44", "109"] and rocm["security_opt"] == [
        "seccomp=unconfined",
        "no-new-privileges:true",
    ]
    hpu = compose_service(container_spec(make_job("hpu"), context(), SETTINGS))
    assert (
        hpu["runtime"] == "habana"
        and hpu["network_mode"] == "host"
        and hpu["cap_add"] == ["SYS_NICE"]
    )
    xpu = compose_service(container_spec(make_job("xpu"), context(), SETTINGS))
    assert xpu["devices"] == ["/dev/dri:/dev/dri:rwm"]


def test_render_uses_placeholders_profiles_and_escapes_dollars() -> None:
    plan = plan_of("cuda", ("0",), ("1",))
    jobs = tuple(j.model_copy(update={"argv": ("--name", "$HOME")}) for j in plan.jobs)
    doc = render_compose(plan.model_copy(update={"jobs": jobs}), SETTINGS)
    assert list(doc["services"]) == ["fp32.D0", "fp32.D1"]
    service = doc["services"]["fp32.D1"]
    assert service["profiles"] == ["fp32"]
    assert service["command"] == ["--name", "$$HOME"]
    assert service["user"] == "${MBCTL_USER:-1000:1000}"
    assert service["volumes"] == [
        "${MBCTL_DATA:-./data}:/data:ro",
        "${MBCTL_RESULTS:-./results}/files/fp32.D1:/results:rw",
    ]
    assert service["labels"]["mbctl.run"] == "compose-smoke"
    prepare = render_compose(plan, SETTINGS, data="/mnt/cache", phase=Phase.PREPARE)["services"][
        "fp32.D0"
    ]
    assert prepare["volumes"][0] == "/mnt/cache:/data:rw"
    assert prepare["entrypoint"] == ["python", "prepare.py"]
    assert "user" not in render_compose(plan, DockerSettings(user=None))["services"]["fp32.D0"]


def test_colliding_service_names_are_an_error() -> None:
    plan = plan_of("cpu")
    twin = plan.jobs[0].model_copy(update={"id": "fp32+0"})
    clash = plan.jobs[0].model_copy(update={"id": "fp32=0"})
    with pytest.raises(ConfigError, match="same Compose service name"):
        render_compose(plan.model_copy(update={"jobs": (twin, clash)}), SETTINGS)


def test_dump_is_yaml_with_a_header() -> None:
    text = dump_compose(render_compose(plan_of("cpu"), SETTINGS))
    assert text.startswith("# Rendered by `mbctl render compose`")
    assert "--profile fp32 up" in text
    assert yaml.safe_load(text)["x-mbctl"] == {"suite": "smoke", "vendor": "cpu", "phase": "run"}


def test_checked_in_example_is_what_render_writes(tmp_path: Path) -> None:
    out = tmp_path / "smoke-cpu.yml"
    result = CliRunner().invoke(app, [*EXAMPLE_ARGS, "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "--profile fp32 up" in result.output
    assert out.read_text() == EXAMPLE.read_text(), (
        "compose/smoke-cpu.yml is stale: render it again (compose/README.md)"
    )


def test_cli_without_images_says_how_to_get_them(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["render", "compose", "--vendor", "cpu", "--output", str(tmp_path / "c.yml")]
    )
    assert result.exit_code == 2
    assert "error: no image for convnet, fp32, jax-mlp (vendor cpu)" in result.output
    assert "--lock" in result.output and "--registry" in result.output


def test_cli_rejects_a_bad_user(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, [*EXAMPLE_ARGS[:-2], "--user", "a b", "--output", str(tmp_path / "c.yml")]
    )
    assert result.exit_code == 2
    assert "--user" in result.output
