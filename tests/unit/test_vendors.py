"""The vendor table: exposure per vendor (exact), smi parsing, render-node discovery, detection."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import vendors
from orchestrator.errors import ConfigError
from orchestrator.vendors import HostFacts, Vendor


def test_every_vendor_has_a_spec() -> None:
    assert set(vendors.VENDORS) == set(Vendor)
    for spec in vendors.VENDORS.values():
        assert spec.base_image
    assert vendors.get("cuda").k8s_resource == "nvidia.com/gpu"
    with pytest.raises(ConfigError, match="unknown vendor 'nvidia'"):
        vendors.get("nvidia")


def test_cuda_exposure_renumbers_inside_the_container() -> None:
    kw = vendors.docker_exposure("cuda", ["2", "3"])
    assert kw["device_requests"] == [
        {"driver": "nvidia", "device_ids": ["2", "3"], "capabilities": [["gpu"]]}
    ]
    assert kw["environment"] == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "0,1"}
    assert kw["ipc_mode"] == "host"
    assert {u["name"] for u in kw["ulimits"]} == {"memlock", "stack"}
    assert "privileged" not in kw


def test_rocm_exposes_only_chosen_render_nodes() -> None:
    host = HostFacts(
        render_nodes=("/dev/dri/renderD128", "/dev/dri/renderD136"), video_gid=44, render_gid=109
    )
    kw = vendors.docker_exposure("rocm", ["1"], host, shm_size="16g")
    assert kw == {
        "devices": ["/dev/kfd:/dev/kfd:rwm", "/dev/dri/renderD136:/dev/dri/renderD136:rwm"],
        "group_add": ["44", "109"],
        "security_opt": ["seccomp=unconfined"],
        "ipc_mode": "host",
        "shm_size": "16g",
        "environment": {"HIP_VISIBLE_DEVICES": "0", "ROCR_VISIBLE_DEVICES": "0"},
    }
    with pytest.raises(ConfigError, match="rocm device 5 has no render node"):
        vendors.docker_exposure("rocm", ["5"], host)


def test_hpu_xpu_cpu_exposure() -> None:
    hpu = vendors.docker_exposure("hpu", ["0", "1"])
    assert hpu["runtime"] == "habana" and hpu["cap_add"] == ["SYS_NICE"]
    assert hpu["environment"] == {"HABANA_VISIBLE_MODULES": "0,1"}
    assert hpu["network_mode"] == "host" and hpu["ipc_mode"] == "host"
    assert vendors.docker_exposure("xpu", ["0"])["devices"] == ["/dev/dri:/dev/dri:rwm"]
    assert vendors.docker_exposure("cpu", []) == {"shm_size": "8g"}


def test_rocm_render_nodes_follow_kfd_order(tmp_path: Path) -> None:
    for node, minor in (("0", 0), ("1", 136), ("2", 128)):
        (tmp_path / node).mkdir()
        (tmp_path / node / "properties").write_text(
            f"cpu_cores_count 0\ndrm_render_minor {minor}\n"
        )
    assert vendors.rocm_render_nodes(tmp_path) == ["/dev/dri/renderD136", "/dev/dri/renderD128"]
    assert vendors.rocm_render_nodes(tmp_path / "absent") == []


def test_parse_smi_csv() -> None:
    text = (
        "0, HL-225, 98304 MiB, 01P4-HL2080A0-15-TNBS56-10-07-10\n1, HL-225, 98304, x\nbogus line\n"
    )
    devices = vendors.parse_smi_csv(text)
    assert [(d.index, d.name, d.memory_mib) for d in devices] == [
        ("0", "HL-225", 98304),
        ("1", "HL-225", 98304),
    ]


def test_detect_falls_back_to_cpu_with_reasons() -> None:
    found = vendors.detect()
    if found.vendor is not Vendor.CPU:
        pytest.skip("this machine has an accelerator")
    assert found.devices == ()
    assert [r.split(":")[0] for r in found.reasons] == ["cuda", "rocm", "hpu", "xpu", "cpu"]
