"""An in-process fake Kubernetes API server: the endpoints the backend calls, with scripted pods.

Not a cluster, but it enforces what matters: every created object is validated against the
official schema (kubernetes-validate, strict); pods are admitted by the namespace's Pod Security
level (a rejected pod is a FailedCreate event on its Job, as the job controller reports it);
a suspended Job gets no pod until a fake Kueue admits it whole (gang: all its pods fit, or it
waits); Indexed Jobs get one pod per index with its hostname; scheduling places a pod on a node
and honours required anti-affinity on the hostname; Services owned by a Job are collected with
it. A *scenario* (a function run in a thread once a Job may have pods) plays the kubelet: it
creates pods, changes their status, appends log lines, sets the Job's conditions, loses a node.
The HTTP side speaks what the official client expects: JSON objects and Status errors, chunked
watch streams and followed logs (with ``sinceSeconds`` and ``timestamps``), and connections
that can be cut mid-line on purpose.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

INDEX = "batch.kubernetes.io/job-completion-index"
QUEUE = "kueue.x-k8s.io/queue-name"
PSS_LEVELS = ("restricted", "baseline", "privileged")
#: What Pod Security "baseline" lets a container add; "restricted" only NET_BIND_SERVICE.
BASELINE_CAPS = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}  # fmt: skip

Scenario = Callable[["Cluster", dict[str, Any]], None]


def pod_security_violations(pod: dict[str, Any], level: str) -> list[str]:
    """Why ``pod`` (a pod spec) breaks Pod Security ``level``, worded like the admission plugin;
    written from the Pod Security Standards page, apart from mbctl's own level function."""
    if level == "privileged":
        return []
    found: list[str] = []
    host = [k for k in ("hostNetwork", "hostPID", "hostIPC") if pod.get(k)]
    if host:
        found.append(f"host namespaces ({', '.join(f'{k}=true' for k in host)})")
    volumes = pod.get("volumes") or []
    if any("hostPath" in v for v in volumes):
        found.append("hostPath volumes")
    pod_ctx = pod.get("securityContext") or {}
    containers = pod.get("containers") or []
    for c in containers:
        ctx = c.get("securityContext") or {}
        name = c.get("name")
        if ctx.get("privileged"):
            found.append(f'privileged (container "{name}" must not set privileged=true)')
        added = set((ctx.get("capabilities") or {}).get("add") or [])
        if added - BASELINE_CAPS:
            found.append(
                f'non-default capabilities (container "{name}" must not include '
                f"{', '.join(sorted(added - BASELINE_CAPS))} in securityContext.capabilities.add)"
            )
        if any(p.get("hostPort") for p in c.get("ports") or []):
            found.append("hostPort")
        seccomp = (ctx.get("seccompProfile") or pod_ctx.get("seccompProfile") or {}).get("type")
        if seccomp == "Unconfined":
            found.append("seccompProfile (type Unconfined)")
    if level == "baseline":
        return found
    if any(not set(v) - {"name"} <= RESTRICTED_VOLUMES for v in volumes):
        found.append("restricted volume types")
    for c in containers:
        ctx = c.get("securityContext") or {}
        name = c.get("name")
        if ctx.get("allowPrivilegeEscalation") is not False:
            found.append(f'allowPrivilegeEscalation != false (container "{name}")')
        caps = ctx.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            found.append(f'unrestricted capabilities (container "{name}" must drop ALL)')
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            found.append(
                f'unrestricted capabilities (container "{name}" adds more than NET_BIND_SERVICE)'
            )
        if ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is not True:
            found.append(f'runAsNonRoot != true (container "{name}")')
        if ctx.get("runAsUser", pod_ctx.get("runAsUser")) == 0:
            found.append(f'runAsUser=0 (container "{name}")')
        seccomp = (ctx.get("seccompProfile") or pod_ctx.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(
                f'seccompProfile (container "{name}" must set RuntimeDefault or Localhost)'
            )
    return found


def gpu_node(name: str, *, gpus: int = 8, product: str = "NVIDIA-H100-80GB-HBM3") -> dict[str, Any]:
    """A Ready node as the NVIDIA GPU operator labels it."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": "gpu-8x",
                "nvidia.com/gpu.product": product,
                "nvidia.com/gpu.count": str(gpus),
                "nvidia.com/gpu.memory": "81559",
                "nvidia.com/cuda.driver-version.full": "550.90.07",
                "topology.kubernetes.io/zone": "zone-a",
            },
        },
        "spec": {},
        "status": {
            "allocatable": {"cpu": "190", "memory": "2063000000Ki", "nvidia.com/gpu": str(gpus)},
            "conditions": [{"type": "Ready", "status": "True"}],
            "nodeInfo": {
                "kernelVersion": "5.15.0-1063-nvidia",
                "osImage": "Ubuntu 22.04.4 LTS",
                "containerRuntimeVersion": "containerd://1.7.20",
                "kubeletVersion": "v1.31.0",
            },
        },
    }


@dataclass
class Kueue:
    """Admits suspended Jobs of a queue whole: when all their pods fit in ``nodes`` free nodes
    (one pod per node), after ``delay`` seconds; until then they stay suspended."""

    nodes: int = 2
    delay: float = 0.05
    queues: frozenset[str] = frozenset({"benchmarks"})
    used: int = 0
    admitted: list[str] = field(default_factory=list)


def rfc3339(ns: int) -> str:
    """Go's RFC3339Nano: trailing zeros of the fraction trimmed, as the kubelet writes it."""
    seconds, frac = divmod(ns, 1_000_000_000)
    base = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{frac:09d}".rstrip("0")
    return f"{base}.{digits}Z" if digits else f"{base}Z"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Cluster:
    """The fake's state. Scenarios change it through the helpers; every change wakes the streams."""

    namespace: str = "mbctl"
    #: the Kubernetes version whose schema every created object must satisfy
    version: str = "1.31"
    #: the namespace's pod-security.kubernetes.io/enforce level
    pod_security: str = "privileged"
    kueue: Kueue | None = None
    nodes: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {n: gpu_node(n) for n in ("gpu-node-a", "gpu-node-b")}
    )
    lost: set[str] = field(default_factory=set)
    pvcs: set[str] = field(default_factory=lambda: {"mbctl-data"})
    scenarios: dict[str, Scenario] = field(default_factory=dict)
    cond: threading.Condition = field(default_factory=threading.Condition)
    rv: int = 0
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    logs: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    pod_changes: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    log_cuts: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    validated: list[tuple[str, str]] = field(default_factory=list)
    deleted: list[tuple[str, str, str | None]] = field(default_factory=list)
    closed: bool = False
    #: answer 403 to node reads, as without the node-reader ClusterRole
    forbid_nodes: bool = False

    # --- what scenarios call ---------------------------------------------------------------

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def gone(self, job: str) -> bool:
        with self.cond:
            return job not in self.jobs or self.closed

    def add_pod(self, job: dict[str, Any], index: int | None = None) -> str:
        """The job controller's part: a pod of ``job`` (Indexed Jobs: one per index, named and
        hosted as ``<job>-<index>``). Refused while the Job is suspended."""
        spec = job["spec"]
        job_name = job["metadata"]["name"]
        with self.cond:
            current = self.jobs.get(job_name, job)
            assert not current["spec"].get("suspend"), f"{job_name} is suspended: no pod may start"
        indexed = spec.get("completionMode") == "Indexed"
        assert indexed == (index is not None), "an index is given exactly to Indexed Jobs' pods"
        if indexed:
            assert index is not None and 0 <= index < spec["completions"]
        name = f"{job_name}-{index if index is not None else 0}-{uuid.uuid4().hex[:5]}"
        template = spec["template"]
        container = template["spec"]["containers"][0]
        labels = {**template["metadata"]["labels"], "job-name": job_name}
        pod_spec: dict[str, Any] = {
            "containers": [{"name": container["name"], "image": container["image"]}],
            "affinity": template["spec"].get("affinity"),
        }
        if indexed:
            labels[INDEX] = str(index)
            pod_spec |= {
                "hostname": f"{job_name}-{index}",
                "subdomain": template["spec"]["subdomain"],
            }
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "uid": str(uuid.uuid4()),
                "creationTimestamp": _now(),
                "labels": labels,
                "annotations": {INDEX: str(index)} if index is not None else {},
            },
            "spec": pod_spec,
            "status": {"phase": "Pending", "conditions": []},
        }
        with self.cond:
            self.pods[name] = pod
            self.logs[name] = []
            self._changed("ADDED", pod)
        return name

    def pod_status(
        self,
        name: str,
        *,
        phase: str | None = None,
        scheduled: tuple[str, str] | bool | None = None,
        state: dict[str, Any] | None = None,
        image_id: str = "",
        reason: str | None = None,
    ) -> None:
        """Change a pod: its phase, PodScheduled condition (True, or (reason, message) for False), container state."""
        with self.cond:
            pod = self.pods.get(name)
            if pod is None:
                return
            status = pod["status"]
            if phase:
                status["phase"] = phase
            if reason:
                status["reason"] = reason
            if scheduled is True and not pod["spec"].get("nodeName"):
                node = self._place(pod)
                if node is None:
                    scheduled = (
                        "Unschedulable",
                        f"0/{len(self.nodes)} nodes are available: "
                        f"{len(self.nodes)} node(s) didn't match pod anti-affinity rules.",
                    )
                    state = None
                else:
                    pod["spec"]["nodeName"] = node
            if scheduled is True:
                status["conditions"] = [{"type": "PodScheduled", "status": "True"}]
            elif isinstance(scheduled, tuple):
                why, message = scheduled
                status["conditions"] = [
                    {"type": "PodScheduled", "status": "False", "reason": why, "message": message}
                ]
            if state is not None:
                image = pod["spec"]["containers"][0]["image"]
                status["containerStatuses"] = [
                    {
                        "name": "bench",
                        "image": image,
                        "imageID": image_id,
                        "ready": "running" in state,
                        "restartCount": 0,
                        "state": state,
                    }
                ]
            self._changed("MODIFIED", pod)

    def scheduled(self, name: str) -> bool:
        with self.cond:
            return bool(self.pods.get(name, {}).get("spec", {}).get("nodeName"))

    def _place(self, pod: dict[str, Any]) -> str | None:
        """The scheduler's part: the first node not ruled out by required anti-affinity."""
        rules = (((pod["spec"].get("affinity") or {}).get("podAntiAffinity") or {})
                 .get("requiredDuringSchedulingIgnoredDuringExecution") or [])  # fmt: skip
        taken: set[str] = set()
        for rule in rules:
            assert rule["topologyKey"] == "kubernetes.io/hostname"
            wanted = rule["labelSelector"]["matchLabels"]
            taken |= {
                str(p["spec"].get("nodeName"))
                for p in self.pods.values()
                if p is not pod
                and all(p["metadata"]["labels"].get(k) == v for k, v in wanted.items())
            }
        free = [n for n in self.nodes if n not in taken and n not in self.lost]
        return free[0] if free else None

    def lose_node(self, node: str) -> None:
        """The node stops answering: its pods are marked for eviction (DisruptionTarget) and
        failed, their logs cannot be read any more, the Job fails."""
        with self.cond:
            self.lost.add(node)
            for pod in self.pods.values():
                if pod["spec"].get("nodeName") != node:
                    continue
                pod["status"]["phase"] = "Failed"
                pod["status"]["conditions"] = [
                    *pod["status"].get("conditions", []),
                    {
                        "type": "DisruptionTarget",
                        "status": "True",
                        "reason": "DeletionByTaintManager",
                        "message": "Taint manager: deleting due to NoExecute taint",
                    },
                ]
                self._changed("MODIFIED", pod)
            self.cond.notify_all()

    def log(self, pod: str, *texts: str, ts: int | None = None) -> None:
        """Append lines to a pod's log; ``ts`` stamps them all alike (lines that share a timestamp)."""
        with self.cond:
            for text in texts:
                self.logs[pod].append((ts if ts is not None else time.time_ns(), text))
            self.cond.notify_all()

    def job_condition(
        self, job: str, kind: str, reason: str | None = None, message: str = ""
    ) -> None:
        with self.cond:
            if job not in self.jobs:
                return
            condition = {"type": kind, "status": "True", "reason": reason, "message": message}
            self.jobs[job].setdefault("status", {}).setdefault("conditions", []).append(
                {k: v for k, v in condition.items() if v is not None}
            )
            self.cond.notify_all()

    def event(
        self, involved: str, reason: str, message: str, *, kind: str = "Pod", type_: str = "Warning"
    ) -> None:
        with self.cond:
            self.events.append(
                {
                    "metadata": {
                        "name": f"{involved}.{uuid.uuid4().hex[:8]}",
                        "namespace": self.namespace,
                    },
                    "involvedObject": {"kind": kind, "name": involved, "namespace": self.namespace},
                    "reason": reason,
                    "message": message,
                    "type": type_,
                    "lastTimestamp": _now(),
                }
            )

    # --- internals ---------------------------------------------------------------------------

    def _changed(self, kind: str, pod: dict[str, Any]) -> None:
        self.rv += 1
        pod["metadata"]["resourceVersion"] = str(self.rv)
        self.pod_changes.append((self.rv, kind, json.loads(json.dumps(pod))))
        self.cond.notify_all()

    def container_done(self, pod: str) -> bool:
        found = self.pods.get(pod)
        if found is None or found["spec"].get("nodeName") in self.lost:
            return True
        statuses = found["status"].get("containerStatuses") or [{}]
        return "terminated" in (statuses[0].get("state") or {})

    def delete_job(self, name: str) -> bool:
        with self.cond:
            job = self.jobs.pop(name, None)
            if job is None:
                return False
            # the garbage collector: what the Job owns goes with it
            uid = job["metadata"]["uid"]
            for service in [
                s for s in self.services.values()
                if any(o.get("uid") == uid for o in s["metadata"].get("ownerReferences") or [])
            ]:  # fmt: skip
                del self.services[service["metadata"]["name"]]
            if self.kueue is not None and name in self.kueue.admitted:
                self.kueue.admitted.remove(name)
                self.kueue.used -= int(job["spec"].get("parallelism") or 1)
            for pod in [
                p for p in self.pods.values() if p["metadata"]["labels"].get("job-name") == name
            ]:
                del self.pods[pod["metadata"]["name"]]
                self._changed("DELETED", pod)
            self.cond.notify_all()
            return True


