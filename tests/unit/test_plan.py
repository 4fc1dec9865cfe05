"""Planning: suite × vendor × devices → jobs, pure and exact."""

from __future__ import annotations

import pytest

from orchestrator.config import Benchmark, Suite
from orchestrator.errors import ConfigError
from orchestrator.plan import Plan, PlanKind, make_plan, parse_devices
from orchestrator.vendors import Device


def suite(*benches: Benchmark) -> Suite:
    return Suite(name="t", benchmarks=benches)


def bench(name: str, **kw: object) -> Benchmark:
    return Benchmark.model_validate({"name": name, "definition": name, **kw})


GPUS = tuple(Device(index=str(i), name="H100", memory_mib=81559) for i in range(4))


def test_per_gpu_one_job_per_device_with_visible_devices() -> None:
    plan = make_plan(suite(bench("resnet50", argv={"batch-size": 64})), vendor="cuda", devices=GPUS)
    assert [j.id for j in plan.jobs] == ["resnet50.D0", "resnet50.D1", "resnet50.D2", "resnet50.D3"]
    job = plan.jobs[2]
    assert job.devices == ("2",) and job.device == "2"
    assert job.env == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "2"}
    assert job.argv == ("--batch-size", "64")


def test_rocm_sets_both_variables() -> None:
    plan = make_plan(suite(bench("x")), vendor="rocm", devices=GPUS[:1])
    assert plan.jobs[0].env == {"HIP_VISIBLE_DEVICES": "0", "ROCR_VISIBLE_DEVICES": "0"}


def test_njobs_and_nodes() -> None:
    s = suite(bench("ddp", plan={"njobs": 2}), bench("multi", plan={"nodes": 2}))
    plan = make_plan(s, vendor="cuda", devices=GPUS, nodes=2)
    ddp0, ddp1, multi = plan.jobs
    assert (ddp0.id, ddp1.id) == ("ddp.0", "ddp.1")
    assert ddp0.devices == ("0", "1", "2", "3") and ddp0.device is None
    assert ddp0.env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"
    assert (multi.id, multi.nodes, multi.plan) == ("multi.N2", 2, PlanKind.NODES)


def test_cpu_per_gpu_is_one_job() -> None:
    plan = make_plan(suite(bench("fp32")), vendor="cpu")
    assert [(j.id, j.devices, j.env) for j in plan.jobs] == [("fp32.0", (), {})]


@pytest.mark.parametrize(
    ("kw", "vendor", "devices", "nodes", "reason"),
    [
        ({"enabled": False}, "cuda", GPUS, 1, "disabled"),
        ({"vendors": ["cuda"]}, "rocm", GPUS, 1, "does not support rocm"),
        ({}, "cuda", (), 1, "no cuda device"),
        ({"requires": {"gpus": 8}}, "cuda", GPUS, 1, "needs 8 devices, 4 available"),
        ({"requires": {"gpu_memory_gb": 120}}, "cuda", GPUS, 1, "needs 120 GB per device"),
        ({"plan": {"nodes": 2}}, "cuda", GPUS, 1, "needs 2 nodes, 1 available"),
    ],
)
def test_skips_with_reason(
    kw: dict[str, object], vendor: str, devices: tuple[Device, ...], nodes: int, reason: str
) -> None:
    plan = make_plan(suite(bench("b", **kw)), vendor=vendor, devices=devices, nodes=nodes)
    assert not plan.jobs
    assert reason in plan.skipped[0].reason


def test_images_are_attached() -> None:
    plan = make_plan(suite(bench("b")), vendor="cpu", images={"b": "reg/mbctl/b@sha256:abc"})
    assert plan.jobs[0].image == "reg/mbctl/b@sha256:abc"


def test_unknown_vendor() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown vendor 'tpu'.*choose from cpu, cuda, rocm, hpu, xpu"
    ):
        make_plan(suite(bench("b")), vendor="tpu")


def test_parse_devices() -> None:
    assert [d.index for d in parse_devices("3")] == ["0", "1", "2"]
    assert [d.index for d in parse_devices("1,3")] == ["1", "3"]
    with pytest.raises(ConfigError, match="--devices 'all'"):
        parse_devices("all")


def _threads(plan: Plan) -> dict[str, str | None]:
    return {j.id: j.env.get("OMP_NUM_THREADS") for j in plan.jobs}


def test_cpu_threads_are_the_host_share_of_each_process() -> None:
    s = suite(
        bench("single", argv={"--devices": 1}),
        bench("gpus", argv={"--devices": 2}, plan={"njobs": 1}),
        bench("all", argv={"--devices": -1}, plan={"njobs": 1}),
        bench("plain"),
    )
    plan = make_plan(s, vendor="cpu", cpus=16)
    # 2 DDP workers get 8 threads each: the single process's 16 spread over the same CPUs.
    assert _threads(plan) == {"single.0": "16", "gpus.0": "8", "all.0": "16", "plain.0": "16"}


def test_accelerator_threads_split_the_host_per_device() -> None:
    s = suite(
        bench("per", argv={"--devices": 1}), bench("ddp", argv={"--devices": -1}, plan={"njobs": 1})
    )
    plan = make_plan(s, vendor="cuda", devices=GPUS, cpus=96)
    assert set(_threads(plan).values()) == {"24"}  # one process per device either way


def test_threads_never_zero_and_suite_env_wins() -> None:
    s = suite(
        bench("many", argv={"--devices": 8}, plan={"njobs": 1}),
        bench("own", env={"OMP_NUM_THREADS": "3"}),
    )
    assert _threads(make_plan(s, vendor="cpu", cpus=4)) == {"many.0": "1", "own.0": "3"}
    assert _threads(make_plan(s, vendor="cpu")) == {"many.0": None, "own.0": "3"}


def test_planned_benchmark_is_skipped_as_not_built_yet() -> None:
    plan = make_plan(suite(bench("later", status="planned"), bench("now")), vendor="cpu")
    assert [j.bench for j in plan.jobs] == ["now"]
    assert [(s.bench, s.reason) for s in plan.skipped] == [("later", "not built yet")]
