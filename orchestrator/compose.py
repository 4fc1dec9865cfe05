"""Compose rendering (pure): a plan's jobs as Compose services, built from the Docker backend's spec.

Every service starts as ``container_spec`` of its job, the very kwargs the Docker backend passes
to ``containers.run``, and is translated key by key; a key the translation does not know is an
error, so the backend and the Compose files cannot drift apart.

The file follows the Compose Specification (no ``version`` key), which docker-compose 1.28+ and
Compose v2 both read. GPUs go in ``deploy.resources.reservations.devices``: both turn it into
the same ``DeviceRequest`` for the chosen device IDs that the backend sends, where the legacy
``runtime: nvidia`` of the 2.x formats would need a daemon-side runtime and expose every GPU.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from orchestrator.backends.base import Phase, RunContext
from orchestrator.backends.docker import DockerSettings, container_spec
from orchestrator.errors import ConfigError
from orchestrator.plan import Plan
from orchestrator.vendors import HostFacts

#: Host paths and the user stay overridable when the file is used elsewhere than where it was rendered.
DATA_DEFAULT = "${MBCTL_DATA:-./data}"
RESULTS_DEFAULT = "${MBCTL_RESULTS:-./results}"
USER_VARIABLE = "MBCTL_USER"

#: containers.run keys that are Compose keys of the same name and meaning.
_SAME = frozenset(
    {
        "image",
        "command",
        "entrypoint",
        "environment",
        "labels",
        "user",
        "init",
        "privileged",
        "shm_size",
        "devices",
        "group_add",
        "security_opt",
        "cap_add",
        "runtime",
        "network_mode",
        "mem_limit",
        "memswap_limit",
        "cap_drop",
        "pids_limit",
    }
)
_RENAMED = {"ipc_mode": "ipc"}
#: Compose attaches to and names the containers of a project itself.
_DROPPED = frozenset({"detach", "name"})
_SERVICE_UNSAFE = re.compile(r"[^a-zA-Z0-9._-]+")


def _escape(value: Any) -> Any:
    """``value`` with every ``$`` doubled: Compose would otherwise substitute variables in it."""
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, list):
        return [_escape(v) for v in value]
    if isinstance(value, dict):
        return {k: _escape(v) for k, v in value.items()}
    return value


def compose_service(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The Compose service doing what ``containers.run(**spec)`` does.

    Host paths (``volumes`` sources) and ``user`` are taken as given, so that they may hold
    ``${VAR:-default}`` placeholders; every other string is escaped.
    """
    service: dict[str, Any] = {}
    for key, value in spec.items():
        if key in _DROPPED:
            continue
        if key in _SAME:
            service[key] = value if key == "user" else _escape(value)
        elif key in _RENAMED:
            service[_RENAMED[key]] = _escape(value)
        elif key == "volumes":
            service["volumes"] = [f"{host}:{m['bind']}:{m['mode']}" for host, m in value.items()]
        elif key == "nano_cpus":
            service["cpus"] = value / 1e9
        elif key == "ulimits":
            service["ulimits"] = {u["name"]: {"soft": u["soft"], "hard": u["hard"]} for u in value}
        elif key == "device_requests":
            service["deploy"] = {
                "resources": {"reservations": {"devices": [_device(r) for r in value]}}
            }
        else:
            raise ValueError(
                f"container spec key {key!r} has no Compose equivalent in orchestrator/compose.py"
            )
    return service


def _device(request: Mapping[str, Any]) -> dict[str, Any]:
    """A DeviceRequest as Compose writes it: capabilities as one flat list (Compose nests it back)."""
    device: dict[str, Any] = {}
    if "driver" in request:
        device["driver"] = request["driver"]
    if "device_ids" in request:
        device["device_ids"] = list(request["device_ids"])
    elif "count" in request:
        device["count"] = "all" if request["count"] == -1 else request["count"]
    device["capabilities"] = [cap for group in request.get("capabilities", []) for cap in group]
    return device


def service_name(job_id: str) -> str:
    return _SERVICE_UNSAFE.sub("-", job_id)


def render_compose(
    plan: Plan,
    settings: DockerSettings,
    *,
    host: HostFacts | None = None,
    data: str | None = None,
    phase: Phase = Phase.RUN,
) -> dict[str, Any]:
    """The Compose document of ``plan``: one service per job, in profile ``<benchmark>``.

    A profile per benchmark because the services of one benchmark (one per device) must run
    together and benchmarks one after another, as ``mbctl run`` does; ``up`` of every service at
    once would measure them against each other. ``data`` is the dataset cache on the host
    (default: ``$MBCTL_DATA`` or ``./data`` beside the file); results go to
    ``$MBCTL_RESULTS/files/<job>`` (default ``./results``).
    """
    ctx = RunContext(
        run_id=f"compose-{plan.suite}",
        run_dir=Path(RESULTS_DEFAULT),
        data_dir=Path(DATA_DEFAULT if data is None else _escape(data)),
        benchmarks_root=Path("."),
        phase=phase,
    )
    services: dict[str, Any] = {}
    for job in plan.jobs:
        name = service_name(job.id)
        if name in services:
            raise ConfigError(
                f"jobs {job.id!r} and another one get the same Compose service name {name!r}"
            )
        service = compose_service(container_spec(job, ctx, settings, host))
        if settings.user:
            service["user"] = f"${{{USER_VARIABLE}:-{_escape(settings.user)}}}"
        service["profiles"] = [service_name(job.bench)]
        services[name] = service
    return {
        "x-mbctl": {"suite": plan.suite, "vendor": plan.vendor, "phase": phase.value},
        "services": services,
    }


def dump_compose(document: Mapping[str, Any]) -> str:
    """The YAML text of ``document`` under a header saying how it was made and how to use it."""
    profiles = sorted({p for s in document["services"].values() for p in s.get("profiles", [])})
    header = [
        "# Rendered by `mbctl render compose` (x-mbctl says from what): edit the suite and render",
        "# again rather than editing this file.",
        "# Run one benchmark at a time (its services, one per device, together):",
        *(f"#   docker-compose -f FILE --profile {p} up" for p in profiles[:3]),
        *(["#   ..."] if len(profiles) > 3 else []),
        "# Host paths: MBCTL_DATA (dataset cache), MBCTL_RESULTS (files of each job); MBCTL_USER",
        "# (uid:gid) owns what the jobs write. Create $MBCTL_RESULTS/files/<job> before `up`,",
        "# or the engine creates them owned by root.",
    ]
    body = yaml.safe_dump(dict(document), sort_keys=False, default_flow_style=False, width=1 << 16)
    return "\n".join(header) + "\n" + body