def _matches(obj: dict[str, Any], selector: str) -> bool:
    labels = obj["metadata"].get("labels") or {}
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return None

    @property
    def cluster(self) -> Cluster:
        return self.server.cluster

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        with self.cluster.cond:
            self.cluster.requests.append((method, self.path))
        for verb, pattern, action in ROUTES:
            match = re.fullmatch(pattern, url.path)
            if verb == method and match:
                action(self, query, body, **match.groupdict())
                return
        self.status(404, "NotFound", f"no route {method} {url.path}")

    # --- responses ---------------------------------------------------------------------------

    def json(self, obj: Any, code: int = 200) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def status(self, code: int, reason: str, message: str) -> None:
        self.json(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "message": message,
                "reason": reason,
                "code": code,
            },
            code,
        )

    def start_chunks(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def cut(self) -> None:
        """Drop the connection without ending the chunked body: the client sees a broken stream."""
        self.close_connection = True


# --- endpoints -------------------------------------------------------------------------------


def _version(h: _Handler, query: dict[str, str], body: Any) -> None:
    h.json({"major": "1", "minor": "31", "gitVersion": "v1.31.0-fake", "platform": "linux/amd64"})


def _get_pvc(h: _Handler, query: dict[str, str], body: Any, ns: str, name: str) -> None:
    if ns != h.cluster.namespace or name not in h.cluster.pvcs:
        h.status(404, "NotFound", f'persistentvolumeclaims "{name}" not found')
        return
    h.json(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": ns},
        }
    )


