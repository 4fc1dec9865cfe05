"""Scripted pod lives for the fake API server: what a scheduler and a kubelet would do to one Job."""

from __future__ import annotations

import json
import time
from typing import Any

from fakeapi import Cluster

IMAGE_ID = "registry.example/mbctl/convnet@sha256:" + "ab" * 32
STEP = 0.03


def protocol(event: str, **fields: Any) -> str:
    # a fixed clock, so that the expected lines can be built again and compared
    return json.dumps({"mbctl": 1, "event": event, "t": 1735689600.0, **fields})


def bench_output(n: int = 5) -> list[str]:
    lines = [
        protocol("start", bench="convnet", argv=[], versions={"torch": "2.5"}, pid=1),
        "plain output",
    ]
    lines += [protocol("rate", value=100.0 + i, units="items/s", task="train") for i in range(n)]
    return [*lines, protocol("end", status="early_stop")]


def _start(
    c: Cluster,
    job: dict[str, Any],
    index: int | None = None,
    cuts: list[tuple[str, int]] | None = None,
    pending: float = 0.0,
) -> str:
    """A pod scheduled (after ``pending`` seconds Unschedulable), pulled and running."""
    pod = c.add_pod(job, index)
    if cuts:
        c.log_cuts[pod] = cuts
    c.sleep(STEP)
    if pending:
        message = "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."
        c.pod_status(pod, scheduled=("Unschedulable", message))
        c.event(pod, "FailedScheduling", message)
        c.sleep(pending)
    c.pod_status(pod, scheduled=True, state={"waiting": {"reason": "ContainerCreating"}})
    if not c.scheduled(pod):
        return pod  # no node for it: it stays Pending
    c.sleep(STEP)
    c.pod_status(
        pod,
        phase="Running",
        state={"running": {"startedAt": "2025-01-01T00:00:00Z"}},
        image_id=IMAGE_ID,
    )
    return pod


def _end(c: Cluster, pod: str, code: int, reason: str) -> None:
    phase = "Succeeded" if code == 0 else "Failed"
    c.pod_status(
        pod,
        phase=phase,
        state={"terminated": {"exitCode": code, "reason": reason}},
        image_id=IMAGE_ID,
    )


def success(c: Cluster, job: dict[str, Any]) -> None:
    pod = _start(c, job)
    for line in bench_output():
        c.log(pod, line)
        c.sleep(0.005)
    _end(c, pod, 0, "Completed")
    c.sleep(STEP)
    c.job_condition(job["metadata"]["name"], "Complete")


def dropped_log(c: Cluster, job: dict[str, Any]) -> None:
    """Ten lines (three of them stamped alike); the first stream breaks mid-line, the second ends early."""
    pod = _start(c, job, cuts=[("partial", 3), ("eof", 2)])
    c.log(pod, "line 0", "line 1")
    same = time.time_ns()
    c.log(pod, "line 2", "line 3", "line 4", ts=same)
    for i in range(5, 10):
        c.sleep(0.01)
        c.log(pod, f"line {i}")
    c.sleep(0.2)  # the reader reconnects while the container still runs
    c.log(pod, "last line")
    _end(c, pod, 0, "Completed")
    c.job_condition(job["metadata"]["name"], "Complete")


def unschedulable(c: Cluster, job: dict[str, Any]) -> None:
    pod = c.add_pod(job)
    c.sleep(STEP)
    message = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available."
    c.pod_status(pod, scheduled=("Unschedulable", message))
    c.event(pod, "FailedScheduling", message)


def image_pull_backoff(c: Cluster, job: dict[str, Any]) -> None:
    pod = c.add_pod(job)
    c.sleep(STEP)
    c.pod_status(pod, scheduled=True, state={"waiting": {"reason": "ErrImagePull"}})
    c.sleep(STEP)
    image = job["spec"]["template"]["spec"]["containers"][0]["image"]
    c.pod_status(
        pod,
        scheduled=True,
        state={
            "waiting": {
                "reason": "ImagePullBackOff",
                "message": f'Back-off pulling image "{image}"',
            }
        },
    )


