"""Kubernetes manifests of a plan (pure): Jobs, Indexed Jobs + headless Services, PVC, namespace, RBAC.

Builders return plain dicts spelled as in YAML, so the same data is written by ``mbctl render
k8s`` and sent by the backend, and golden tests pin it per vendor.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from orchestrator import vendors
from orchestrator.backends.base import Phase, RunContext
from orchestrator.backends.kubernetes.settings import K8sSettings
from orchestrator.backends.local import job_environment
from orchestrator.errors import ConfigError
from orchestrator.plan import Job, Plan

Manifest = dict[str, Any]

LABEL_RUN = "mbctl.run"
LABEL_JOB = "mbctl.job"
LABEL_BENCH = "mbctl.bench"
LABEL_PHASE = "mbctl.phase"
MANAGED_BY = {"app.kubernetes.io/managed-by": "mbctl"}
#: Set by the job controller on every pod of a Job (the newer batch.kubernetes.io/ name needs 1.27).
JOB_NAME_LABEL = "job-name"
#: Annotation holding an Indexed Job pod's index; its label twin only exists since 1.28.
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
CONTAINER = "bench"
DATA_DIR = "/data"
RESULTS_DIR = "/results"
RDZV_PORT = 29500
#: ServiceAccount, Role and RoleBinding that let mbctl drive jobs from inside the cluster.
RBAC_NAME = "mbctl"

_MAX_NAME = 63
_NOT_DNS = re.compile(r"[^a-z0-9-]+")
_NOT_LABEL = re.compile(r"[^A-Za-z0-9._-]+")


def _shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with a hash of the whole, so that cut names stay distinct."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{text[: limit - len(digest) - 1].rstrip('-._')}-{digest}"


def dns_label(*parts: str, limit: int = _MAX_NAME) -> str:
    """``parts`` joined as a DNS-1035 label (a letter first, so it can also name a Service)."""
    text = _NOT_DNS.sub("-", "-".join(parts).lower())
    text = re.sub(r"-{2,}", "-", text).strip("-")
    if not text[:1].isalpha():
        text = f"mbctl-{text}".rstrip("-")
    return _shorten(text, limit)


def label_value(text: str) -> str:
    """``text`` as a label value: at most 63 of ``[A-Za-z0-9._-]``, alphanumeric at both ends."""
    value = _NOT_LABEL.sub("-", text).strip("-._")
    return _shorten(value, _MAX_NAME) if value else "none"


def _literal(text: str) -> str:
    """``text`` with ``$(`` escaped: Kubernetes expands ``$(VAR)`` in args and env values."""
    return text.replace("$(", "$$(")


def _multi_node(job: Job, phase: Phase) -> bool:
    # preparing data is a single pod whatever the benchmark's plan
    return job.nodes > 1 and phase is Phase.RUN


def job_name(job: Job, phase: Phase = Phase.RUN, run_id: str | None = None) -> str:
    """The Job's name (and its Service's): stable without ``run_id``, unique per run with it."""
    parts = [
        job.id,
        *(["prepare"] if phase is Phase.PREPARE else []),
        *([run_id] if run_id else []),
    ]
    # an Indexed Job's pods are named <job>-<index>, and that hostname must stay a DNS label too
    reserve = len(f"-{job.nodes - 1}") if _multi_node(job, phase) else 0
    return dns_label(*parts, limit=_MAX_NAME - reserve)


def _labels(job: Job, phase: Phase, run_id: str) -> dict[str, str]:
    return {
        **MANAGED_BY,
        LABEL_RUN: label_value(run_id),
        LABEL_JOB: label_value(job.id),
        LABEL_BENCH: label_value(job.bench),
        LABEL_PHASE: phase.value,
    }


def _environment(
    job: Job, phase: Phase, run_id: str, spec: vendors.VendorSpec
) -> list[dict[str, Any]]:
    ctx = RunContext(
        run_id=run_id,
        run_dir=Path(RESULTS_DIR),
        data_dir=Path(DATA_DIR),
        benchmarks_root=Path("."),
        phase=phase,
    )
    # the device plugin decides which devices a pod sees; the plan's host indices mean nothing there
    env = {k: v for k, v in job_environment(job, ctx).items() if k not in spec.visible_devices_env}
    env |= {"MBCTL_DATA": DATA_DIR, "MBCTL_RESULTS": RESULTS_DIR}
    entries: list[dict[str, Any]] = [{"name": k, "value": _literal(v)} for k, v in env.items()]
    if _multi_node(job, phase):
        # set explicitly so that $(JOB_COMPLETION_INDEX) in args expands whatever the cluster version
        entries.append(
            {
                "name": "JOB_COMPLETION_INDEX",
                "valueFrom": {
                    "fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_ANNOTATION}']"}
                },
            }
        )
    return sorted(entries, key=lambda e: str(e["name"]))


def _command(job: Job, phase: Phase, name: str) -> tuple[list[str], list[str]]:
    script = "prepare.py" if phase is Phase.PREPARE else "main.py"
    argv = [_literal(arg) for arg in job.argv]
    if not _multi_node(job, phase):
        return ["python", script], argv
    # torchrun itself, through the image's python: a torchrun script on PATH may belong to
    # another interpreter than the one benchkit is installed in
    return ["python", "-m", "torch.distributed.run"], [
        "--nnodes", str(job.nodes),
        "--nproc-per-node", str(max(1, len(job.devices))),
        "--node-rank", "$(JOB_COMPLETION_INDEX)",
        "--rdzv-backend", "c10d",
        "--rdzv-endpoint", f"{name}-0.{name}:{RDZV_PORT}",
        script,
        *argv,
    ]  # fmt: skip


def device_resource(spec: vendors.VendorSpec, settings: K8sSettings) -> str | None:
    """The extended resource a pod of this vendor asks for, if any."""
    if spec.k8s_resource is None:
        return None
    return settings.resource_name or spec.k8s_resource


def _resources(
    job: Job, phase: Phase, spec: vendors.VendorSpec, settings: K8sSettings
) -> dict[str, Any]:
    limits: dict[str, str] = {}
    resource = device_resource(spec, settings)
    # preparing data needs no accelerator: it should not hold one or wait for one
    if phase is Phase.RUN and resource is not None:
        limits[resource] = str(max(1, len(job.devices)))
        limits |= spec.k8s_extra_resources
    limits |= settings.limits
    return {"limits": limits} if limits else {}


def _security(
    spec: vendors.VendorSpec, settings: K8sSettings
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pod's and the container's securityContext."""
    pod: dict[str, Any] = {}
    container: dict[str, Any] = {}
    capabilities: dict[str, list[str]] = {}
    if spec.k8s_run_as_non_root:
        uid = settings.run_as_user
        pod |= {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "fsGroup": uid}
        container["allowPrivilegeEscalation"] = False
        capabilities["drop"] = ["ALL"]
    if spec.k8s_capabilities:
        capabilities["add"] = list(spec.k8s_capabilities)
    if capabilities:
        container["capabilities"] = capabilities
    if spec.k8s_seccomp is not None:
        pod["seccompProfile"] = {"type": spec.k8s_seccomp}
    if settings.supplemental_groups:
        pod["supplementalGroups"] = list(settings.supplemental_groups)
    return pod, container


