"""Kubernetes manifests of a plan (pure): Jobs, Indexed Jobs + headless Services, PVC, namespace, RBAC.

Also what they imply: requests scaled by the pod's devices, the Pod Security level each pod
needs (the namespace enforces the highest), Kueue's queue label, static rendezvous across nodes.

Builders return plain dicts spelled as in YAML, so the same data is written by ``mbctl render
k8s`` and sent by the backend, and golden tests pin it per vendor.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from orchestrator import vendors
from orchestrator.backends.base import Phase, RunContext
from orchestrator.backends.kubernetes.settings import K8sSettings
from orchestrator.backends.local import job_environment
from orchestrator.errors import ConfigError
from orchestrator.plan import Job, Plan
from orchestrator.resources import Resources

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
#: Kueue's label naming the LocalQueue a Job waits in.
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
#: The Pod Security Standards levels, least privileged first.
PSS_LEVELS = ("restricted", "baseline", "privileged")
PSS_LABEL = "pod-security.kubernetes.io/"
#: Capabilities the "baseline" level allows to add (restricted: NET_BIND_SERVICE only).
BASELINE_CAPABILITIES = frozenset(
    {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
     "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
)  # fmt: skip
#: The ClusterRole (and binding) letting the backend read what nodes ran a job.
NODE_READER = "mbctl-node-reader"
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
    job: Job, phase: Phase, run_id: str, name: str, spec: vendors.VendorSpec, settings: K8sSettings
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
    if _multi_node(job, phase):
        # benchkit turns these into torchrun's static rendezvous: rank 0 hosts the store at a
        # name the headless Service gives it, every rank knows its own (c10d ignores --node-rank
        # and elects its store host by a DNS race)
        env |= {
            "MBCTL_NNODES": str(job.nodes),
            "MBCTL_MASTER_ADDR": f"{name}-0.{name}",
            "MBCTL_MASTER_PORT": str(RDZV_PORT),
            "MBCTL_RDZV_TIMEOUT": str(settings.rendezvous_timeout),
        }
    entries: list[dict[str, Any]] = [{"name": k, "value": _literal(v)} for k, v in env.items()]
    if _multi_node(job, phase):
        # from the annotation: the index label only exists since 1.28
        entries.append(
            {
                "name": "MBCTL_NODE_RANK",
                "valueFrom": {
                    "fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_ANNOTATION}']"}
                },
            }
        )
    return sorted(entries, key=lambda e: str(e["name"]))


def _command(job: Job, phase: Phase) -> tuple[list[str], list[str]]:
    script = "prepare.py" if phase is Phase.PREPARE else "main.py"
    return ["python", script], [_literal(arg) for arg in job.argv]


def device_resource(spec: vendors.VendorSpec, settings: K8sSettings) -> str | None:
    """The extended resource a pod of this vendor asks for, if any."""
    if spec.k8s_resource is None:
        return None
    return settings.resource_name or spec.k8s_resource


_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([A-Za-z]*)$")


def scale_quantity(quantity: str, factor: int) -> str:
    """``quantity`` times ``factor``, in the same unit (``64Gi`` × 8 = ``512Gi``, ``500m`` × 3 = ``1500m``)."""
    match = _QUANTITY.fullmatch(quantity)
    if match is None:
        raise ConfigError(f"not a resource quantity: {quantity!r}", hint="e.g. 8, 500m, 64Gi")
    number = Decimal(match[1]) * factor
    text = format(number.normalize(), "f") if number != number.to_integral() else str(int(number))
    return text + match[2]


def per_device(spec: vendors.VendorSpec, settings: K8sSettings) -> dict[str, str]:
    """Requests per device: the vendor table's, with the site's replacing them key by key."""
    return {**spec.k8s_per_device, **settings.per_device}


def cpu_quantity(cpus: float) -> str:
    """``cpus`` cores as a quantity: whole cores as a number, fractions in millicores."""
    millis = max(1, round(cpus * 1000))
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def job_resources(resources: Resources | None) -> dict[str, str]:
    """A benchmark's ``resources:`` as pod quantities: ``memory`` and ``cpu`` (pids have no
    per-pod field: the kubelet's ``podPidsLimit`` is a node setting)."""
    if resources is None:
        return {}
    own: dict[str, str] = {}
    if resources.memory is not None:
        # Kubernetes spells the decimal kilo "k"; every other suffix of the model is its own
        own["memory"] = re.sub(r"K$", "k", resources.memory)
    if resources.cpus is not None:
        own["cpu"] = cpu_quantity(resources.cpus)
    return own


