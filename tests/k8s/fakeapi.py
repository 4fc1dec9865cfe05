"""An in-process fake Kubernetes API server: the endpoints the backend calls, with scripted pods.

Not a cluster: no scheduler, no kubelet. A *scenario* (a function run in a thread when a Job
is created) plays their part by creating pods, changing their status, appending log lines and
setting the Job's conditions. The HTTP side speaks what the official client expects: JSON
objects and Status errors, chunked watch streams and followed logs (with ``sinceSeconds`` and
``timestamps``), and connections that can be cut mid-line on purpose.
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

Scenario = Callable[["Cluster", dict[str, Any]], None]


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
    deleted: list[tuple[str, str, str | None]] = field(default_factory=list)
    closed: bool = False

    # --- what scenarios call ---------------------------------------------------------------

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def gone(self, job: str) -> bool:
        with self.cond:
            return job not in self.jobs or self.closed

    def add_pod(self, job: dict[str, Any], index: int | None = None) -> str:
        name = (
            f"{job['metadata']['name']}-{index if index is not None else 0}-{uuid.uuid4().hex[:5]}"
        )
        template = job["spec"]["template"]
        container = template["spec"]["containers"][0]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "uid": str(uuid.uuid4()),
                "creationTimestamp": _now(),
                "labels": {**template["metadata"]["labels"], "job-name": job["metadata"]["name"]},
                "annotations": {INDEX: str(index)} if index is not None else {},
            },
            "spec": {"containers": [{"name": container["name"], "image": container["image"]}]},
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
        if found is None:
            return True
        statuses = found["status"].get("containerStatuses") or [{}]
        return "terminated" in (statuses[0].get("state") or {})

    def delete_job(self, name: str) -> bool:
        with self.cond:
            if self.jobs.pop(name, None) is None:
                return False
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
        cluster = h.cluster
        store = cluster.jobs if kind == "Job" else cluster.services
        name = body["metadata"]["name"]
        with cluster.cond:
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
            scenario = cluster.scenarios.get(body["metadata"]["labels"]["mbctl.job"])
            if scenario is not None:
                threading.Thread(target=scenario, args=(cluster, obj), daemon=True).start()

    return create


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
    selector = query.get("fieldSelector", "")
    _, _, name = selector.partition("involvedObject.name=")
    with h.cluster.cond:
        items = [
            e
            for e in h.cluster.events
            if not name or e["involvedObject"]["name"] == name.split(",")[0]
        ]
    h.json({"apiVersion": "v1", "kind": "EventList", "metadata": {}, "items": items})


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
