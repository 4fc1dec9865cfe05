"""Kubernetes manifests: golden files per vendor, strict schema validation, the facts each must hold.

Set MBCTL_UPDATE_GOLDEN=1 to rewrite the golden files after an intended change (then review the diff).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import DIGEST, HERE, SUITE, VENDORS, job_of, plan_for, preparation
from typer.testing import CliRunner

from orchestrator.backends.base import Phase
from orchestrator.backends.kubernetes import K8sSettings, load_settings
from orchestrator.backends.kubernetes.manifests import (
    dns_label,
    job_manifest,
    job_name,
    label_value,
    render_bundle,
)
from orchestrator.backends.kubernetes.render import to_yaml
from orchestrator.errors import ConfigError
from orchestrator.images import image_refs
from orchestrator.plan import Job

pytestmark = pytest.mark.k8s

GOLDEN = HERE / "golden"
EXAMPLES = HERE.parent.parent / "k8s"
#: The oldest Kubernetes the manifests claim to work on, and the newest schema at hand.
SCHEMA_VERSIONS = ("1.28", "1.37")
RUN_ID = "20250101-000000-k8s-test-abcd"


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("MBCTL_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.is_file(), f"{path} is missing: run with MBCTL_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} changed: review, then run with MBCTL_UPDATE_GOLDEN=1"


def _pod(manifest: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return pod


def _container(manifest: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = _pod(manifest)["containers"][0]
    return container


def _env(manifest: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in _container(manifest)["env"]}


def _job(vendor: str, bench: str, phase: Phase = Phase.RUN, **settings: Any) -> dict[str, Any]:
    return job_manifest(
        job_of(plan_for(vendor), bench), K8sSettings(**settings), phase, run_id=RUN_ID
    )


# --- golden files and schemas -----------------------------------------------------------------


@pytest.mark.parametrize("vendor", VENDORS)
def test_golden_bundle_per_vendor(vendor: str) -> None:
    _golden(f"{vendor}.yaml", to_yaml(render_bundle(plan_for(vendor), K8sSettings())))


def test_golden_prepare_bundle() -> None:
    plan = preparation(plan_for("cuda"))
    _golden("cuda-prepare.yaml", to_yaml(render_bundle(plan, K8sSettings(), Phase.PREPARE)))


def _settings_with_everything() -> K8sSettings:
    return K8sSettings(
        namespace="bench",
        storage_class="cephfs",
        node_selector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        tolerations=(
            {"key": "dedicated", "operator": "Equal", "value": "bench", "effect": "NoSchedule"},
        ),
        affinity={
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["gpu"]}]}
                    ]
                }
            }
        },
        priority_class="benchmarks",
        image_pull_secrets=("registry-creds",),
        service_account="bench-runner",
        per_device={"memory": "200Gi", "cpu": "32"},
        guaranteed=True,
        queue_name="benchmarks",
        rdma_resources={"rdma/rdma_shared_device_a": "1"},
        ipc_lock=True,
        host_ipc=True,
        supplemental_groups=(44, 109),
    )


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
@pytest.mark.parametrize("phase", list(Phase))
@pytest.mark.parametrize("vendor", VENDORS)
def test_every_manifest_is_valid_for_the_api_schema(
    vendor: str, phase: Phase, version: str
) -> None:
    import kubernetes_validate

    plan = plan_for(vendor)
    assert {j.plan.value for j in plan.jobs} == {"per_gpu", "njobs", "nodes"}
    if phase is Phase.PREPARE:
        plan = preparation(plan)
    example = load_settings(EXAMPLES / "settings" / "example.yaml")
    for settings in (K8sSettings(), _settings_with_everything(), example):
        for name, manifest in render_bundle(plan, settings, phase).items():
            try:
                kubernetes_validate.validate(manifest, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(
                    f"{name} is invalid for Kubernetes {version}: {exc.message} at {list(exc.path)}"
                )


def test_checked_in_examples_are_current_and_valid() -> None:
    import kubernetes_validate

    from orchestrator import config
    from orchestrator.backends.kubernetes.render import KUSTOMIZATION
    from orchestrator.plan import make_plan, parse_devices

    suite = config.load_suite(config.suite_path("smoke"))
    refs = image_refs(suite, "cuda", registry="registry.example.com")
    plan = make_plan(suite, vendor="cuda", devices=parse_devices("1"), images=refs)
    bundle = render_bundle(plan, K8sSettings())
    expected = {**{name: to_yaml(m) for name, m in bundle.items()}}
    kustomization = yaml.safe_load((EXAMPLES / KUSTOMIZATION).read_text())
    assert kustomization["resources"] == list(bundle)
    for name, text in expected.items():
        assert (EXAMPLES / name).read_text() == text, (
            f"k8s/{name} is stale: see k8s/README.md to re-render"
        )
        kubernetes_validate.validate(yaml.safe_load(text), SCHEMA_VERSIONS[-1], strict=True)


# --- what every job must hold -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("vendor", "resource"),
    [
        ("cuda", "nvidia.com/gpu"),
        ("rocm", "amd.com/gpu"),
        ("hpu", "habana.ai/gaudi"),
        ("xpu", "gpu.intel.com/i915"),
    ],
)
def test_devices_go_in_limits_with_a_toleration_for_their_taint(vendor: str, resource: str) -> None:
    for bench, count in (("resnet50", "1"), ("dp-mlp", "2"), ("llm-2n", "2")):
        manifest = _job(vendor, bench)
        assert _container(manifest)["resources"]["limits"][resource] == count
        assert resource not in _container(manifest)["resources"]["requests"]
        assert _pod(manifest)["tolerations"][0] == {
            "key": resource,
            "operator": "Exists",
            "effect": "NoSchedule",
        }


def test_cpu_jobs_ask_for_no_device() -> None:
    manifest = _job("cpu", "resnet50")
    assert _container(manifest)["resources"] == {
        "requests": {"cpu": "4", "memory": "16Gi"},
        "limits": {"memory": "16Gi"},
    }
    assert "tolerations" not in _pod(manifest)


def test_xpu_resource_name_can_be_the_xe_driver() -> None:
    manifest = _job("xpu", "resnet50", resource_name="gpu.intel.com/xe")
    assert _container(manifest)["resources"]["limits"] == {
        "gpu.intel.com/xe": "1",
        "memory": "64Gi",
    }
    assert _pod(manifest)["tolerations"][0]["key"] == "gpu.intel.com/xe"


def test_suite_resources_replace_the_scaled_requests_and_limits() -> None:
    import kubernetes_validate

    from orchestrator.backends.kubernetes.manifests import cpu_quantity, job_resources
    from orchestrator.resources import Resources

    # smaller than two devices' 16 CPUs and 128Gi: both request and limit follow the suite
    resources = _container(_job("cuda", "llm-2n"))["resources"]
    assert resources == {
        "requests": {"cpu": "2500m", "memory": "96Gi"},
        "limits": {"cpu": "2500m", "memory": "96Gi", "nvidia.com/gpu": "2"},
    }
    # larger than the site's per-device values: the suite's still win, huge pages stay scaled
    job = job_of(plan_for("hpu"), "llm-2n")
    job = job.model_copy(update={"resources": Resources(memory="300Gi", cpus=40, pids=64)})
    manifest = job_manifest(job, K8sSettings(per_device={"cpu": "4"}), run_id=RUN_ID)
    resources = _container(manifest)["resources"]
    assert resources["requests"] == {"cpu": "40", "memory": "300Gi", "hugepages-2Mi": "4Gi"}
    assert resources["limits"]["cpu"] == "40" and resources["limits"]["memory"] == "300Gi"
    # pids have no place in a pod: nothing else appears
    assert set(resources["limits"]) == {"cpu", "memory", "hugepages-2Mi", "habana.ai/gaudi"}
    kubernetes_validate.validate(manifest, SCHEMA_VERSIONS[0], strict=True)
    # preparing data keeps the benchmark's limits
    prepare = _container(_job("cuda", "llm-2n", Phase.PREPARE))["resources"]
    assert prepare["limits"] == {"cpu": "2500m", "memory": "96Gi"}
    assert job_resources(None) == {} and job_resources(Resources(pids=10)) == {}
    assert job_resources(Resources(memory="512K")) == {"memory": "512k"}
    assert [cpu_quantity(c) for c in (1, 0.25, 1.5, 0.0001)] == ["1", "250m", "1500m", "1m"]


def test_environment_drops_visible_devices_and_points_at_the_volumes() -> None:
    for vendor in VENDORS:
        env = _env(_job(vendor, "resnet50"))
        assert not {"CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES",
                    "HABANA_VISIBLE_MODULES", "ZE_AFFINITY_MASK"} & set(env)  # fmt: skip
        assert env["MBCTL_DATA"] == "/data" and env["MBCTL_RESULTS"] == "/results"
        assert env["MBCTL_RUN_ID"] == RUN_ID
        assert env["MBCTL_JOB_ID"] == ("resnet50.0" if vendor == "cpu" else "resnet50.D0")
    assert _env(_job("cuda", "llm-2n"))["NCCL_DEBUG"] == "INFO"


def test_dollar_parens_in_arguments_and_environment_stay_literal() -> None:
    job = job_of(plan_for("cuda"), "resnet50")
    job = job.model_copy(update={"argv": ("--name", "$(HOSTNAME)"), "env": {"TAG": "a$(B)"}})
    manifest = job_manifest(job, K8sSettings(), run_id=RUN_ID)
    assert _container(manifest)["args"] == ["--name", "$$(HOSTNAME)"]
    assert _env(manifest)["TAG"] == "a$$(B)"


def test_volumes_shm_data_read_only_while_running_writable_while_preparing() -> None:
    run = _job("cuda", "resnet50", shm_size="32Gi", pvc="datasets")
    assert _pod(run)["volumes"] == [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "32Gi"}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "datasets", "readOnly": True}},
        {"name": "results", "emptyDir": {}},
    ]
    assert {m["mountPath"]: m.get("readOnly", False) for m in _container(run)["volumeMounts"]} == {
        "/dev/shm": False, "/data": True, "/results": False,
    }  # fmt: skip
    prepare = _job("cuda", "resnet50", Phase.PREPARE)
    assert _pod(prepare)["volumes"][1]["persistentVolumeClaim"]["readOnly"] is False
    assert _container(prepare)["command"] == ["python", "prepare.py"]
    assert "nvidia.com/gpu" not in _container(prepare)["resources"].get("limits", {})
    assert prepare["metadata"]["name"] == f"resnet50-d0-prepare-{RUN_ID}"


def test_job_spec_deadline_retries_ttl_and_labels() -> None:
    manifest = _job("cuda", "resnet50", backoff_limit=2, ttl_seconds=60)
    spec = manifest["spec"]
    assert (
        spec["activeDeadlineSeconds"],
        spec["backoffLimit"],
        spec["ttlSecondsAfterFinished"],
    ) == (3691, 2, 60)  # max_duration 90.5 + queue_timeout 3600: the backend measures its own
    assert _pod(manifest)["restartPolicy"] == "Never"
    assert manifest["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "mbctl",
        "mbctl.run": RUN_ID,
        "mbctl.job": "resnet50.D0",
        "mbctl.bench": "resnet50",
        "mbctl.phase": "run",
    }
    assert spec["template"]["metadata"]["labels"] == manifest["metadata"]["labels"]
    assert _container(manifest)["args"] == ["--batch-size", "64", "--amp"]
    assert _container(manifest)["image"] == f"registry.example/mbctl/convnet@{DIGEST}"


def test_user_scheduling_settings_reach_the_pod() -> None:
    settings = _settings_with_everything()
    manifest = job_manifest(job_of(plan_for("cuda"), "resnet50"), settings, run_id=RUN_ID)
    pod = _pod(manifest)
    assert manifest["metadata"]["namespace"] == "bench"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["tolerations"][1] == {
        "key": "dedicated",
        "operator": "Equal",
        "value": "bench",
        "effect": "NoSchedule",
    }
    assert pod["affinity"] == settings.affinity
    assert pod["priorityClassName"] == "benchmarks"
    assert pod["imagePullSecrets"] == [{"name": "registry-creds"}]
    assert pod["serviceAccountName"] == "bench-runner"
    assert pod["securityContext"]["supplementalGroups"] == [44, 109]
    assert _container(manifest)["resources"] == {
        "requests": {"cpu": "32", "memory": "200Gi"},
        "limits": {"nvidia.com/gpu": "1", "memory": "200Gi", "cpu": "32"},
    }
    assert pod["hostIPC"] is True
    assert manifest["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "benchmarks"
    assert manifest["spec"]["suspend"] is True
    assert "kueue.x-k8s.io/queue-name" not in manifest["spec"]["template"]["metadata"]["labels"]


@pytest.mark.parametrize("vendor", ["cpu", "cuda", "rocm", "xpu"])
def test_non_root_where_the_vendor_allows_it(vendor: str) -> None:
    manifest = _job(vendor, "resnet50")
    security = _pod(manifest)["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 1000
    assert _container(manifest)["securityContext"] == {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
    }  # fmt: skip
    assert "hostIPC" not in _pod(manifest)


def test_gaudi_gets_sys_nice_and_hugepages_scaled_but_no_host_ipc_unless_asked() -> None:
    manifest = _job("hpu", "dp-mlp")
    assert "securityContext" not in _pod(manifest)
    assert _container(manifest)["securityContext"] == {"capabilities": {"add": ["SYS_NICE"]}}
    assert "hostIPC" not in _pod(manifest)
    resources = _container(manifest)["resources"]
    # huge pages: requests == limits, as the API requires; two cards, twice the vendor's 2Gi
    assert resources["requests"]["hugepages-2Mi"] == resources["limits"]["hugepages-2Mi"] == "4Gi"
    assert resources["limits"]["memory"] == "128Gi"
    assert _pod(_job("hpu", "resnet50", host_ipc=True))["hostIPC"] is True
    prepare = _container(_job("hpu", "resnet50", Phase.PREPARE))["resources"]
    assert "hugepages-2Mi" not in prepare["requests"] and "habana.ai/gaudi" not in prepare["limits"]


def test_multi_node_is_an_indexed_job_behind_a_headless_service() -> None:
    from orchestrator.backends.kubernetes.manifests import service_manifest

    job = job_of(plan_for("cuda"), "llm-2n")
    manifest = job_manifest(job, K8sSettings(), run_id=RUN_ID)
    name = manifest["metadata"]["name"]
    spec = manifest["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 2, 2)
    assert _pod(manifest)["subdomain"] == name
    container = _container(manifest)
    # benchkit launches torchrun with static rendezvous from the MBCTL_* contract
    assert container["command"] == ["python", "main.py"]
    assert container["args"] == ["--size", "4096"]
    env = _env(manifest)
    assert env["MBCTL_NODE_RANK"] == {
        "fieldRef": {
            "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        }
    }
    assert (env["MBCTL_NNODES"], env["MBCTL_MASTER_ADDR"], env["MBCTL_MASTER_PORT"]) == (
        "2", f"{name}-0.{name}", "29500",
    )  # fmt: skip
    assert env["MBCTL_RDZV_TIMEOUT"] == "900"
    assert (
        _env(job_manifest(job, K8sSettings(rendezvous_timeout=1800), run_id=RUN_ID))[
            "MBCTL_RDZV_TIMEOUT"
        ]
        == "1800"
    )
    # one rank per machine, required
    assert _pod(manifest)["affinity"] == {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": {"job-name": name}},
                    "topologyKey": "kubernetes.io/hostname",
                }
            ]
        }
    }
    service = service_manifest(job, K8sSettings(), run_id=RUN_ID)
    assert service["metadata"]["name"] == name
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"job-name": name}
    prepare = job_manifest(job, K8sSettings(), Phase.PREPARE, run_id=RUN_ID)
    assert "completionMode" not in prepare["spec"] and "subdomain" not in _pod(prepare)


def test_a_job_without_an_image_is_refused() -> None:
    job = job_of(plan_for("cuda"), "resnet50").model_copy(update={"image": None})
    with pytest.raises(ConfigError, match=r"job resnet50.D0 has no image") as caught:
        job_manifest(job, K8sSettings(), run_id=RUN_ID)
    assert caught.value.hint is not None and "--lock" in caught.value.hint
    plan = plan_for("cuda")
    plan = plan.model_copy(
        update={"jobs": tuple(j.model_copy(update={"image": None}) for j in plan.jobs)}
    )
    with pytest.raises(ConfigError, match="no image for dp-mlp, llm-2n, resnet50"):
        render_bundle(plan, K8sSettings())


# --- names ------------------------------------------------------------------------------------


def test_names_are_dns_labels_and_label_values_are_safe() -> None:
    assert dns_label("resnet50.D0") == "resnet50-d0"
    assert dns_label("3d-unet.D1") == "mbctl-3d-unet-d1"
    long = dns_label(
        "a-very-long-benchmark-name-for-a-language-model.D7", "20250101-000000-standard-ab12"
    )
    assert len(long) == 63 and long[-9] == "-"
    assert long != dns_label(
        "a-very-long-benchmark-name-for-a-language-model.D6", "20250101-000000-standard-ab12"
    )
    assert label_value("resnet50.D0") == "resnet50.D0"
    assert label_value("bench/with spaces!") == "bench-with-spaces"
    assert len(label_value("x" * 80)) == 63


def test_multi_node_names_leave_room_for_the_pod_index() -> None:
    job = Job(
        id="l" * 70 + ".N12", bench="l" * 70, tag="N12", definition="matmul", vendor="cuda",
        devices=("0",), plan="nodes", nodes=12, max_duration=10, image="x",
    )  # fmt: skip
    name = job_name(job, Phase.RUN, RUN_ID)
    assert len(f"{name}-11") <= 63


# --- settings ---------------------------------------------------------------------------------


def test_settings_file_problems_are_reported_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "k8s.yaml"
    path.write_text(
        "namespace: bench\nshm_size: lots\ntolerations:\n  - key: a\n    operater: Exists\nnode_pool: gpu\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    text = str(caught.value)
    assert "3 problems" in text
    assert f"{path}:2: shm_size:" in text
    assert f"{path}:5: tolerations.0.operater: unknown key" in text
    assert f"{path}:6: node_pool: unknown key" in text


def test_settings_load_and_namespace_override(tmp_path: Path) -> None:
    path = tmp_path / "k8s.yaml"
    path.write_text(
        "namespace: bench\npvc: datasets\nper_device: {memory: 64Gi}\nqueue_timeout: 60\n"
    )
    settings = load_settings(path, namespace="other")
    assert (settings.namespace, settings.pvc, settings.per_device, settings.queue_timeout) == (
        "other", "datasets", {"memory": "64Gi"}, 60.0,
    )  # fmt: skip
    assert load_settings() == K8sSettings()
    with pytest.raises(ConfigError, match="--namespace 'Not_Valid'"):
        load_settings(namespace="Not_Valid")


# --- images and the CLI -----------------------------------------------------------------------


def test_image_refs_prefer_explicit_then_lock_then_registry(tmp_path: Path) -> None:
    from orchestrator import config, images

    suite = config.load_suite(SUITE)
    entry = images.LockEntry(
        ref=f"registry.example/mbctl/convnet@{DIGEST}",
        image_id=DIGEST,
        base=images.LockBase(name="nvcr.io/nvidia/pytorch:25.01-py3", digest=DIGEST),
    )
    lock = tmp_path / "images.lock.yaml"
    images.write_lock(images.Lock().updated("cuda", {"convnet": entry}), lock)
    refs = image_refs(suite, "cuda", registry="reg.local", lock=lock, explicit=["llm-2n=my/llm:1"])
    assert refs == {
        "resnet50": entry.ref,
        "dp-mlp": "reg.local/mbctl/jaxmlp:cuda",
        "llm-2n": "my/llm:1",
    }
    with pytest.raises(ConfigError, match="--image nope: no such benchmark"):
        image_refs(suite, "cuda", explicit=["nope=x"])
    with pytest.raises(ConfigError, match="expected BENCH=REF"):
        image_refs(suite, "cuda", explicit=["resnet50"])


def test_render_k8s_writes_one_file_per_object_and_a_kustomization(tmp_path: Path) -> None:
    from orchestrator.cli.main import app

    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["render", "k8s", "--vendor", "rocm", "--suite", str(SUITE), "--devices", "2", "--nodes", "2",
         "--registry", "reg.local", "--namespace", "bench", "--output", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(
        [
            "kustomization.yaml", "namespace-bench.yaml", "persistentvolumeclaim-mbctl-data.yaml",
            "serviceaccount-mbctl.yaml", "role-mbctl.yaml", "rolebinding-mbctl.yaml",
            "clusterrole-mbctl-node-reader.yaml", "clusterrolebinding-mbctl-node-reader-bench.yaml",
            "job-resnet50-d0.yaml", "job-resnet50-d1.yaml", "job-dp-mlp-0.yaml",
            "job-llm-2n-n2.yaml", "service-llm-2n-n2.yaml",
        ]
    )  # fmt: skip
    job = yaml.safe_load((out / "job-llm-2n-n2.yaml").read_text())
    assert job["metadata"]["namespace"] == "bench"
    assert _container(job)["image"] == "reg.local/mbctl/matmul:rocm"
    assert "&id" not in (out / "job-resnet50-d0.yaml").read_text()
    assert "not admitted as a gang" in result.stderr  # two nodes, no queue_name


@pytest.mark.parametrize("command", ["k8s", "slurm"])
def test_render_shows_one_registry_option_and_keeps_the_old_name(
    command: str, tmp_path: Path
) -> None:
    from orchestrator.cli.main import app

    runner = CliRunner()
    shown = runner.invoke(app, ["render", command, "--help"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "--registry" in shown.stdout
    assert "--image-registry" not in shown.stdout
    # Slurm only takes images with a container runtime
    site = tmp_path / "site.yaml"
    site.write_text("runtime: apptainer\n")
    extra = ["--slurm-config", str(site)] if command == "slurm" else []
    for name in ("--registry", "--image-registry"):
        out = tmp_path / name
        result = runner.invoke(
            app,
            ["render", command, "--vendor", "cpu", "--suite", str(SUITE), "--select", "dp-mlp",
             name, "reg.local", *extra, "-o", str(out)],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        written = "\n".join(p.read_text() for p in sorted(out.iterdir()) if p.is_file())
        assert "reg.local/mbctl/jaxmlp:cpu" in written


def test_render_k8s_errors_are_one_line_with_exit_code_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.cli.main import app

    runner = CliRunner()
    no_image = runner.invoke(
        app,
        [
            "render",
            "k8s",
            "--vendor",
            "cuda",
            "--suite",
            str(SUITE),
            "--devices",
            "1",
            "-o",
            str(tmp_path),
        ],
    )
    assert no_image.exit_code == 2
    assert "error: no image for dp-mlp, resnet50" in no_image.stderr
    no_device = runner.invoke(
        app,
        [
            "render",
            "k8s",
            "--vendor",
            "cuda",
            "--suite",
            str(SUITE),
            "--image-registry",
            "r",
            "-o",
            str(tmp_path),
        ],
    )
    assert no_device.exit_code == 2
    assert "nothing to render" in no_device.stderr and "pass --devices N" in no_device.stderr
    monkeypatch.setenv("MBCTL_BENCHMARKS", str(tmp_path / "no-benchmarks"))
    nothing_to_prepare = runner.invoke(
        app,
        ["render", "k8s", "--vendor", "cpu", "--suite", str(SUITE), "--image-registry", "r",
         "--phase", "prepare", "-o", str(tmp_path)],
    )  # fmt: skip
    assert nothing_to_prepare.exit_code == 2
    assert (
        "nothing to prepare: no benchmark of the selection has a prepare.py"
        in nothing_to_prepare.stderr
    )


def _render(tmp_path: Path, *args: str) -> dict[str, Any]:
    from orchestrator.cli.main import app

    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "render",
            "k8s",
            "--vendor",
            "cuda",
            "--image-registry",
            "r.example",
            "-o",
            str(out),
            *args,
        ],
    )
    assert result.exit_code == 0, result.output
    return {p.name: yaml.safe_load(p.read_text()) for p in out.glob("*.yaml")}


def test_render_standard_on_8_gpus_scales_requests_sets_pod_security_and_validates(
    tmp_path: Path,
) -> None:
    import kubernetes_validate

    files = _render(tmp_path, "--suite", "standard", "--devices", "8")
    namespace = files["namespace-mbctl.yaml"]["metadata"]["labels"]
    assert namespace["pod-security.kubernetes.io/enforce"] == "restricted"
    jobs = {n: m for n, m in files.items() if n.startswith("job-")}
    one = _container(jobs["job-bert-tf32-fp16-d0.yaml"])["resources"]
    assert one == {
        "requests": {"cpu": "8", "memory": "64Gi"},
        "limits": {"memory": "64Gi", "nvidia.com/gpu": "1"},
    }
    eight = [
        _container(m)["resources"] for m in jobs.values()
        if _container(m)["resources"]["limits"]["nvidia.com/gpu"] == "8"
    ]  # fmt: skip
    assert eight and all(r["requests"] == {"cpu": "64", "memory": "512Gi"} for r in eight)
    # per-GPU copies differ in names only: validating each benchmark's first one covers them
    copies = re.compile(r"-d[1-9]\.yaml$")
    for name, manifest in files.items():
        if name == "kustomization.yaml" or copies.search(name):
            continue
        for version in SCHEMA_VERSIONS:
            kubernetes_validate.validate(manifest, version, strict=True)


def test_render_two_nodes_with_a_queue_gives_static_rendezvous_anti_affinity_and_a_gang(
    tmp_path: Path,
) -> None:
    import kubernetes_validate

    settings = tmp_path / "k8s.yaml"
    settings.write_text("queue_name: benchmarks\nguaranteed: true\n")
    files = _render(
        tmp_path,
        "--suite",
        str(SUITE),
        "--devices",
        "8",
        "--nodes",
        "2",
        "--k8s-config",
        str(settings),
    )
    job = files["job-llm-2n-n2.yaml"]
    env = _env(job)
    assert (env["MBCTL_NNODES"], env["MBCTL_MASTER_ADDR"], env["MBCTL_MASTER_PORT"]) == (
        "2", "llm-2n-n2-0.llm-2n-n2", "29500",
    )  # fmt: skip
    assert "fieldRef" in env["MBCTL_NODE_RANK"]
    anti = _pod(job)["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert anti[0]["topologyKey"] == "kubernetes.io/hostname"
    # Kueue admits the Job's two pods together, or neither
    assert job["spec"]["suspend"] is True and job["spec"]["parallelism"] == 2
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "benchmarks"
    resources = _container(job)["resources"]
    # the suite's resources: (2.5 CPUs, 96Gi) replace 8 devices' 64 CPUs and 512Gi
    assert resources["requests"] == {"cpu": "2500m", "memory": "96Gi"}
    assert resources["limits"] == {
        "cpu": "2500m",
        "memory": "96Gi",
        "nvidia.com/gpu": "8",
    }  # Guaranteed
    one = _container(files["job-resnet50-d0.yaml"])["resources"]
    assert one["requests"] == {"cpu": "8", "memory": "64Gi"}
    assert files["service-llm-2n-n2.yaml"]["spec"]["clusterIP"] == "None"
    for name, manifest in files.items():
        if name != "kustomization.yaml":
            for version in SCHEMA_VERSIONS:
                kubernetes_validate.validate(manifest, version, strict=True)


@pytest.mark.parametrize("minor", range(28, 38))
def test_every_kubernetes_version_from_1_28_to_1_37_accepts_a_full_bundle(minor: int) -> None:
    import kubernetes_validate

    # the two ends are checked for every vendor above; the versions between, for one bundle
    # with every optional field set (Kueue, Guaranteed, RDMA, host IPC, anti-affinity)
    for phase in Phase:
        for manifest in render_bundle(
            plan_for("cuda"), _settings_with_everything(), phase
        ).values():
            kubernetes_validate.validate(manifest, f"1.{minor}", strict=True)