def _resources(
    job: Job, phase: Phase, spec: vendors.VendorSpec, settings: K8sSettings
) -> dict[str, Any]:
    """Requests per device times the pod's devices; memory and huge pages limited at their request.

    CPU gets no limit unless Guaranteed QoS is asked for (a CPU limit throttles data loaders);
    a job without devices, and every prepare job, counts as one device. The benchmark's own
    ``resources:`` (memory, cpus) replace the scaled values, as request and limit both.
    """
    running = phase is Phase.RUN
    count = max(1, len(job.devices)) if running else 1
    requests = {
        key: scale_quantity(value, count)
        for key, value in sorted(per_device(spec, settings).items())
        # huge pages serve the accelerator runtime, which preparing data does not start
        if running or not key.startswith("hugepages-")
    }
    limits = {k: v for k, v in requests.items() if k != "cpu" or settings.guaranteed}
    own = job_resources(job.resources)
    # the benchmark knows its own needs better than a per-device guess, in both directions: its
    # value is the limit, and the request too (a request above the limit is invalid, and one
    # below it would let a node overcommit what the benchmark is known to use)
    requests |= own
    limits |= own
    resource = device_resource(spec, settings)
    # preparing data needs no accelerator: it should not hold one or wait for one
    if running and resource is not None:
        limits[resource] = str(count)
    if _multi_node(job, phase):
        limits |= settings.rdma_resources
    return {"requests": requests, "limits": limits}