def _create(kind: str) -> Callable[..., None]:
    def create(h: _Handler, query: dict[str, str], body: Any, ns: str) -> None:
        import kubernetes_validate

        cluster = h.cluster
        store = cluster.jobs if kind == "Job" else cluster.services
        name = body["metadata"]["name"]
        try:
            kubernetes_validate.validate(body, cluster.version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            h.status(
                422, "Invalid", f'{kind} "{name}" is invalid: {exc.message} at {list(exc.path)}'
            )
            return
        with cluster.cond:
            cluster.validated.append((kind, name))
            if name in store:
                h.status(409, "AlreadyExists", f'{kind.lower()}s "{name}" already exists')
                return
            obj = json.loads(json.dumps(body))
            obj["metadata"] |= {
                "uid": str(uuid.uuid4()),
                "creationTimestamp": _now(),
                "resourceVersion": "1",
            }
            obj["status"] = {}
            store[name] = obj
        h.json(obj, 201)
        if kind == "Job":
            threading.Thread(target=_job_controller, args=(cluster, obj), daemon=True).start()

    return create


def _job_controller(cluster: Cluster, job: dict[str, Any]) -> None:
    """Wait for admission of a suspended Job, refuse pods Pod Security forbids, run the scenario."""
    name = job["metadata"]["name"]
    queue = job["metadata"]["labels"].get(QUEUE)
    if job["spec"].get("suspend"):
        kueue = cluster.kueue
        if kueue is None or queue not in kueue.queues:
            return  # nothing will ever admit it
        need = int(job["spec"].get("parallelism") or 1)
        time.sleep(kueue.delay)
        while True:
            with cluster.cond:
                if name not in cluster.jobs or cluster.closed:
                    return
                if kueue.used + need <= kueue.nodes:  # all of the gang, or none of it
                    kueue.used += need
                    kueue.admitted.append(name)
                    cluster.jobs[name]["spec"]["suspend"] = False
                    break
                cluster.cond.wait(timeout=0.05)
    violations = pod_security_violations(job["spec"]["template"]["spec"], cluster.pod_security)
    if violations:
        level = cluster.pod_security
        cluster.event(
            name,
            "FailedCreate",
            f'Error creating: pods "{name}-" is forbidden: violates PodSecurity '
            f'"{level}:latest": {", ".join(violations)}',
            kind="Job",
        )
        return
    scenario = cluster.scenarios.get(job["metadata"]["labels"]["mbctl.job"])
    if scenario is not None:
        scenario(cluster, job)


def _get_job(h: _Handler, query: dict[str, str], body: Any, ns: str, name: str) -> None:
    with h.cluster.cond:
        job = json.loads(json.dumps(h.cluster.jobs.get(name)))
    if job is None:
        h.status(404, "NotFound", f'jobs.batch "{name}" not found')
    else:
        h.json(job)


def _delete(kind: str) -> Callable[..., None]:
    def delete(h: _Handler, query: dict[str, str], body: Any, ns: str, name: str) -> None:
        cluster = h.cluster
        policy = query.get("propagationPolicy") or (body or {}).get("propagationPolicy")
        with cluster.cond:
            cluster.deleted.append((kind, name, policy))
        found = (
            cluster.delete_job(name)
            if kind == "Job"
            else cluster.services.pop(name, None) is not None
        )
        if not found:
            h.status(404, "NotFound", f'{kind.lower()} "{name}" not found')
            return
        h.json({"kind": "Status", "apiVersion": "v1", "status": "Success"})

    return delete


def _list_pods(h: _Handler, query: dict[str, str], body: Any, ns: str) -> None:
    cluster = h.cluster
    selector = query.get("labelSelector", "")
    if query.get("watch") not in ("true", "1", "True"):
        with cluster.cond:
            items = [
                json.loads(json.dumps(p)) for p in cluster.pods.values() if _matches(p, selector)
            ]
        h.json(
            {
                "apiVersion": "v1",
                "kind": "PodList",
                "metadata": {"resourceVersion": str(cluster.rv)},
                "items": items,
            }
        )
        return
    deadline = time.monotonic() + float(query.get("timeoutSeconds", "30"))
    h.start_chunks("application/json")
    with cluster.cond:
        seen = cluster.rv
        initial = [
            json.loads(json.dumps(p)) for p in cluster.pods.values() if _matches(p, selector)
        ]
    try:
        for pod in initial:  # a watch without resourceVersion starts with the current objects
            h.chunk(json.dumps({"type": "ADDED", "object": pod}).encode() + b"\n")
        while time.monotonic() < deadline:
            with cluster.cond:
                if cluster.rv == seen and not cluster.closed:
                    cluster.cond.wait(timeout=0.05)
                if cluster.closed:
                    break
                fresh = [(rv, t, p) for rv, t, p in cluster.pod_changes if rv > seen]
                seen = cluster.rv
            for _, kind, pod in fresh:
                if _matches(pod, selector):
                    h.chunk(json.dumps({"type": kind, "object": pod}).encode() + b"\n")
        h.end_chunks()
    except OSError:
        h.close_connection = True  # the client went away (a stopped watch)


def _get_pod(h: _Handler, query: dict[str, str], body: Any, ns: str, name: str) -> None:
    with h.cluster.cond:
        pod = json.loads(json.dumps(h.cluster.pods.get(name)))
    if pod is None:
        h.status(404, "NotFound", f'pods "{name}" not found')
    else:
        h.json(pod)


def _pod_log(h: _Handler, query: dict[str, str], body: Any, ns: str, name: str) -> None:
    cluster = h.cluster
    follow = query.get("follow") == "true"
    stamps = query.get("timestamps") == "true"
    since = query.get("sinceSeconds")
    cutoff = time.time_ns() - int(since) * 1_000_000_000 if since else 0
    with cluster.cond:
        if name not in cluster.pods:
            h.status(404, "NotFound", f'pods "{name}" not found')
            return
        node = cluster.pods[name]["spec"].get("nodeName")
        if node in cluster.lost:
            h.status(
                500,
                "InternalError",
                f'Get "https://{node}:10250/containerLogs": dial tcp: i/o timeout',
            )
            return
        plan = cluster.log_cuts.get(name) or []
        cut = plan.pop(0) if plan and follow else None
    h.start_chunks("text/plain")
    sent = 0
    read = 0
    try:
        while True:
            with cluster.cond:
                idle = read >= len(cluster.logs.get(name, [])) and follow
                if idle and not cluster.container_done(name) and not cluster.closed:
                    cluster.cond.wait(timeout=0.05)
                lines = cluster.logs.get(name, [])[read:]
                read += len(lines)
                done = cluster.container_done(name) or not follow or cluster.closed
            for ts, text in lines:
                if ts < cutoff:
                    continue
                data = (f"{rfc3339(ts)} {text}\n" if stamps else f"{text}\n").encode()
                if cut is not None and sent == cut[1]:
                    if cut[0] == "partial":
                        h.chunk(data[: len(data) // 2])
                        h.cut()
                    else:
                        h.end_chunks()
                    return
                h.chunk(data)
                sent += 1
            if done:
                h.end_chunks()
                return
    except OSError:
        h.close_connection = True


def _list_events(h: _Handler, query: dict[str, str], body: Any, ns: str) -> None:
    fields = dict(
        t.partition("=")[::2] for t in filter(None, query.get("fieldSelector", "").split(","))
    )
    with h.cluster.cond:
        items = [
            e
            for e in h.cluster.events
            if all(e["involvedObject"].get(k.partition(".")[2]) == v for k, v in fields.items())
        ]
    h.json({"apiVersion": "v1", "kind": "EventList", "metadata": {}, "items": items})


def _list(kind: str) -> Callable[..., None]:
    def list_(h: _Handler, query: dict[str, str], body: Any, ns: str | None = None) -> None:
        cluster = h.cluster
        store = {"Job": cluster.jobs, "Service": cluster.services, "Node": cluster.nodes}[kind]
        selector = query.get("labelSelector", "")
        with cluster.cond:
            items = [json.loads(json.dumps(o)) for o in store.values() if _matches(o, selector)]
        h.json({"apiVersion": "v1", "kind": f"{kind}List", "metadata": {}, "items": items})

    return list_


def _get_namespace(h: _Handler, query: dict[str, str], body: Any, name: str) -> None:
    cluster = h.cluster
    if name != cluster.namespace:
        h.status(404, "NotFound", f'namespaces "{name}" not found')
        return
    labels = {f"pod-security.kubernetes.io/{m}": cluster.pod_security for m in ("enforce", "warn")}
    h.json({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})


def _get_node(h: _Handler, query: dict[str, str], body: Any, name: str) -> None:
    if h.cluster.forbid_nodes:
        h.status(403, "Forbidden", f'nodes "{name}" is forbidden: cannot get resource "nodes"')
        return
    with h.cluster.cond:
        node = json.loads(json.dumps(h.cluster.nodes.get(name)))
    if node is None:
        h.status(404, "NotFound", f'nodes "{name}" not found')
    else:
        h.json(node)


_NS = r"/namespaces/(?P<ns>[^/]+)"
ROUTES: list[tuple[str, str, Callable[..., None]]] = [
    ("GET", r"/version/?", _version),
    ("GET", rf"/api/v1{_NS}/persistentvolumeclaims/(?P<name>[^/]+)", _get_pvc),
    ("POST", rf"/apis/batch/v1{_NS}/jobs", _create("Job")),
    ("GET", rf"/apis/batch/v1{_NS}/jobs/(?P<name>[^/]+)", _get_job),
    ("DELETE", rf"/apis/batch/v1{_NS}/jobs/(?P<name>[^/]+)", _delete("Job")),
    ("POST", rf"/api/v1{_NS}/services", _create("Service")),
    ("DELETE", rf"/api/v1{_NS}/services/(?P<name>[^/]+)", _delete("Service")),
    ("GET", rf"/api/v1{_NS}/pods", _list_pods),
    ("GET", rf"/api/v1{_NS}/pods/(?P<name>[^/]+)", _get_pod),
    ("GET", rf"/api/v1{_NS}/pods/(?P<name>[^/]+)/log", _pod_log),
    ("GET", rf"/api/v1{_NS}/events", _list_events),
    ("GET", rf"/apis/batch/v1{_NS}/jobs", _list("Job")),
    ("GET", rf"/api/v1{_NS}/services", _list("Service")),
    ("GET", r"/api/v1/nodes", _list("Node")),
    ("GET", r"/api/v1/namespaces/(?P<name>[^/]+)", _get_namespace),
    ("GET", r"/api/v1/nodes/(?P<name>[^/]+)", _get_node),
]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.cluster = cluster


class FakeApiServer:
    """Serves ``cluster`` on 127.0.0.1 (random port) from a background thread."""

    def __init__(self, cluster: Cluster | None = None) -> None:
        self.cluster = cluster or Cluster()
        self._server = _Server(self.cluster)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self.cluster.cond:
            self.cluster.closed = True
            self.cluster.cond.notify_all()
        self._server.shutdown()
        self._server.server_close()
