"""The Kubernetes backend: creates Jobs with the official client, follows pod logs, judges how jobs end.

A job is *queued* (Kueue admission, scheduling, image pulls) until every rank's container runs;
only then does its measurement clock start (``running_since``). Each rank's node is recorded:
its name, accelerator labels and allocatable devices, as a ``meta`` event of kind ``node``.

The client is imported lazily (it is heavy and optional). Responses are read as raw JSON, so
the same dicts the manifests are written in are read back, whatever the client's model version.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestrator import vendors
from orchestrator.backends.base import Exit, Handle, RunContext, Status, split_lines
from orchestrator.backends.kubernetes.manifests import (
    CONTAINER,
    INDEX_ANNOTATION,
    JOB_NAME_LABEL,
    LABEL_RUN,
    MANAGED_BY,
    PSS_LABEL,
    PSS_LEVELS,
    QUEUE_LABEL,
    device_resource,
    job_manifest,
    job_name,
    label_value,
    needed_security_level,
    needs_service,
    service_manifest,
)
from orchestrator.backends.kubernetes.nodes import describe_node
from orchestrator.backends.kubernetes.settings import K8sSettings
from orchestrator.errors import BackendUnavailable, OrchestratorError
from orchestrator.plan import Job

#: Seconds a reconnecting log reader reaches back before the last line it got (delivery delay).
RESUME_MARGIN = 5
#: Seconds a job's verdict waits for its log reader to drain the pod before the Job is deleted.
LOG_GRACE = 30.0
#: Seconds of failing API calls after which a job is reported as lost.
API_GRACE = 60.0
#: Log reconnections in a row that bring no line before the reader gives up on a pod.
MAX_RECONNECTS = 8
#: Seconds for one ordinary API call; and of silence after which a log stream is reopened.
REQUEST_TIMEOUT = 30.0
LOG_IDLE_TIMEOUT = 300.0

#: Waiting reasons that will not resolve by waiting longer.
IMAGE_PULL_ERRORS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
)
CONFIG_ERRORS = frozenset({"CreateContainerConfigError"})

_STAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")
_ERRNO = re.compile(r"\[Errno [^\]]+\][^'\")]*")


def parse_timestamp(text: str) -> int | None:
    """Nanoseconds since the epoch of an RFC 3339 (nano) timestamp; None if ``text`` is not one."""
    match = _STAMP.fullmatch(text)
    if match is None:
        return None
    zone = "+00:00" if match[3] == "Z" else match[3]
    try:
        seconds = int(datetime.fromisoformat(match[1] + zone).timestamp())
    except ValueError:
        return None
    return seconds * 1_000_000_000 + int((match[2] or "").ljust(9, "0"))


class LogCursor:
    """Where a followed log stands, so that reading it again from a reconnect repeats no line.

    Lines come with the kubelet's timestamps (``timestamps=True``). A reconnect asks for
    ``since_seconds`` measured on *this* clock from when the last line arrived (so node clock
    skew does not matter), plus a margin; lines older than the last one seen are skipped, and
    of the lines stamped exactly like it, as many as were already given out.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.last: int | None = None
        self.at_last = 0
        self._skip = 0
        self._received: float | None = None
        self._dropping = False

    def since_seconds(self) -> int | None:
        """What to ask the next read for: None (everything) before any line arrived."""
        if self._received is None:
            return None
        return math.ceil(self._clock() - self._received) + RESUME_MARGIN

    def resume(self) -> None:
        """Call before each read: the lines at ``last`` it sends again are to be skipped."""
        self._skip = self.at_last

    def accept(self, raw: str) -> str | None:
        """The text of ``raw`` (a timestamped log line) if it is new, else None."""
        stamp, _, text = raw.partition(" ")
        ts = parse_timestamp(stamp)
        if ts is None:
            # a line cut at MAX_LINE continues without a timestamp: it shares its head's fate
            return None if self._dropping else raw
        seen_before = self.last is not None and ts < self.last
        if ts == self.last and self._skip > 0:
            self._skip -= 1
            seen_before = True
        if seen_before:
            self._dropping = True
            return None
        if ts == self.last:
            self.at_last += 1
        else:
            self.last, self.at_last, self._skip = ts, 1, 0
        self._dropping = False
        self._received = self._clock()
        return text

    def feed(self, lines: Iterable[str]) -> Iterator[str]:
        for raw in lines:
            text = self.accept(raw)
            if text is not None:
                yield text