def job_manifest(
    job: Job,
    settings: K8sSettings,
    phase: Phase = Phase.RUN,
    *,
    run_id: str,
    name: str | None = None,
) -> Manifest:
    """The Job running ``job`` (an Indexed Job over ``job.nodes`` pods when it spans nodes).

    ``name`` defaults to the per-run ``job_name``; ``mbctl render`` passes the stable one.
    """
    if not job.image:
        raise ConfigError(
            f"job {job.id} has no image",
            hint="pass --lock FILE, --image-registry REGISTRY or --image BENCH=REF",
        )
    spec = vendors.get(job.vendor)
    name = name or job_name(job, phase, run_id)
    labels = _labels(job, phase, run_id)
    command, args = _command(job, phase, name)
    read_only = phase is Phase.RUN
    pod_security, container_security = _security(spec, settings)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": job.image,
        # locked images are pinned by digest: a node that has the digest has the image
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "args": args,
        "env": _environment(job, phase, run_id, spec),
        "resources": _resources(job, phase, spec, settings),
        "volumeMounts": [
            {"name": "dshm", "mountPath": "/dev/shm"},
            {"name": "data", "mountPath": DATA_DIR, "readOnly": read_only},
            {"name": "results", "mountPath": RESULTS_DIR},
        ],
    }
    if container_security:
        container["securityContext"] = container_security
    tolerations = [t.manifest() for t in settings.tolerations]
    resource = device_resource(spec, settings)
    if resource is not None:
        # device plugins and GPU operators taint accelerator nodes with the resource name
        tolerations.insert(0, {"key": resource, "operator": "Exists", "effect": "NoSchedule"})
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        # benchmarks never talk to the API server
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [container],
        "volumes": [
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": settings.shm_size}},
            {
                "name": "data",
                "persistentVolumeClaim": {"claimName": settings.pvc, "readOnly": read_only},
            },
            {"name": "results", "emptyDir": {}},
        ],
    }
    optional: dict[str, Any] = {
        "tolerations": tolerations,
        "nodeSelector": dict(settings.node_selector),
        "affinity": settings.affinity,
        "priorityClassName": settings.priority_class,
        "imagePullSecrets": [{"name": s} for s in settings.image_pull_secrets],
        "serviceAccountName": settings.service_account,
        "securityContext": pod_security,
        "hostIPC": True if spec.k8s_host_ipc and phase is Phase.RUN else None,
    }
    pod |= {k: v for k, v in optional.items() if v}
    job_spec: dict[str, Any] = {
        "backoffLimit": settings.backoff_limit,
        "activeDeadlineSeconds": math.ceil(job.max_duration),
        "ttlSecondsAfterFinished": settings.ttl_seconds,
        "template": {"metadata": {"labels": dict(labels)}, "spec": pod},
    }
    if _multi_node(job, phase):
        pod["subdomain"] = name
        job_spec |= {
            "completionMode": "Indexed",
            "completions": job.nodes,
            "parallelism": job.nodes,
        }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": settings.namespace, "labels": labels},
        "spec": job_spec,
    }