def oom_killed(c: Cluster, job: dict[str, Any]) -> None:
    pod = _start(c, job)
    c.log(pod, *bench_output(2)[:-1])
    c.sleep(STEP)
    _end(c, pod, 137, "OOMKilled")
    c.job_condition(
        job["metadata"]["name"],
        "Failed",
        "BackoffLimitExceeded",
        "Job has reached the specified backoff limit",
    )


def deadline_exceeded(c: Cluster, job: dict[str, Any]) -> None:
    pod = _start(c, job)
    c.log(pod, protocol("rate", value=1.0, units="items/s", task="train"))
    c.sleep(STEP)
    _end(c, pod, 143, "Error")
    c.job_condition(
        job["metadata"]["name"],
        "Failed",
        "DeadlineExceeded",
        "Job was active longer than specified deadline",
    )


def exits_3(c: Cluster, job: dict[str, Any]) -> None:
    pod = _start(c, job)
    c.log(pod, "Traceback (most recent call last):", "RuntimeError: boom")
    c.sleep(STEP)
    _end(c, pod, 3, "Error")
    c.job_condition(
        job["metadata"]["name"],
        "Failed",
        "BackoffLimitExceeded",
        "Job has reached the specified backoff limit",
    )


def runs_forever(c: Cluster, job: dict[str, Any]) -> None:
    pod = _start(c, job)
    i = 0
    while not c.gone(job["metadata"]["name"]):
        c.log(pod, f"tick {i}")
        i += 1
        c.sleep(0.02)


def queued_then_success(pending: float) -> Any:
    """Unschedulable for ``pending`` seconds (other jobs hold the GPUs), then a normal run."""

    def scenario(c: Cluster, job: dict[str, Any]) -> None:
        pod = _start(c, job, pending=pending)
        for line in bench_output():
            c.log(pod, line)
        _end(c, pod, 0, "Completed")
        c.sleep(STEP)
        c.job_condition(job["metadata"]["name"], "Complete")

    return scenario


def node_lost(c: Cluster, job: dict[str, Any]) -> None:
    """The node stops answering mid-run: its pod is evicted, the Job fails."""
    pod = _start(c, job)
    c.log(pod, *bench_output(2)[:3])
    c.sleep(0.1)
    c.lose_node(str(c.pods[pod]["spec"]["nodeName"]))
    c.sleep(STEP)
    c.job_condition(
        job["metadata"]["name"],
        "Failed",
        "BackoffLimitExceeded",
        "Job has reached the specified backoff limit",
    )


def two_nodes(c: Cluster, job: dict[str, Any]) -> None:
    """Both ranks of an Indexed Job; a rank that finds no node stays Pending, the other waits."""
    leader = _start(c, job, index=0)
    worker = _start(c, job, index=1)
    if not (c.scheduled(leader) and c.scheduled(worker)):
        while not c.gone(job["metadata"]["name"]):  # rank 0 waits at the rendezvous
            c.sleep(0.02)
        return
    for line in bench_output(3):
        c.log(leader, line)
        c.log(worker, "worker noise")
    for pod in (leader, worker):
        _end(c, pod, 0, "Completed")
    c.job_condition(job["metadata"]["name"], "Complete")


def fails_then_succeeds(c: Cluster, job: dict[str, Any]) -> None:
    """A Job allowed one retry: the first pod fails, the job controller starts a second one."""
    first = _start(c, job)
    c.log(first, "attempt 1", "CUDA error: an illegal memory access")
    c.sleep(STEP)
    _end(c, first, 1, "Error")
    c.sleep(STEP)
    second = _start(c, job)
    c.log(second, "attempt 2", *bench_output(1))
    c.sleep(STEP)
    _end(c, second, 0, "Completed")
    c.job_condition(job["metadata"]["name"], "Complete")


def nothing(c: Cluster, job: dict[str, Any]) -> None:
    """A Job whose pods never come (created and left alone)."""