def _lines(response: Any, *, keep_tail: bool) -> Iterator[str]:
    """Lines of a log response; an unterminated last line is dropped unless ``keep_tail``.

    A stream that breaks mid-line leaves half a line: the next read sends it again whole.
    """
    state = {"ended": False, "complete": True}

    def chunks() -> Iterator[bytes]:
        for chunk in response.stream(amt=None, decode_content=False):
            if chunk:
                state["complete"] = chunk.endswith(b"\n")
                yield chunk
        state["ended"] = True

    for line in split_lines(chunks()):
        # split_lines yields the unterminated tail only once the chunks are exhausted
        if state["ended"] and not state["complete"] and not keep_tail:
            return
        yield line


def _dig(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _container(pod: dict[str, Any]) -> dict[str, Any]:
    """The benchmark container's status in ``pod`` (empty before the kubelet reports one)."""
    for status in _dig(pod, "status", "containerStatuses") or []:
        if status.get("name") == CONTAINER:
            return dict(status)
    return {}


def _name(obj: dict[str, Any]) -> str:
    return str(_dig(obj, "metadata", "name"))


def _index(pod: dict[str, Any]) -> int:
    value = (_dig(pod, "metadata", "annotations") or {}).get(INDEX_ANNOTATION, "0")
    return int(value) if str(value).isdigit() else 0


def _pod_order(pod: dict[str, Any]) -> tuple[int, str]:
    return _index(pod), str(_dig(pod, "metadata", "creationTimestamp") or "")


def _started(pod: dict[str, Any]) -> bool:
    state = _container(pod).get("state") or {}
    return "running" in state or "terminated" in state


def _event_time(event: dict[str, Any]) -> int:
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        ts = parse_timestamp(str(event.get(key) or ""))
        if ts is not None:
            return ts
    return 0


def describe_error(exc: BaseException) -> str:
    """One line from an API error (its Status message) or a connection error."""
    status = getattr(exc, "status", None)
    body = getattr(exc, "body", None)
    if status is not None:
        message = ""
        if body:
            try:
                message = str(json.loads(body).get("message", ""))
            except (ValueError, AttributeError):
                message = str(body)[:200]
        return f"{status} {getattr(exc, 'reason', '') or ''}".strip() + (
            f": {message}" if message else ""
        )
    text = str(getattr(exc, "reason", None) or exc)
    match = _ERRNO.search(text)
    return match[0].strip() if match else text[:200]


def image_record(ref: str, image_id: str) -> dict[str, Any]:
    """``ref`` and a container's ``imageID``: a repo digest (``repo@sha256:...``, what containerd
    and CRI-O report for pulled images) or else a bare image ID, with any runtime scheme removed."""
    bare = re.sub(r"^[a-z-]+://", "", image_id)
    if "@" in bare:
        return {"ref": ref, "id": None, "digest": bare}
    return {"ref": ref, "id": bare or None, "digest": None}


def _connect(kubeconfig: str | None) -> Any:
    """An ApiClient from ``kubeconfig``, $KUBECONFIG, ~/.kube/config, or the pod's service account."""
    from kubernetes import client, config

    path = kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    use_file = kubeconfig is not None or "KUBECONFIG" in os.environ or Path(path).is_file()
    if not use_file and not os.environ.get("KUBERNETES_SERVICE_HOST"):
        raise BackendUnavailable(
            "kubernetes: no kubeconfig and not running in a cluster",
            hint="pass --kubeconfig FILE or set KUBECONFIG",
        )
    try:
        if use_file:
            return config.new_client_from_config(config_file=path)  # type: ignore[no-untyped-call]
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return client.ApiClient(configuration)
    except Exception as exc:  # loaders raise ConfigException, YAML, OS and exec-plugin errors alike
        where = path if use_file else "the in-cluster service account"
        raise BackendUnavailable(
            f"kubernetes: cannot load credentials from {where} ({exc})"
        ) from None


def node_line(rank: int, pod: str, node: dict[str, Any]) -> str:
    """A protocol line recording the node that ran one rank, for the job's event log."""
    # the protocol tag first: the parser knows a protocol line by its start
    record = {"mbctl": 1, "event": "meta", "kind": "node", "t": time.time()}
    return json.dumps(record | {"rank": rank, "pod": pod, "node": node})


def _disrupted(pod: dict[str, Any]) -> dict[str, Any] | None:
    """The DisruptionTarget condition of a pod being evicted from a lost or drained node."""
    for condition in _dig(pod, "status", "conditions") or []:
        if condition.get("type") == "DisruptionTarget" and condition.get("status") == "True":
            return dict(condition)
    return None


@dataclass
class _Tracked:
    """What the backend knows of one submitted job; the reader thread and the caller share it."""

    job: Job
    name: str
    service: str | None
    submitted: float = field(default_factory=time.monotonic)
    running_at: float | None = None
    queued_reason: str = "waiting for its pods"
    pod_nodes: dict[str, tuple[int, str]] = field(default_factory=dict)
    reported: set[str] = field(default_factory=set)
    verdict: Exit | None = None
    verdict_at: float = 0.0
    #: the Job ended by itself (its pods are done): the log reader may drain them first
    ended: bool = False
    exit: Exit | None = None
    cancelled: bool = False
    started: bool = False
    last_poll: float = -math.inf
    failing_since: float | None = None
    images: dict[str, str] = field(default_factory=dict)
    log_done: threading.Event = field(default_factory=threading.Event)
    interrupt: Callable[[], None] | None = None

    @property
    def over(self) -> bool:
        return self.cancelled or self.verdict is not None

    def stop_reader(self) -> None:
        stop = self.interrupt
        if stop is not None:
            with contextlib.suppress(OSError, AttributeError):  # the reader closed it already
                stop()


class KubernetesBackend:
    """Runs each job as a Kubernetes Job (an Indexed Job + headless Service across nodes)."""

    name = "kubernetes"

    def __init__(
        self,
        settings: K8sSettings | None = None,
        kubeconfig: str | None = None,
        keep: bool = False,
        *,
        api_client: Any = None,
        poll_interval: float = 2.0,
        watch_seconds: int = 10,
        vendor: str | None = None,
    ) -> None:
        self.settings = settings or K8sSettings()
        #: The vendor ``max_nodes`` counts nodes for (jobs carry their own).
        self.vendor = vendor
        self._nodes: dict[str, dict[str, Any]] = {}
        self.kubeconfig = kubeconfig
        self.keep = keep
        self.poll_interval = poll_interval
        self.watch_seconds = watch_seconds
        self._client = api_client
        self._apis: tuple[Any, Any] | None = None
        self._lock = threading.Lock()

    @property
    def namespace(self) -> str:
        return self.settings.namespace

    def _api(self) -> tuple[Any, Any]:
        """CoreV1Api and BatchV1Api, connected on first use."""
        with self._lock:
            if self._apis is None:
                from kubernetes import client

                if self._client is None:
                    self._client = _connect(self.kubeconfig)
                self._apis = (client.CoreV1Api(self._client), client.BatchV1Api(self._client))
            return self._apis

    @staticmethod
    def _errors() -> tuple[type[BaseException], ...]:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        return ApiException, HTTPError, OSError

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        """``fn``'s response as raw JSON (the generated models are skipped on purpose)."""
        response = fn(*args, _preload_content=False, _request_timeout=REQUEST_TIMEOUT, **kwargs)
        try:
            data = json.loads(response.data or b"{}")
        finally:
            response.release_conn()
        return data if isinstance(data, dict) else {}

    # --- protocol -------------------------------------------------------------------------

    def check(self) -> None:
        from kubernetes import client

        core, _ = self._api()
        host = self._client.configuration.host
        try:
            self._call(client.VersionApi(self._client).get_code)
            self._call(
                core.read_namespaced_persistent_volume_claim, self.settings.pvc, self.namespace
            )
        except self._errors() as exc:
            status = getattr(exc, "status", None)
            if status == 404:
                raise BackendUnavailable(
                    f"kubernetes: no PVC {self.settings.pvc!r} in namespace {self.namespace!r}",
                    hint="create the namespace, PVC and RBAC: mbctl render k8s ... --output DIR && kubectl apply -k DIR",
                ) from None
            if status in (401, 403):
                raise BackendUnavailable(
                    f"kubernetes: access denied in namespace {self.namespace!r} ({describe_error(exc)})",
                    hint="bind the mbctl Role (rolebinding-mbctl.yaml from mbctl render k8s)",
                ) from None
            raise BackendUnavailable(
                f"kubernetes: API server {host} unreachable ({describe_error(exc)})"
            ) from None
        self._check_pod_security()

    def _check_pod_security(self) -> None:
        """Refuse to start when the namespace's Pod Security level would reject the vendor's
        pods (every Job would fail with FailedCreate); unknown without the node-reader role."""
        if self.vendor is None:
            return
        core, _ = self._api()
        try:
            namespace = self._call(core.read_namespace, self.namespace)
        except self._errors():
            return  # not allowed to read namespaces: FailedCreate still names the problem
        labels = _dig(namespace, "metadata", "labels") or {}
        enforced = labels.get(f"{PSS_LABEL}enforce", "privileged")
        needed = needed_security_level(self.vendor, self.settings)
        if enforced in PSS_LEVELS and PSS_LEVELS.index(enforced) < PSS_LEVELS.index(needed):
            raise BackendUnavailable(
                f"kubernetes: namespace {self.namespace!r} enforces Pod Security {enforced!r}; "
                f"{self.vendor} pods need {needed!r}",
                hint=f"kubectl label namespace {self.namespace} "
                f"{PSS_LABEL}enforce={needed} --overwrite (or run in a namespace that allows it)",
            )

    def submit(self, job: Job, ctx: RunContext) -> Handle:
        core, batch = self._api()
        name = job_name(job, ctx.phase, ctx.run_id)
        body = job_manifest(job, self.settings, ctx.phase, run_id=ctx.run_id, name=name)
        tracked = _Tracked(job=job, name=name, service=None)
        try:
            created = self._call(batch.create_namespaced_job, self.namespace, body)
        except self._errors() as exc:
            raise self._refused(name, exc) from None
        if needs_service(job, ctx.phase):
            # owned by the Job: whoever deletes the Job (mbctl, its TTL, a person) deletes it
            service = service_manifest(
                job,
                self.settings,
                run_id=ctx.run_id,
                name=name,
                owner_uid=_dig(created, "metadata", "uid"),
            )
            try:
                self._call(core.create_namespaced_service, self.namespace, service)
            except self._errors() as exc:
                self._delete(tracked)
                raise self._refused(name, exc, kind="Service") from None
            tracked.service = name
        return Handle(job=job, native=tracked)

    def running_since(self, handle: Handle) -> float | None:
        """When every rank's container started (``time.monotonic``), None while queued.

        The runner starts the job's measurement clock then, not at submission.
        """
        tracked: _Tracked = handle.native
        return tracked.running_at

    def stream(self, handle: Handle) -> Iterator[str]:
        tracked: _Tracked = handle.native
        try:
            followed: set[str] = set()
            while (pod := self._await_started_pod(tracked, followed)) is not None:
                followed.add(pod)
                yield from self._node_lines(tracked)
                code = yield from self._follow(tracked, pod)
                # only a failed pod of a Job allowed to retry is followed by another one
                if code == 0 or self.settings.backoff_limit == 0 or tracked.over:
                    break
            # the other ranks' nodes are known by now, whatever order the scheduler placed them in
            with contextlib.suppress(*self._errors()):
                self._pods(tracked)
            yield from self._node_lines(tracked)
        finally:
            tracked.log_done.set()

    def _node_lines(self, tracked: _Tracked) -> Iterator[str]:
        for pod, (rank, node) in sorted(tracked.pod_nodes.items(), key=lambda i: i[1]):
            if pod not in tracked.reported:
                tracked.reported.add(pod)
                yield node_line(rank, pod, self._node(node, tracked.job.vendor))

    def wait(self, handle: Handle, timeout: float | None) -> Exit | None:
        tracked: _Tracked = handle.native
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            now = time.monotonic()
            if tracked.exit is None and now - tracked.last_poll >= self.poll_interval:
                tracked.last_poll = now
                self._advance(tracked)
            if tracked.exit is not None:
                return tracked.exit
            if deadline is not None and now >= deadline:
                return None
            wake = tracked.last_poll + self.poll_interval
            time.sleep(max(0.0, min(wake, deadline if deadline is not None else wake) - now))

    def cancel(self, handle: Handle) -> None:
        tracked: _Tracked = handle.native
        tracked.cancelled = True
        tracked.stop_reader()
        if not self.keep:
            self._delete(tracked)

    # --- nodes ----------------------------------------------------------------------------

    def _node(self, name: str, vendor: str) -> dict[str, Any]:
        """The recorded description of node ``name`` (only its name if it cannot be read)."""
        with self._lock:
            known = self._nodes.get(name)
        if known is not None:
            return known
        core, _ = self._api()
        resource = device_resource(vendors.get(vendor), self.settings)
        try:
            found = describe_node(self._call(core.read_node, name), resource)
        except self._errors() as exc:
            # without the node-reader ClusterRole the name is all there is
            return {"name": name, "error": describe_error(exc)}
        with self._lock:
            self._nodes[name] = found
        return found

    def nodes_that_ran(self) -> dict[str, dict[str, Any]]:
        """Every node that ran a job of this backend, by name: what ``meta.json`` records."""
        with self._lock:
            return dict(sorted(self._nodes.items()))

    def max_nodes(self) -> int:
        """Nodes that can host a rank: Ready, schedulable, matching the site's node selector,
        with the vendor's device resource allocatable (any Ready node for cpu)."""
        core, _ = self._api()
        spec = vendors.get(self.vendor or "cpu")
        resource = device_resource(spec, self.settings)
        selector = ",".join(f"{k}={v}" for k, v in sorted(self.settings.node_selector.items()))
        try:
            found = self._call(core.list_node, label_selector=selector or None)
        except self._errors() as exc:
            raise BackendUnavailable(
                f"kubernetes: cannot list nodes ({describe_error(exc)})",
                hint="bind the mbctl-node-reader ClusterRole (mbctl render k8s), or pass --nodes N",
            ) from None
        count = 0
        for node in found.get("items") or []:
            ready = any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in _dig(node, "status", "conditions") or []
            )
            allocatable = _dig(node, "status", "allocatable") or {}
            devices = str(allocatable.get(resource, "0")) if resource else "1"
            if ready and not _dig(node, "spec", "unschedulable") and devices not in ("0", ""):
                count += 1
        return max(count, 1)

    # --- judging --------------------------------------------------------------------------

    def _advance(self, tracked: _Tracked) -> None:
        """One poll: reach a verdict if the cluster shows one; release it once the logs are in."""
        if tracked.cancelled:
            tracked.exit = Exit(None, Status.CANCELLED, "cancelled", self._image(tracked))
            return
        if tracked.verdict is None:
            try:
                tracked.verdict = self._judge(tracked)
                tracked.failing_since = None
            except self._errors() as exc:
                tracked.failing_since = tracked.failing_since or time.monotonic()
                if time.monotonic() - tracked.failing_since < API_GRACE:
                    return
                tracked.verdict = Exit(
                    None,
                    Status.ERROR,
                    f"lost the API server for {API_GRACE:g}s ({describe_error(exc)})",
                    self._image(tracked),
                )
            if tracked.verdict is None:
                return
            tracked.verdict_at = time.monotonic()
        # deleting the Job deletes its pods: let the log reader drain them first
        if (
            tracked.ended
            and tracked.started
            and not tracked.log_done.is_set()
            and time.monotonic() - tracked.verdict_at < LOG_GRACE
        ):
            return
        tracked.stop_reader()
        if not self.keep:
            self._delete(tracked)
        tracked.exit = tracked.verdict

    def _pods(self, tracked: _Tracked) -> list[dict[str, Any]]:
        core, _ = self._api()
        found = self._call(
            core.list_namespaced_pod,
            self.namespace,
            label_selector=f"{JOB_NAME_LABEL}={tracked.name}",
        )
        pods = sorted(found.get("items") or [], key=_pod_order)
        for pod in pods:
            status = _container(pod)
            if status.get("imageID"):
                tracked.images[_name(pod)] = str(status["imageID"])
            self._note(tracked, pod)
        return pods

    @staticmethod
    def _note(tracked: _Tracked, pod: dict[str, Any]) -> None:
        """Remember that ``pod`` started and on which node."""
        started = _started(pod)
        tracked.started = tracked.started or started
        node = _dig(pod, "spec", "nodeName")
        if node and started:
            tracked.pod_nodes.setdefault(_name(pod), (_index(pod), str(node)))

    def _image(self, tracked: _Tracked) -> dict[str, Any] | None:
        """What ran, shaped as the docker backend records it, plus each pod's imageID across nodes."""
        if not tracked.images:
            return None
        record = image_record(str(tracked.job.image), next(iter(tracked.images.values())))
        if len(tracked.images) > 1:
            record["pods"] = dict(tracked.images)
        return record

    def _judge(self, tracked: _Tracked) -> Exit | None:
        _, batch = self._api()
        try:
            job = self._call(batch.read_namespaced_job, tracked.name, self.namespace)
        except self._errors() as exc:
            if getattr(exc, "status", None) != 404:
                raise
            return Exit(
                None,
                Status.ERROR,
                f"Job {tracked.name} disappeared (deleted outside mbctl?)",
                self._image(tracked),
            )
        pods = self._pods(tracked)
        conditions = {
            c.get("type"): c
            for c in _dig(job, "status", "conditions") or []
            if c.get("status") == "True"
        }
        ended = "Complete" in conditions or "Failed" in conditions or "FailureTarget" in conditions
        if ended:
            tracked.ended = True
            # a job that ran between two polls ran all the same
            tracked.running_at = tracked.running_at or time.monotonic()
        if "Complete" in conditions:
            return Exit(0, Status.OK, None, self._image(tracked))
        for pod in pods:
            lost = _disrupted(pod)
            if lost is not None and tracked.running_at is not None:
                node = _dig(pod, "spec", "nodeName") or "its node"
                why = f"{lost.get('reason', 'DisruptionTarget')}: {lost.get('message', '')}"
                return Exit(
                    None,
                    Status.ERROR,
                    f"pod {_name(pod)} lost {node} mid-run ({why.rstrip(': ')})",
                    self._image(tracked),
                )
        failed = conditions.get("Failed") or conditions.get("FailureTarget")
        if failed is not None:
            return self._failure(tracked, failed, pods)
        if tracked.running_at is None:
            return self._queued(tracked, job, pods)
        return None

    def _failure(
        self, tracked: _Tracked, condition: dict[str, Any], pods: list[dict[str, Any]]
    ) -> Exit:
        image = self._image(tracked)
        failing = [
            (pod, term)
            for pod in pods
            if (term := _dig(_container(pod), "state", "terminated")) and term.get("exitCode") != 0
        ]
        code = failing[0][1].get("exitCode") if failing else None
        if condition.get("reason") == "DeadlineExceeded":
            limit = math.ceil(tracked.job.max_duration + self.settings.queue_timeout)
            return Exit(
                code,
                Status.TIMEOUT,
                f"ran past activeDeadlineSeconds={limit} (DeadlineExceeded)",
                image,
            )
        where = f" in pod {_name(failing[0][0])}" if failing and tracked.job.nodes > 1 else ""
        if failing and failing[0][1].get("reason") == "OOMKilled":
            return Exit(code, Status.OOM, f"killed for lack of memory (OOMKilled){where}", image)
        if failing:
            return Exit(code, Status.FAILED, f"exited with code {code}{where}", image)
        for pod in pods:
            if _dig(pod, "status", "phase") == "Failed" and _dig(pod, "status", "reason"):
                status = pod["status"]
                return Exit(
                    None,
                    Status.FAILED,
                    f"pod {status['reason']}: {status.get('message', '')}".rstrip(": "),
                    image,
                )
        reason = condition.get("reason") or "Failed"
        return Exit(
            None,
            Status.FAILED,
            f"Job failed: {reason}: {condition.get('message', '')}".rstrip(": "),
            image,
        )

    def _queued(
        self, tracked: _Tracked, job: dict[str, Any], pods: list[dict[str, Any]]
    ) -> Exit | None:
        """A job whose ranks do not all run yet: wait (within ``queue_timeout``), start its clock,
        or end it: a rejected pod or an image that cannot be pulled at once, a long wait as queued."""
        expected = int(_dig(job, "spec", "parallelism") or 1)
        if _dig(job, "spec", "suspend"):
            queue = (_dig(job, "metadata", "labels") or {}).get(QUEUE_LABEL)
            tracked.queued_reason = (
                f"waiting for Kueue to admit it (queue {queue})" if queue else "suspended"
            )
        elif not pods:
            rejected = self._job_warning(tracked, "FailedCreate")
            if rejected is not None:
                return Exit(None, Status.ERROR, f"pods rejected: {rejected}", None)
            tracked.queued_reason = "the job controller created no pod yet"
        else:
            stuck = self._stuck(tracked, pods)
            if stuck is not None:
                return stuck
            running = [p for p in pods if _started(p) and _dig(p, "status", "phase") != "Failed"]
            if len(running) >= expected:
                tracked.running_at = time.monotonic()
                return None
            tracked.queued_reason = f"{len(running)}/{expected} pods running"
        limit = self.settings.queue_timeout
        if time.monotonic() - tracked.submitted < limit:
            return None
        pending = [p for p in pods if not _started(p)]
        why = self._pending_reason(tracked, pending) if pods else tracked.queued_reason
        return Exit(None, Status.QUEUED, f"still queued after {limit:g}s: {why}", None)

    def _job_warning(self, tracked: _Tracked, reason: str) -> str | None:
        """The message of the Job's latest Warning event with ``reason`` (FailedCreate: a pod the
        API refused, e.g. by Pod Security admission or a quota)."""
        core, _ = self._api()
        events = self._call(
            core.list_namespaced_event,
            self.namespace,
            field_selector=f"involvedObject.name={tracked.name},involvedObject.kind=Job",
        )
        found = [
            e
            for e in events.get("items") or []
            if e.get("type") == "Warning" and e.get("reason") == reason
        ]
        if not found:
            return None
        return str(max(found, key=_event_time).get("message") or reason)

    def _stuck(self, tracked: _Tracked, pods: list[dict[str, Any]]) -> Exit | None:
        """An error for a job that cannot start: an image that cannot be pulled, a bad container."""
        for pod in pods:
            status = _container(pod)
            waiting = _dig(status, "state", "waiting") or {}
            reason = waiting.get("reason")
            detail = (
                f" ({reason}: {waiting['message']})" if waiting.get("message") else f" ({reason})"
            )
            if reason in IMAGE_PULL_ERRORS:
                image = status.get("image") or tracked.job.image
                return Exit(None, Status.ERROR, f"cannot pull image {image}{detail}", None)
            if reason in CONFIG_ERRORS:
                return Exit(None, Status.ERROR, f"container cannot be created{detail}", None)
        return None

    def _pending_reason(self, tracked: _Tracked, pending: list[dict[str, Any]]) -> str:
        """The scheduler's (or kubelet's) last word on why a pod does not start."""
        core, _ = self._api()
        subject = _name(pending[0]) if pending else tracked.name
        events = self._call(
            core.list_namespaced_event,
            self.namespace,
            field_selector=f"involvedObject.name={subject}",
        )
        items = events.get("items") or []
        warnings = [e for e in items if e.get("type") == "Warning"] or items
        if warnings:
            latest = max(warnings, key=_event_time)
            return f"{latest.get('reason', 'Warning')}: {latest.get('message', '')}".rstrip(": ")
        for condition in _dig(pending[0], "status", "conditions") or [] if pending else []:
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                return f"{condition.get('reason', 'Unschedulable')}: {condition.get('message', '')}".rstrip(
                    ": "
                )
        return f"pod {subject} gave no reason" if pending else "the job controller created no pod"

    # --- logs -----------------------------------------------------------------------------

    def _await_started_pod(self, tracked: _Tracked, followed: set[str]) -> str | None:
        """Watch the job's pods until its leader (index 0) has a container that ran."""
        from kubernetes import watch

        core, _ = self._api()
        # ValueError: a pod the client's models reject (the watch parses every event into them)
        errors: tuple[type[BaseException], ...] = (*self._errors(), ValueError)
        while not tracked.over:
            watcher: Any = watch.Watch()  # type: ignore[no-untyped-call]
            tracked.interrupt = watcher.stop
            try:
                for event in watcher.stream(
                    core.list_namespaced_pod,
                    self.namespace,
                    label_selector=f"{JOB_NAME_LABEL}={tracked.name}",
                    timeout_seconds=self.watch_seconds,
                    _request_timeout=self.watch_seconds + REQUEST_TIMEOUT,
                ):
                    pod = event["raw_object"]
                    name = _name(pod)
                    if event["type"] != "DELETED":
                        self._note(tracked, pod)
                    if (
                        event["type"] != "DELETED"
                        and _index(pod) == 0
                        and name not in followed
                        and _started(pod)
                    ):
                        watcher.stop()
                        return name
                    if tracked.over:
                        watcher.stop()
            except errors:
                if not tracked.over:
                    time.sleep(self.poll_interval)
            finally:
                tracked.interrupt = None
        return None

    def _read_log(
        self, tracked: _Tracked, pod: str, cursor: LogCursor, *, follow: bool
    ) -> Iterator[str]:
        core, _ = self._api()
        cursor.resume()
        response = core.read_namespaced_pod_log(
            pod,
            self.namespace,
            container=CONTAINER,
            follow=follow,
            timestamps=True,
            since_seconds=cursor.since_seconds(),
            _preload_content=False,
            _request_timeout=(REQUEST_TIMEOUT, LOG_IDLE_TIMEOUT),
        )
        # shutdown() unblocks a read in progress from another thread (urllib3 >= 2.3)
        tracked.interrupt = getattr(response, "shutdown", None) or response.close
        try:
            yield from cursor.feed(_lines(response, keep_tail=not follow))
        finally:
            tracked.interrupt = None
            response.close()
            response.release_conn()

    def _follow(self, tracked: _Tracked, pod: str) -> Generator[str, None, int | None]:
        """Yield ``pod``'s log lines until its container ends; reconnect whenever the stream drops.

        Returns the container's exit code (None if the pod went away first).
        """
        core, _ = self._api()
        cursor = LogCursor()
        quiet = 0
        while True:
            got = False
            try:
                for line in self._read_log(tracked, pod, cursor, follow=True):
                    got = True
                    yield line
            except self._errors():
                pass  # a dropped stream: the cursor resumes it below without loss or repeat
            if tracked.cancelled:
                return None
            try:
                pod_now = self._call(core.read_namespaced_pod, pod, self.namespace)
            except self._errors():
                return None  # the pod and its log are gone
            terminated = _dig(_container(pod_now), "state", "terminated")
            if terminated is not None:
                # the container is done: this last read is complete, an unterminated last line included
                try:
                    yield from self._read_log(tracked, pod, cursor, follow=False)
                except self._errors():
                    pass
                code = terminated.get("exitCode")
                return code if isinstance(code, int) else None
            quiet = 0 if got else quiet + 1
            if quiet > MAX_RECONNECTS or tracked.over:
                return None
            time.sleep(min(self.poll_interval * quiet, 10.0))

    # --- clean-up -------------------------------------------------------------------------

    def _delete(self, tracked: _Tracked, *, job: bool = True) -> None:
        """Delete the Job (its pods in the background) and its Service; already gone is fine."""
        core, batch = self._api()
        targets = [(core.delete_namespaced_service, tracked.service)]
        if job:
            targets.insert(0, (batch.delete_namespaced_job, tracked.name))
        for delete, name in targets:
            if name is None:
                continue
            try:
                self._call(delete, name, self.namespace, propagation_policy="Background")
            except self._errors():
                pass  # activeDeadlineSeconds and ttlSecondsAfterFinished bound whatever stays behind

    def _refused(self, name: str, exc: BaseException, kind: str = "Job") -> OrchestratorError:
        status = getattr(exc, "status", None)
        why = describe_error(exc)
        if status is None:
            return BackendUnavailable(f"kubernetes: API server unreachable ({why})")
        if status in (401, 403):
            return BackendUnavailable(
                f"kubernetes: not allowed to create {kind} {name} in namespace {self.namespace!r} ({why})",
                hint="bind the mbctl Role (rolebinding-mbctl.yaml from mbctl render k8s)",
            )
        if status == 409:
            return OrchestratorError(
                f"kubernetes: {kind} {name} already exists in namespace {self.namespace!r}",
                hint="left by --keep or an interrupted run: mbctl clean --backend kubernetes",
            )
        return OrchestratorError(f"kubernetes refused {kind} {name} ({why})")

    def leftovers(self, run_id: str | None = None) -> list[dict[str, str]]:
        """mbctl's Jobs and Services in the namespace (of run ``run_id`` only, if given).

        ``status`` is ``finished`` for a Job with a Complete or Failed condition, and for a
        Service whose Job is finished or gone; else ``active``.
        """
        core, batch = self._api()
        selector = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())
        if run_id is not None:
            selector += f",{LABEL_RUN}={label_value(run_id)}"
        found: list[dict[str, str]] = []
        for kind, lister in (
            ("Job", batch.list_namespaced_job),
            ("Service", core.list_namespaced_service),
        ):
            try:
                items = (
                    self._call(lister, self.namespace, label_selector=selector).get("items") or []
                )
            except self._errors() as exc:
                raise BackendUnavailable(
                    f"kubernetes: cannot list {kind}s in namespace {self.namespace!r} ({describe_error(exc)})"
                ) from None
            active = {f["name"] for f in found if f["kind"] == "Job" and f["status"] == "active"}
            for item in items:
                labels = _dig(item, "metadata", "labels") or {}
                if kind == "Job":
                    done = any(
                        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
                        for c in _dig(item, "status", "conditions") or []
                    )
                else:
                    done = _name(item) not in active
                found.append(
                    {
                        "kind": kind,
                        "name": _name(item),
                        "run": labels.get(LABEL_RUN, ""),
                        "status": "finished" if done else "active",
                    }
                )
        return found

    def clean(
        self, run_id: str | None = None, *, everything: bool = False, dry_run: bool = False
    ) -> list[dict[str, str]]:
        """Delete what ``leftovers`` finds (pods go with their Job): a run's objects, or without
        ``run_id`` the finished ones (all with ``everything``); what was, or would be, deleted."""
        core, batch = self._api()
        found = [
            item
            for item in self.leftovers(run_id)
            if run_id is not None or everything or item["status"] == "finished"
        ]
        if dry_run:
            return found
        deleters = {"Job": batch.delete_namespaced_job, "Service": core.delete_namespaced_service}
        for item in found:
            try:
                self._call(
                    deleters[item["kind"]],
                    item["name"],
                    self.namespace,
                    propagation_policy="Background",
                )
            except self._errors() as exc:
                if getattr(exc, "status", None) != 404:  # an owned Service may go with its Job
                    raise BackendUnavailable(
                        f"kubernetes: cannot delete {item['kind']} {item['name']} ({describe_error(exc)})"
                    ) from None
        return found