def needs_service(job: Job, phase: Phase = Phase.RUN) -> bool:
    """Whether ``job`` needs a headless Service (its pods find each other by DNS)."""
    return _multi_node(job, phase)


def service_manifest(
    job: Job, settings: K8sSettings, *, run_id: str, name: str | None = None
) -> Manifest:
    """The headless Service giving pod ``<name>-<i>`` the DNS name ``<name>-<i>.<name>``."""
    name = name or job_name(job, Phase.RUN, run_id)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": settings.namespace,
            "labels": _labels(job, Phase.RUN, run_id),
        },
        "spec": {
            "clusterIP": "None",
            "selector": {JOB_NAME_LABEL: name},
            # rendezvous starts before any pod is Ready; peers must resolve each other right away
            "publishNotReadyAddresses": True,
            "ports": [
                {"name": "rdzv", "port": RDZV_PORT, "targetPort": RDZV_PORT, "protocol": "TCP"}
            ],
        },
    }


def namespace_manifest(settings: K8sSettings) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": settings.namespace, "labels": dict(MANAGED_BY)},
    }


def pvc_manifest(settings: K8sSettings) -> Manifest:
    """The dataset cache: ReadWriteMany so that every node mounts it (read-only while benchmarks run)."""
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": settings.storage_size}},
    }
    if settings.storage_class:
        spec["storageClassName"] = settings.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": settings.pvc,
            "namespace": settings.namespace,
            "labels": dict(MANAGED_BY),
        },
        "spec": spec,
    }


def rbac_manifests(settings: K8sSettings) -> list[Manifest]:
    """ServiceAccount, Role and RoleBinding with exactly what the backend calls (pods are made by the job controller)."""

    def meta() -> dict[str, Any]:
        return {"name": RBAC_NAME, "namespace": settings.namespace, "labels": dict(MANAGED_BY)}

    rules = [
        {
            "apiGroups": ["batch"],
            "resources": ["jobs"],
            "verbs": ["create", "get", "list", "watch", "delete"],
        },
        {
            "apiGroups": [""],
            "resources": ["services"],
            "verbs": ["create", "get", "list", "watch", "delete"],
        },
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "delete"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["get"]},
    ]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta()},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta(),
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta(),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": RBAC_NAME},
            "subjects": [
                {"kind": "ServiceAccount", "name": RBAC_NAME, "namespace": settings.namespace}
            ],
        },
    ]


def _file_name(manifest: Manifest) -> str:
    return f"{manifest['kind'].lower()}-{manifest['metadata']['name']}.yaml"


def render_bundle(
    plan: Plan, settings: K8sSettings, phase: Phase = Phase.RUN
) -> dict[str, Manifest]:
    """Every object to ``kubectl apply`` for ``plan``, keyed by a stable file name.

    Jobs get stable names (no run id) and ``plan.suite`` as their run label, so that rendering
    twice gives the same files.
    """
    missing = sorted({j.bench for j in plan.jobs if not j.image})
    if missing:
        raise ConfigError(
            f"no image for {', '.join(missing)}",
            hint="pass --lock FILE, --image-registry REGISTRY or --image BENCH=REF",
        )
    objects = [namespace_manifest(settings), pvc_manifest(settings), *rbac_manifests(settings)]
    for job in plan.jobs:
        name = job_name(job, phase)
        if needs_service(job, phase):
            objects.append(service_manifest(job, settings, run_id=plan.suite, name=name))
        objects.append(job_manifest(job, settings, phase, run_id=plan.suite, name=name))
    bundle: dict[str, Manifest] = {}
    for manifest in objects:
        file = _file_name(manifest)
        if file in bundle:
            raise ConfigError(
                f"two jobs of the plan get the same name {manifest['metadata']['name']!r}",
                hint="benchmark names that differ only in case or punctuation cannot share a namespace",
            )
        bundle[file] = manifest
    return bundle


def kustomization(files: Iterable[str]) -> Manifest:
    """A kustomization listing ``files`` (``kubectl apply -k DIR``)."""
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": list(files),
    }
