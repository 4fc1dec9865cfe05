"""What a real cluster does to mbctl's jobs, through the fake API server: queueing and Kueue,
gang admission, Pod Security, node identity, node loss, multi-node runs, clean-up."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import scenarios
from fakeapi import Cluster, FakeApiServer, Kueue, gpu_node, pod_security_violations
from helpers import SUITE, VENDORS, drive, job_of, plan_for
from typer.testing import CliRunner

from orchestrator.backends.base import Phase, RunContext, Status
from orchestrator.backends.kubernetes import K8sSettings
from orchestrator.backends.kubernetes.manifests import (
    PSS_LEVELS,
    bundle_security_level,
    job_manifest,
    pod_security_level,
    render_bundle,
)
from orchestrator.plan import Job

pytestmark = pytest.mark.k8s

Backend = Callable[..., Any]
RUN_ID = "20250101-000000-k8s-test-abcd"


def _job(cluster: Cluster, scenario: Any, bench: str = "resnet50", **update: Any) -> Job:
    job = job_of(plan_for("cuda"), bench).model_copy(update=update)
    cluster.scenarios[job.id] = scenario
    return job


def _kubeconfig(api: FakeApiServer, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": api.url}}],
                "users": [{"name": "me", "user": {"token": "not-a-secret"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "me"}}],
                "current-context": "fake",
            }
        )
    )
    return path


def _execute(job: Job, backend: Any, tmp_path: Path) -> tuple[Any, Any]:
    """Run one job as ``mbctl run`` does (runner + run folder); the outcome and the folder."""
    from orchestrator.results import RunDir
    from orchestrator.runner import execute

    plan = plan_for("cuda")
    plan = plan.model_copy(update={"jobs": (job,)})
    run = RunDir.create(tmp_path / "runs", {"suite": {"name": plan.suite}}, run_id="k8s-run")
    ctx = RunContext(
        run_id=run.run_id, run_dir=run.path, data_dir=tmp_path, benchmarks_root=tmp_path
    )
    return execute(plan, backend, run, ctx), run


# --- queueing ---------------------------------------------------------------------------------


def test_a_job_pending_longer_than_its_limit_but_within_the_queue_budget_runs_and_is_scored(
    cluster: Cluster, make_backend: Backend, tmp_path: Path
) -> None:
    from orchestrator.report import report

    # Pending 0.6 s with a 0.3 s measurement limit: before, the limit counted the wait
    job = _job(cluster, scenarios.queued_then_success(0.6), max_duration=0.3)
    outcome, run = _execute(job, make_backend(queue_timeout=60), tmp_path)
    assert [(s.status, s.reason) for s in outcome.states] == [("ok", None)]
    bench = report([run.path]).benchmarks[0]
    assert (bench.name, bench.n, bench.fail) == ("resnet50", 1, 0)
    assert bench.score > 0


def test_a_job_still_pending_past_the_queue_budget_is_queued_not_failed(
    cluster: Cluster, make_backend: Backend, tmp_path: Path
) -> None:
    job = _job(cluster, scenarios.unschedulable, max_duration=600)
    outcome, run = _execute(job, make_backend(queue_timeout=0.3), tmp_path)
    state = outcome.states[0]
    assert state.status == Status.QUEUED
    assert state.reason.startswith("still queued after 0.3s: FailedScheduling: 0/3 nodes")
    exit_event = [json.loads(x) for x in run.events_path(job.id).read_text().splitlines()][-1]
    assert exit_event["status"] == "queued"
    assert run.completed_job_ids() == set()  # --resume runs it again
    assert ("Job", "resnet50-d0-k8s-run", "Background") in cluster.deleted


def test_kueue_admits_the_suspended_job_and_its_clock_starts_when_it_runs(
    cluster: Cluster, make_backend: Backend, ctx: RunContext
) -> None:
    cluster.kueue = Kueue(nodes=2, delay=0.3)
    job = _job(cluster, scenarios.success)
    backend = make_backend(queue_name="benchmarks")
    handle = backend.submit(job, ctx)
    created = cluster.jobs[handle.native.name]
    assert created["spec"]["suspend"] is True
    assert created["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "benchmarks"
    assert backend.wait(handle, timeout=0.1) is None
    assert backend.running_since(handle) is None
    assert handle.native.queued_reason == "waiting for Kueue to admit it (queue benchmarks)"
    lines = list(backend.stream(handle))
    result = backend.wait(handle, timeout=15)
    assert result is not None and result.status is Status.OK
    assert backend.running_since(handle) is not None
    assert cluster.kueue.admitted == [] and len(lines) == len(scenarios.bench_output()) + 1


def test_a_gang_that_does_not_fit_is_never_half_placed(
    cluster: Cluster, make_backend: Backend, ctx: RunContext
) -> None:
    cluster.kueue = Kueue(nodes=1)  # one free node for a two-node job
    job = _job(cluster, scenarios.two_nodes, bench="llm-2n")
    ran = drive(make_backend(queue_name="benchmarks", queue_timeout=0.5), job, ctx)
    assert ran.exit.status is Status.QUEUED
    assert ran.exit.reason is not None and "waiting for Kueue to admit it" in ran.exit.reason
    assert cluster.pods == {} and ran.lines == []


def test_without_a_second_node_rank_one_stays_pending_and_the_job_is_queued(
    cluster: Cluster, make_backend: Backend, ctx: RunContext
) -> None:
    # required anti-affinity: two ranks never share one machine, even with GPUs to spare
    cluster.nodes = {"gpu-node-a": gpu_node("gpu-node-a")}
    job = _job(cluster, scenarios.two_nodes, bench="llm-2n")
    ran = drive(make_backend(queue_timeout=0.5), job, ctx)
    assert ran.exit.status is Status.QUEUED
    assert ran.exit.reason is not None and "didn't match pod anti-affinity" in ran.exit.reason
    assert not cluster.jobs and not cluster.services  # deleted, nothing left waiting


# --- multi-node -------------------------------------------------------------------------------


def test_two_ranks_land_on_two_nodes_with_static_rendezvous_to_rank_zero(
    cluster: Cluster, make_backend: Backend, ctx: RunContext
) -> None:
    cluster.kueue = Kueue(nodes=2)
    job = _job(cluster, scenarios.two_nodes, bench="llm-2n")
    ran = drive(make_backend(queue_name="benchmarks"), job, ctx)
    assert ran.exit.status is Status.OK
    assert [(n["rank"], n["node"]["name"]) for n in ran.nodes] == [
        (0, "gpu-node-a"),
        (1, "gpu-node-b"),
    ]
    assert cluster.kueue.admitted == []  # released when the Job was deleted
    name = "llm-2n-n2-20250101-000000-k8s-test-abcd"
    assert [v for v in cluster.validated if v[0] == "Service"] == [("Service", name)]


def test_the_service_is_owned_by_its_job_and_goes_with_it(
    cluster: Cluster, make_backend: Backend, ctx: RunContext
) -> None:
    job = _job(cluster, scenarios.nothing, bench="llm-2n")
    backend = make_backend(keep=True)
    handle = backend.submit(job, ctx)
    name = handle.native.name
    owner = cluster.services[name]["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        "Job",
        name,
        cluster.jobs[name]["metadata"]["uid"],
    )
    assert cluster.delete_job(name) and name not in cluster.services


def test_mbctl_run_nodes_2_runs_a_two_node_benchmark_and_meta_names_the_nodes(
    api: FakeApiServer, tmp_path: Path
) -> None:
    from orchestrator.cli.main import app

    cluster = api.cluster
    cluster.scenarios["llm-2n.N2"] = scenarios.two_nodes
    kubeconfig = _kubeconfig(api, tmp_path)
    result = CliRunner().invoke(
        app,
        ["run", "--backend", "kubernetes", "--nodes", "2", "--vendor", "cuda", "--devices", "2",
         "--suite", str(SUITE), "--select", "llm-2n", "--image", "llm-2n=registry.example/m:1",
         "--kubeconfig", str(kubeconfig), "--results", str(tmp_path / "runs")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (run,) = [p for p in (tmp_path / "runs").iterdir() if p.name != "latest"]
    meta = json.loads((run / "meta.json").read_text())
    assert sorted(meta["nodes"]) == ["gpu-node-a", "gpu-node-b"]
    node = meta["nodes"]["gpu-node-a"]
    assert node["labels"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert (node["device_resource"], node["devices"]) == ("nvidia.com/gpu", 8)
    assert meta["system"]["accelerators"] | {"devices": []} == {
        "vendor": "cuda",
        "count": 8,
        "model": "NVIDIA-H100-80GB-HBM3",
        "memory_mib": 81559,
        "driver": "550.90.07",
        "devices": [],
    }
    assert meta["system"]["host"]["hostname"] == "gpu-node-a" and meta["system"]["nodes"] == 2
    assert "hostname" in meta["controller"]["host"]  # the workstation, kept apart
    events = [json.loads(x) for x in (run / "llm-2n.N2.jsonl").read_text().splitlines()]
    placed = [(e["rank"], e["node"]["name"]) for e in events if e.get("kind") == "node"]
    assert placed == [(0, "gpu-node-a"), (1, "gpu-node-b")]


# --- hardware identity ------------------------------------------------------------------------


def test_node_identity_without_the_node_reader_role_is_the_name_alone(
    cluster: Cluster, make_backend: Backend, ctx: RunContext
) -> None:
    cluster.forbid_nodes = True
    ran = drive(make_backend(), _job(cluster, scenarios.success), ctx)
    assert ran.exit.status is Status.OK
    (record,) = ran.nodes
    assert record["node"]["name"] == "gpu-node-a" and "403" in record["node"]["error"]


def test_system_from_an_amd_node_and_from_a_node_that_could_not_be_read() -> None:
    from orchestrator.backends.kubernetes.nodes import describe_node, system_from_nodes

    node = gpu_node("mi300x-1")
    node["metadata"]["labels"] = {
        "kubernetes.io/arch": "amd64",
        "amd.com/gpu.product-name": "AMD_Instinct_MI300X_OAM",
        "amd.com/gpu.driver-version": "6.8.5",
        "amd.com/gpu.vram": "192G",
        "unrelated.example/label": "dropped",
    }
    node["status"]["allocatable"] = {"cpu": "192", "memory": "1900Gi", "amd.com/gpu": "8"}
    described = describe_node(node, "amd.com/gpu")
    assert "unrelated.example/label" not in described["labels"]
    system = system_from_nodes({"mi300x-1": described}, "rocm", {"torch": "2.5"})
    assert system["accelerators"] == {
        "vendor": "rocm", "count": 8, "model": "AMD_Instinct_MI300X_OAM", "memory_mib": None,
        "driver": "6.8.5", "devices": [],
    }  # fmt: skip
    assert system["host"]["cpu_cores"] == 192 and system["host"]["memory_gb"] == 2040.1
    assert system["software"] == {"torch": "2.5"}
    unread = system_from_nodes({"n": {"name": "n", "error": "403 Forbidden"}}, "cuda", {})
    assert unread["host"]["hostname"] == "n" and unread["accelerators"]["model"] is None


def test_max_nodes_counts_ready_schedulable_nodes_with_the_vendors_devices(
    cluster: Cluster, api: FakeApiServer
) -> None:
    from kubernetes import client

    from orchestrator.backends.kubernetes import KubernetesBackend

    cordoned = gpu_node("gpu-node-c")
    cordoned["spec"]["unschedulable"] = True
    not_ready = gpu_node("gpu-node-d")
    not_ready["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    no_gpu = gpu_node("cpu-node", gpus=0)
    cluster.nodes |= {n["metadata"]["name"]: n for n in (cordoned, not_ready, no_gpu)}

    def backend(vendor: str, **settings: Any) -> KubernetesBackend:
        api_client = client.ApiClient(client.Configuration(host=api.url))
        return KubernetesBackend(K8sSettings(**settings), api_client=api_client, vendor=vendor)

    assert backend("cuda").max_nodes() == 2
    assert backend("cpu").max_nodes() == 3  # every Ready, schedulable node
    selected = {"node.kubernetes.io/instance-type": "other"}
    assert backend("cuda", node_selector=selected).max_nodes() == 1  # never below one


# --- failures a cluster adds ------------------------------------------------------------------


def test_a_pod_rejected_by_pod_security_fails_the_job_at_once_with_the_reason(
    cluster: Cluster, make_backend: Backend, ctx: RunContext
) -> None:
    cluster.pod_security = "baseline"
    job = job_of(plan_for("hpu"), "resnet50")  # SYS_NICE: privileged only
    cluster.scenarios[job.id] = scenarios.success
    ran = drive(make_backend(queue_timeout=600), job, ctx)
    assert ran.exit.status is Status.ERROR
    assert ran.exit.reason is not None
    assert ran.exit.reason.startswith('pods rejected: Error creating: pods "resnet50-d0-')
    assert 'violates PodSecurity "baseline:latest"' in ran.exit.reason
    assert "SYS_NICE" in ran.exit.reason


def test_check_refuses_a_namespace_whose_pod_security_would_reject_the_vendor(
    cluster: Cluster, api: FakeApiServer
) -> None:
    from kubernetes import client

    from orchestrator.backends.kubernetes import KubernetesBackend
    from orchestrator.errors import BackendUnavailable

    def backend(vendor: str, **settings: Any) -> KubernetesBackend:
        api_client = client.ApiClient(client.Configuration(host=api.url))
        return KubernetesBackend(K8sSettings(**settings), api_client=api_client, vendor=vendor)

    cluster.pod_security = "restricted"
    backend("cuda").check()
    backend("rocm").check()
    with pytest.raises(
        BackendUnavailable, match="enforces Pod Security 'restricted'; hpu pods need 'privileged'"
    ) as caught:
        backend("hpu").check()
    assert (
        caught.value.hint is not None
        and "pod-security.kubernetes.io/enforce=privileged" in caught.value.hint
    )
    with pytest.raises(BackendUnavailable, match="cuda pods need 'privileged'"):
        backend("cuda", ipc_lock=True).check()  # RDMA's IPC_LOCK on multi-node pods
    cluster.pod_security = "privileged"
    backend("hpu").check()


def test_node_loss_mid_run_is_an_error_naming_the_node(
    cluster: Cluster, make_backend: Backend, ctx: RunContext
) -> None:
    ran = drive(make_backend(), _job(cluster, scenarios.node_lost), ctx)
    assert ran.exit.status is Status.ERROR
    assert ran.exit.reason is not None
    assert "lost gpu-node-a mid-run (DeletionByTaintManager" in ran.exit.reason
    assert ran.lines == scenarios.bench_output(2)[:3]


def test_the_fake_refuses_an_object_the_schema_rejects(
    cluster: Cluster, api: FakeApiServer
) -> None:
    import urllib.error
    import urllib.request

    manifest = job_manifest(job_of(plan_for("cuda"), "resnet50"), K8sSettings(), run_id=RUN_ID)
    manifest["spec"]["template"]["spec"]["containers"][0]["resource"] = {}  # a typo
    request = urllib.request.Request(
        f"{api.url}/apis/batch/v1/namespaces/mbctl/jobs",
        data=json.dumps(manifest).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 422
    status = json.loads(caught.value.read())
    assert status["reason"] == "Invalid" and "'resource' was unexpected" in status["message"]
    assert not cluster.jobs


# --- Pod Security levels per vendor -----------------------------------------------------------

#: The least level each vendor's run pods need (docs/kubernetes.md).
NEEDED = {"cpu": "restricted", "cuda": "restricted", "rocm": "restricted", "xpu": "restricted",
          "hpu": "privileged"}  # fmt: skip


@pytest.mark.parametrize("vendor", VENDORS)
def test_each_vendor_is_admitted_exactly_from_the_level_its_namespace_gets(vendor: str) -> None:
    for phase in Phase:
        bundle = render_bundle(plan_for(vendor), K8sSettings(), phase)
        jobs = [m for m in bundle.values() if m["kind"] == "Job"]
        level = bundle_security_level(jobs)
        namespace = next(m for m in bundle.values() if m["kind"] == "Namespace")
        labels = namespace["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == level
        for job in jobs:
            pod = job["spec"]["template"]["spec"]
            for candidate in PSS_LEVELS:
                admitted = not pod_security_violations(pod, candidate)
                assert admitted == (
                    PSS_LEVELS.index(candidate) >= PSS_LEVELS.index(pod_security_level(pod))
                ), f"{vendor} {phase.value} pod at {candidate}"
    run_jobs = [
        m for m in render_bundle(plan_for(vendor), K8sSettings()).values() if m["kind"] == "Job"
    ]
    assert bundle_security_level(run_jobs) == NEEDED[vendor]


def test_host_ipc_and_ipc_lock_raise_the_level_to_privileged() -> None:
    job = job_of(plan_for("cuda"), "llm-2n")
    assert pod_security_level(_pod(job, K8sSettings())) == "restricted"
    for settings in (K8sSettings(host_ipc=True), K8sSettings(ipc_lock=True)):
        pod = _pod(job, settings)
        assert pod_security_level(pod) == "privileged"
        assert pod_security_violations(pod, "baseline")


def _pod(job: Job, settings: K8sSettings) -> dict[str, Any]:
    pod: dict[str, Any] = job_manifest(job, settings, run_id=RUN_ID)["spec"]["template"]["spec"]
    return pod


# --- clean-up ---------------------------------------------------------------------------------


def test_clean_removes_what_a_crashed_run_left_by_run_label(
    cluster: Cluster, make_backend: Backend, ctx: RunContext
) -> None:
    backend = make_backend(keep=True)
    job = _job(cluster, scenarios.nothing, bench="llm-2n")
    backend.submit(job, ctx)
    other = RunContext(**{**ctx.__dict__, "run_id": "another-run"})
    backend.submit(_job(cluster, scenarios.nothing), other)
    name = "llm-2n-n2-20250101-000000-k8s-test-abcd"
    assert backend.clean(ctx.run_id, dry_run=True) == [
        {"kind": "Job", "name": name, "run": ctx.run_id, "status": "active"},
        {"kind": "Service", "name": name, "run": ctx.run_id, "status": "active"},
    ]
    assert len(cluster.jobs) == 2
    removed = backend.clean(ctx.run_id)
    assert [r["name"] for r in removed] == [name, name]
    assert list(cluster.jobs) == ["resnet50-d0-another-run"] and not cluster.services
    assert backend.clean() == []  # without a run id: only finished Jobs
    cluster.job_condition("resnet50-d0-another-run", "Failed", "DeadlineExceeded")
    assert [r["run"] for r in backend.clean()] == ["another-run"]
    assert not cluster.jobs


def test_mbctl_clean_backend_kubernetes_deletes_a_runs_jobs_and_services(
    api: FakeApiServer, make_backend: Backend, ctx: RunContext, tmp_path: Path
) -> None:
    from orchestrator.cli.main import app

    cluster = api.cluster
    make_backend(keep=True).submit(_job(cluster, scenarios.nothing, bench="llm-2n"), ctx)
    kubeconfig = str(_kubeconfig(api, tmp_path))
    runner = CliRunner()
    args = ["clean", "--backend", "kubernetes", "--kubeconfig", kubeconfig]
    listed = runner.invoke(app, [*args, "--run", ctx.run_id, "--dry-run"])
    assert listed.exit_code == 0, listed.output
    assert "would delete 2 object(s) in namespace mbctl" in listed.output
    assert cluster.jobs and cluster.services
    kept = runner.invoke(app, args)  # no run id: the active Job stays
    assert kept.exit_code == 0 and "nothing to clean in namespace mbctl" in kept.output
    removed = runner.invoke(app, [*args, "--run", ctx.run_id])
    assert removed.exit_code == 0 and "deleted 2 object(s)" in removed.output
    assert not cluster.jobs and not cluster.services
    wrong = runner.invoke(app, ["clean", "--backend", "slurm"])
    assert wrong.exit_code == 2 and "error: --backend slurm: nothing to clean there" in wrong.stderr
