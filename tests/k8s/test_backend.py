"""The Kubernetes backend against the in-process fake API server: each way a job can end, logs, clean-up."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import scenarios
from fakeapi import Cluster, FakeApiServer, Scenario
from helpers import drive, job_of, plan_for

from orchestrator.backends.base import RunContext, Status
from orchestrator.errors import BackendUnavailable, OrchestratorError

pytestmark = pytest.mark.k8s

Backend = Callable[..., Any]


def _cuda_job(cluster: Cluster, scenario: Scenario, bench: str = "resnet50") -> Any:
    job = job_of(plan_for("cuda"), bench)
    cluster.scenarios[job.id] = scenario
    return job


def _deletes(cluster: Cluster) -> list[tuple[str, str, str | None]]:
    return list(cluster.deleted)


def test_success_streams_every_line_records_the_image_and_deletes_the_job(
    cluster: Cluster, make_backend: Backend, ctx: RunContext
) -> None:
    job = _cuda_job(cluster, scenarios.success)
    ran = drive(make_backend(), job, ctx)
    assert ran.lines == scenarios.bench_output()
    assert ran.exit.status is Status.OK and ran.exit.return_code == 0
    assert ran.exit.image == {"ref": job.image, "id": None, "digest": scenarios.IMAGE_ID}
    name = "resnet50-d0-20250101-000000-k8s-test-abcd"
    assert _deletes(cluster) == [("Job", name, "Background")]
    created = [path for method, path in cluster.requests if method == "POST"]
    assert created == ["/apis/batch/v1/namespaces/mbctl/jobs"]


def test_a_dropped_log_stream_resumes_without_repeating_or_losing_a_line(
    cluster: Cluster, make_backend: Backend, ctx: RunContext
) -> None:
    job = _cuda_job(cluster, scenarios.dropped_log)
    ran = drive(make_backend(), job, ctx)
    assert ran.lines == [f"line {i}" for i in range(10)] + ["last line"]
    logs = [path for method, path in cluster.requests if "/log?" in path]
    assert len(logs) >= 4  # cut mid-line, ended early, followed to the end, final catch-up
    assert "sinceSeconds=" not in logs[0] and all(
        "sinceSeconds=" in p and "timestamps=true" in p for p in logs[1:]
    )
    assert ran.exit.status is Status.OK


def test_unschedulable_pod_is_queued_with_the_schedulers_reason(
    cluster: Cluster, make_backend: Backend, ctx: RunContext
) -> None:
    job = _cuda_job(cluster, scenarios.unschedulable)
    ran = drive(make_backend(queue_timeout=0.3), job, ctx)
    assert ran.exit.status is Status.QUEUED
    assert ran.exit.reason is not None
    assert "still queued after 0.3s" in ran.exit.reason
    assert (
        "FailedScheduling: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
        in ran.exit.reason
    )
    assert ran.exit.image is None and ran.lines == []
    assert _deletes(cluster)[0][2] == "Background"


def test_image_pull_backoff_names_the_image(
    cluster: Cluster, make_backend: Backend, ctx: RunContext
) -> None:
    job = _cuda_job(cluster, scenarios.image_pull_backoff)
    ran = drive(make_backend(), job, ctx)
    assert ran.exit.status is Status.ERROR
    assert ran.exit.reason is not None and f"cannot pull image {job.image}" in ran.exit.reason
    assert "ErrImagePull" in ran.exit.reason or "ImagePullBackOff" in ran.exit.reason
    assert len(_deletes(cluster)) == 1


def test_oom_killed_container_is_status_oom(
    cluster: Cluster, make_backend: Backend, ctx: RunContext
) -> None:
    ran = drive(make_backend(), _cuda_job(cluster, scenarios.oom_killed), ctx)
    assert (ran.exit.status, ran.exit.return_code) == (Status.OOM, 137)
    assert ran.exit.reason is not None and "OOMKilled" in ran.exit.reason
    assert ran.lines == scenarios.bench_output(2)[:-1]
    assert ran.exit.image is not None and ran.exit.image["digest"] == scenarios.IMAGE_ID


def test_deadline_exceeded_is_status_timeout(
    cluster: Cluster, make_backend: Backend, ctx: RunContext
) -> None:
    ran = drive(make_backend(), _cuda_job(cluster, scenarios.deadline_exceeded), ctx)
    assert ran.exit.status is Status.TIMEOUT
    assert ran.exit.reason == "ran past activeDeadlineSeconds=3691 (DeadlineExceeded)"


def test_non_zero_exit_is_failed_with_its_code(
    cluster: Cluster, make_backend: Backend, ctx: RunContext
) -> None:
    ran = drive(make_backend(), _cuda_job(cluster, scenarios.exits_3), ctx)
    assert (ran.exit.status, ran.exit.return_code, ran.exit.reason) == (
        Status.FAILED,
        3,
        "exited with code 3",
    )
    assert ran.lines == ["Traceback (most recent call last):", "RuntimeError: boom"]


def test_with_retries_allowed_the_logs_of_every_attempt_are_streamed(
    cluster: Cluster, make_backend: Backend, ctx: RunContext
) -> None:
    ran = drive(
        make_backend(backoff_limit=1), _cuda_job(cluster, scenarios.fails_then_succeeds), ctx
    )
    assert ran.lines == [
        "attempt 1",
        "CUDA error: an illegal memory access",
        "attempt 2",
        *scenarios.bench_output(1),
    ]
    assert ran.exit.status is Status.OK


def test_cancel_deletes_the_job_in_the_background_and_ends_the_stream(
    cluster: Cluster, make_backend: Backend, ctx: RunContext
) -> None:
    ran = drive(make_backend(), _cuda_job(cluster, scenarios.runs_forever), ctx, cancel_after=0.4)
    assert ran.exit.status is Status.CANCELLED
    assert ran.lines[:3] == ["tick 0", "tick 1", "tick 2"]
    assert ran.exit.image is not None
    assert {d[2] for d in _deletes(cluster)} == {"Background"}


def test_keep_leaves_the_job_in_place(
    cluster: Cluster, make_backend: Backend, ctx: RunContext
) -> None:
    ran = drive(make_backend(keep=True), _cuda_job(cluster, scenarios.success), ctx)
    assert ran.exit.status is Status.OK
    assert _deletes(cluster) == []
    assert list(cluster.jobs) == ["resnet50-d0-20250101-000000-k8s-test-abcd"]


def test_two_nodes_get_a_service_and_stream_pod_zero(
    cluster: Cluster, make_backend: Backend, ctx: RunContext
) -> None:
    job = _cuda_job(cluster, scenarios.two_nodes, bench="llm-2n")
    ran = drive(make_backend(), job, ctx)
    assert ran.lines == scenarios.bench_output(3)
    assert ran.exit.status is Status.OK
    name = "llm-2n-n2-20250101-000000-k8s-test-abcd"
    created = [path for method, path in cluster.requests if method == "POST"]
    # the Job first: its Service is created owned by it, so it never outlives the Job
    assert created == ["/apis/batch/v1/namespaces/mbctl/jobs", "/api/v1/namespaces/mbctl/services"]
    assert sorted(_deletes(cluster)) == [
        ("Job", name, "Background"),
        ("Service", name, "Background"),
    ]
    assert ran.exit.image is not None and len(ran.exit.image["pods"]) == 2


def test_image_records_read_every_runtime_spelling_of_image_id() -> None:
    from orchestrator.backends.kubernetes.backend import image_record

    digest = "registry.example/mbctl/convnet@sha256:" + "ab" * 32
    assert image_record("r", digest) == {"ref": "r", "id": None, "digest": digest}
    assert image_record("r", f"docker-pullable://{digest}")["digest"] == digest
    assert image_record("r", "docker://sha256:" + "cd" * 32) == {
        "ref": "r",
        "id": "sha256:" + "cd" * 32,
        "digest": None,
    }


def test_an_existing_job_is_refused_with_a_hint(
    cluster: Cluster, make_backend: Backend, ctx: RunContext
) -> None:
    backend = make_backend()
    job = job_of(plan_for("cuda"), "resnet50")
    backend.submit(job, ctx)
    with pytest.raises(OrchestratorError, match="already exists") as caught:
        backend.submit(job, ctx)
    assert caught.value.hint is not None and "mbctl clean --backend kubernetes" in caught.value.hint


def test_check_passes_with_the_pvc_and_names_a_missing_one(
    cluster: Cluster, make_backend: Backend
) -> None:
    make_backend().check()
    with pytest.raises(BackendUnavailable, match="no PVC 'scratch' in namespace 'mbctl'"):
        make_backend(pvc="scratch").check()


def test_check_reports_an_unreachable_api_server_in_one_line() -> None:
    from kubernetes import client

    from orchestrator.backends.kubernetes import K8sSettings, KubernetesBackend

    with FakeApiServer() as server:
        url = server.url
    configuration = client.Configuration(host=url)
    configuration.retries = False
    backend = KubernetesBackend(K8sSettings(), api_client=client.ApiClient(configuration))
    with pytest.raises(
        BackendUnavailable, match=r"API server http://127\.0\.0\.1:\d+ unreachable \(.*refused"
    ) as caught:
        backend.check()
    assert "\n" not in str(caught.value)


def test_a_kubeconfig_file_is_loaded(api: FakeApiServer, tmp_path: Path) -> None:
    from orchestrator.backends.kubernetes import KubernetesBackend

    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
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
    KubernetesBackend(kubeconfig=str(kubeconfig)).check()


def test_no_kubeconfig_outside_a_cluster_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.backends.kubernetes import KubernetesBackend

    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(BackendUnavailable, match="no kubeconfig and not running in a cluster"):
        KubernetesBackend().check()
    with pytest.raises(BackendUnavailable, match="cannot load credentials"):
        KubernetesBackend(kubeconfig=str(tmp_path / "missing")).check()


def test_the_runner_records_lines_and_the_image_that_ran(
    cluster: Cluster, make_backend: Backend, tmp_path: Path
) -> None:
    from orchestrator.results import RunDir, read_events
    from orchestrator.runner import execute

    plan = plan_for("cuda")
    plan = plan.model_copy(update={"jobs": (job_of(plan, "resnet50"),)})
    cluster.scenarios[plan.jobs[0].id] = scenarios.success
    run = RunDir.create(tmp_path / "runs", {"suite": {"name": plan.suite}}, run_id="k8s-run")
    ctx = RunContext(
        run_id=run.run_id, run_dir=run.path, data_dir=tmp_path, benchmarks_root=tmp_path
    )
    outcome = execute(plan, make_backend(), run, ctx)
    assert [s.status for s in outcome.states] == ["ok"]
    events = read_events(run.events_path("resnet50.D0"))
    assert [e["value"] for e in events if e["event"] == "rate"] == [
        100.0,
        101.0,
        102.0,
        103.0,
        104.0,
    ]
    exit_event = events[-1]
    assert exit_event["event"] == "exit" and exit_event["image"]["digest"] == scenarios.IMAGE_ID
    assert run.log_path("resnet50.D0").read_text() == "plain output\n"
    assert [d[2] for d in cluster.deleted] == ["Background"]