def _security(
    job: Job, phase: Phase, spec: vendors.VendorSpec, settings: K8sSettings
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pod's and the container's securityContext: the least the vendor (and RDMA) needs."""
    pod: dict[str, Any] = {}
    container: dict[str, Any] = {}
    capabilities: dict[str, list[str]] = {}
    add = list(spec.k8s_capabilities)
    if settings.ipc_lock and _multi_node(job, phase):
        add.append("IPC_LOCK")
    # a capability only takes effect for root: runtimes grant no ambient capabilities
    if spec.k8s_run_as_non_root and not add:
        uid = settings.run_as_user
        pod |= {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "fsGroup": uid}
        container["allowPrivilegeEscalation"] = False
        capabilities["drop"] = ["ALL"]
    if add:
        capabilities["add"] = add
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
            hint="pass --lock FILE, --registry HOST/PATH or --image BENCH=REF",
        )
    spec = vendors.get(job.vendor)
    name = name or job_name(job, phase, run_id)
    labels = _labels(job, phase, run_id)
    command, args = _command(job, phase)
    read_only = phase is Phase.RUN
    pod_security, container_security = _security(job, phase, spec, settings)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": job.image,
        # locked images are pinned by digest: a node that has the digest has the image
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "args": args,
        "env": _environment(job, phase, run_id, name, spec, settings),
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
        "affinity": _affinity(job, phase, name, settings),
        "priorityClassName": settings.priority_class,
        "imagePullSecrets": [{"name": s} for s in settings.image_pull_secrets],
        "serviceAccountName": settings.service_account,
        "securityContext": pod_security,
        "hostIPC": True if settings.host_ipc and phase is Phase.RUN else None,
    }
    pod |= {k: v for k, v in optional.items() if v}
    job_spec: dict[str, Any] = {
        "backoffLimit": settings.backoff_limit,
        # a backstop for Jobs applied without mbctl: the backend's own clock starts when the pod
        # runs, and this one when the Job starts (or Kueue resumes it), before pulls and scheduling
        "activeDeadlineSeconds": math.ceil(job.max_duration + settings.queue_timeout),
        "ttlSecondsAfterFinished": settings.ttl_seconds,
        "template": {"metadata": {"labels": dict(labels)}, "spec": pod},
    }
    job_labels = dict(labels)
    if settings.queue_name:
        # Kueue admits the whole Job (all its pods) as one workload and then resumes it
        job_labels[QUEUE_LABEL] = settings.queue_name
        job_spec["suspend"] = True
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
        "metadata": {"name": name, "namespace": settings.namespace, "labels": job_labels},
        "spec": job_spec,
    }


def _affinity(job: Job, phase: Phase, name: str, settings: K8sSettings) -> dict[str, Any] | None:
    """The site's affinity, plus one rank per node for a multi-node job (required, not preferred:
    two ranks on one machine would measure a single node under a multi-node name)."""
    affinity = dict(settings.affinity or {})
    if not _multi_node(job, phase):
        return affinity or None
    spread = {
        "labelSelector": {"matchLabels": {JOB_NAME_LABEL: name}},
        "topologyKey": "kubernetes.io/hostname",
    }
    anti = dict(affinity.get("podAntiAffinity") or {})
    required = list(anti.get("requiredDuringSchedulingIgnoredDuringExecution") or [])
    anti["requiredDuringSchedulingIgnoredDuringExecution"] = [*required, spread]
    return affinity | {"podAntiAffinity": anti}


def pod_security_level(pod: Mapping[str, Any]) -> str:
    """The least Pod Security Standards level that admits ``pod`` (a pod spec), for the fields
    mbctl writes: host namespaces, capabilities, privilege escalation, user, seccomp, volumes."""
    if any(pod.get(k) for k in ("hostIPC", "hostPID", "hostNetwork")) or any(
        "hostPath" in v for v in pod.get("volumes") or []
    ):
        return "privileged"
    pod_ctx = pod.get("securityContext") or {}
    level = "restricted"
    for container in pod.get("containers") or []:
        ctx = container.get("securityContext") or {}
        caps = ctx.get("capabilities") or {}
        added = set(caps.get("add") or [])
        seccomp = (ctx.get("seccompProfile") or pod_ctx.get("seccompProfile") or {}).get("type")
        if ctx.get("privileged") or added - BASELINE_CAPABILITIES or seccomp == "Unconfined":
            return "privileged"
        non_root = ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot"))
        if (
            added - {"NET_BIND_SERVICE"}
            or "ALL" not in (caps.get("drop") or [])
            or ctx.get("allowPrivilegeEscalation") is not False
            or non_root is not True
            or seccomp not in ("RuntimeDefault", "Localhost")
        ):
            level = "baseline"
    return level


def needs_service(job: Job, phase: Phase = Phase.RUN) -> bool:
    """Whether ``job`` needs a headless Service (its pods find each other by DNS)."""
    return _multi_node(job, phase)


def service_manifest(
    job: Job,
    settings: K8sSettings,
    *,
    run_id: str,
    name: str | None = None,
    owner_uid: str | None = None,
) -> Manifest:
    """The headless Service giving pod ``<name>-<i>`` the DNS name ``<name>-<i>.<name>``.

    With ``owner_uid`` (the created Job's) the Service is the Job's: deleting the Job, by mbctl,
    its TTL or a person, garbage-collects it.
    """
    name = name or job_name(job, Phase.RUN, run_id)
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": settings.namespace,
        "labels": _labels(job, Phase.RUN, run_id),
    }
    if owner_uid is not None:
        metadata["ownerReferences"] = [
            {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": owner_uid,
             "blockOwnerDeletion": False}
        ]  # fmt: skip
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
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


def namespace_manifest(settings: K8sSettings, level: str = "restricted") -> Manifest:
    """The namespace, enforcing Pod Security ``level`` (what its pods need, nothing more)."""
    security = {f"{PSS_LABEL}{mode}": level for mode in ("enforce", "audit", "warn")} | {
        f"{PSS_LABEL}enforce-version": "latest"
    }
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": settings.namespace, "labels": {**MANAGED_BY, **security}},
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
    cluster_meta = {"name": NODE_READER, "labels": dict(MANAGED_BY)}
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
        # which node ran a job, its accelerator labels and allocatable devices (results name the
        # hardware), and the namespace's Pod Security level (checked before anything is created)
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": cluster_meta,
            "rules": [
                {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]},
                {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            # cluster-scoped: one per namespace that runs mbctl
            "metadata": {**cluster_meta, "name": f"{NODE_READER}-{settings.namespace}"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": NODE_READER,
            },
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
            hint="pass --lock FILE, --registry HOST/PATH or --image BENCH=REF",
        )
    objects = [pvc_manifest(settings), *rbac_manifests(settings)]
    jobs: list[Manifest] = []
    for job in plan.jobs:
        name = job_name(job, phase)
        if needs_service(job, phase):
            objects.append(service_manifest(job, settings, run_id=plan.suite, name=name))
        jobs.append(job_manifest(job, settings, phase, run_id=plan.suite, name=name))
    level = bundle_security_level(jobs)
    objects = [namespace_manifest(settings, level), *objects, *jobs]
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


def needed_security_level(vendor: str, settings: K8sSettings) -> str:
    """The Pod Security level ``vendor``'s run pods need with ``settings``, on one node or several."""
    probes = [
        Job(id=f"probe.{tag}", bench="probe", tag=tag, definition="probe", vendor=vendor,
            devices=("0",), plan=plan, nodes=nodes, max_duration=1, image="probe")
        for tag, plan, nodes in (("D0", "per_gpu", 1), ("N2", "nodes", 2))
    ]  # fmt: skip
    return bundle_security_level(job_manifest(j, settings, run_id="probe") for j in probes)


def bundle_security_level(jobs: Iterable[Manifest]) -> str:
    """The Pod Security level a namespace must allow for every Job of ``jobs`` to create pods."""
    levels = [pod_security_level(m["spec"]["template"]["spec"]) for m in jobs]
    return max(levels, key=PSS_LEVELS.index, default=PSS_LEVELS[0])


def kustomization(files: Iterable[str]) -> Manifest:
    """A kustomization listing ``files`` (``kubectl apply -k DIR``)."""
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": list(files),
    }
