"""The Docker backend: pure container specs, the SDK-driven backend, and clean-up of mbctl containers.

``container_spec`` is the single place that decides how a job becomes a container (image,
command, environment, mounts, devices, user, labels); the backend and the Compose renderer
both start from it. The Docker SDK is imported lazily: the pure part needs neither it nor an
engine.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from orchestrator import vendors
from orchestrator.backends.base import (
    Backend,
    Exit,
    Handle,
    Phase,
    RunContext,
    Status,
    split_lines,
)
from orchestrator.backends.local import job_environment, node_environment
from orchestrator.errors import BackendUnavailable, ConfigError, ImageError, OrchestratorError
from orchestrator.plan import Job
from orchestrator.resources import Resources
from orchestrator.vendors import HostFacts

LABEL_RUN = "mbctl.run"
LABEL_JOB = "mbctl.job"
LABEL_BENCH = "mbctl.bench"
LABEL_PHASE = "mbctl.phase"
#: Where every image expects the dataset cache and the job's own output (images/_base.Dockerfile.j2).
DATA_MOUNT = "/data"
RESULTS_MOUNT = "/results"
#: The benchmark images' ENTRYPOINT runs main.py from their WORKDIR; prepare swaps the script.
PREPARE_ENTRYPOINT = ("python", "prepare.py")

#: Seconds for the first request to an engine (its version, a ping): a socket that accepts
#: but never answers must not hang `auto`, `run` or `clean`.
PING_TIMEOUT = 5
#: Seconds any later API call may wait for the engine's next bytes; an image pull streams
#: progress, so a long pull never waits that long between two reads.
REQUEST_TIMEOUT = 120
#: Seconds between SIGTERM and SIGKILL when a job is cancelled (``docker stop -t``).
STOP_GRACE = 5
#: Seconds an exited job waits for its log reader to drain before its container is removed.
LOG_GRACE = 10.0
#: Seconds between state polls while ``wait`` blocks.
POLL = 0.05
DEFAULT_SOCKET = "unix:///var/run/docker.sock"

_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]+")
#: A size as Docker reads it: bytes, or a number with a b/k/m/g suffix.
Size = Annotated[str, StringConstraints(pattern=r"^[0-9]+[bkmgBKMG]?$")]


#: Who a job runs as when root runs mbctl: an unprivileged user, never the engine's root.
NONROOT_USER = "1000:1000"
#: ``uid[:gid]`` (or ``image``: the image's own user) that overrides the default user of jobs.
USER_ENV = "MBCTL_CONTAINER_USER"


def invoking_user() -> str | None:
    """Who a job runs as: ``$MBCTL_CONTAINER_USER`` if set (``image``: the image's user); else
    ``uid:gid`` of this process, so that files a job writes to /results belong to whoever ran
    mbctl; but never root: when root runs mbctl, NONROOT_USER."""
    chosen = os.environ.get(USER_ENV)
    if chosen:
        return None if chosen == "image" else chosen
    if os.getuid() == 0:
        return NONROOT_USER
    return f"{os.getuid()}:{os.getgid()}"


class DockerSettings(BaseModel):
    """How jobs run as containers; every field has a default that works on a plain engine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user: str | None = Field(
        default_factory=invoking_user,
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$",
        description="uid[:gid] (or names) the job runs as; None: the image's user "
        "(default: whoever runs mbctl, never root; $MBCTL_CONTAINER_USER overrides)",
    )
    shm_size: Size = Field(
        default="8g", description="size of /dev/shm where the vendor has a private one"
    )
    mem_limit: Size | None = Field(
        default=None,
        description="memory limit of each container (swap included, so it OOMs rather than swaps)",
    )


def network_name(run_id: str) -> str:
    """``mbctl-<run>``: the bridge network the jobs of one run share, and nothing else."""
    return _NAME_UNSAFE.sub("-", f"mbctl-{run_id}")


def container_name(run_id: str, job_id: str) -> str:
    """``mbctl-<run>-<job>`` with every character Docker refuses in a name replaced by ``-``."""
    return _NAME_UNSAFE.sub("-", f"mbctl-{run_id}-{job_id}")


def results_dir(ctx: RunContext, job: Job) -> Path:
    """The host folder mounted at /results for ``job``: files a benchmark writes beside its metrics."""
    return ctx.run_dir / "files" / job.id


def job_labels(job: Job, ctx: RunContext) -> dict[str, str]:
    """What ``leftovers``/``clean`` find containers by: only ours carry ``mbctl.run``."""
    return {
        LABEL_RUN: ctx.run_id,
        LABEL_JOB: job.id,
        LABEL_BENCH: job.bench,
        LABEL_PHASE: ctx.phase.value,
    }


def container_spec(
    job: Job, ctx: RunContext, settings: DockerSettings, host: HostFacts | None = None
) -> dict[str, Any]:
    """The keyword arguments of ``client.containers.run(**spec)`` for ``job``, as plain JSON data.

    Device requests and ulimits stay dicts (``sdk_arguments`` turns them into docker.types).
    The dataset cache is read-only except in the prepare phase, so a run cannot alter the
    data another benchmark measures on.
    """
    if not job.image:
        raise ConfigError(
            f"benchmark {job.bench} has no image for vendor {job.vendor}",
            hint="run `mbctl build` or pass --lock",
        )
    spec = vendors.get(job.vendor)
    exposure = vendors.docker_exposure(
        spec.vendor, job.devices, host or HostFacts(), shm_size=settings.shm_size
    )
    # the plan numbers devices as the host does; the exposure knows how the container numbers them
    device_env: Mapping[str, str] = exposure.pop("environment", {})
    environment = {
        k: v for k, v in job_environment(job, ctx).items() if k not in spec.visible_devices_env
    }
    environment.update({"MBCTL_DATA": DATA_MOUNT, "MBCTL_RESULTS": RESULTS_MOUNT, **device_env})
    prepare = ctx.phase is Phase.PREPARE
    run: dict[str, Any] = {
        "image": job.image,
        "command": list(job.argv),
        "name": container_name(ctx.run_id, job.id),
        "labels": job_labels(job, ctx),
        "environment": environment,
        "volumes": {
            str(ctx.data_dir): {"bind": DATA_MOUNT, "mode": "rw" if prepare else "ro"},
            str(results_dir(ctx, job)): {"bind": RESULTS_MOUNT, "mode": "rw"},
        },
        # a real init as PID 1: `docker stop` reaches the benchmark (Python ignores SIGTERM as
        # PID 1) and the zombies of DataLoader workers are reaped
        "init": True,
        "privileged": False,
        "detach": True,
        **exposure,
    }
    if prepare:
        run["entrypoint"] = list(PREPARE_ENTRYPOINT)
    if settings.user:
        run["user"] = settings.user
    if settings.mem_limit:
        run["mem_limit"] = settings.mem_limit
        run["memswap_limit"] = settings.mem_limit
    least_privilege(run)
    apply_resources(run, job.resources)
    return run


def least_privilege(run: dict[str, Any]) -> None:
    """Every capability dropped but those the vendor's exposure adds back (Gaudi: SYS_NICE),
    and no privilege gained through setuid binaries: a benchmark computes, it administers
    nothing."""
    run["cap_drop"] = ["ALL"]
    run["security_opt"] = [*run.get("security_opt", []), "no-new-privileges:true"]


def apply_resources(run: dict[str, Any], resources: Resources | None) -> None:
    """The benchmark's ``resources:`` as Docker limits (they win over DockerSettings.mem_limit);
    memory includes swap, so a job over its limit is OOM-killed rather than swapping."""
    if resources is None:
        return
    memory = resources.memory_bytes()
    if memory is not None:
        run["mem_limit"] = run["memswap_limit"] = memory
    if resources.pids is not None:
        run["pids_limit"] = resources.pids
    if resources.cpus is not None:
        run["nano_cpus"] = round(resources.cpus * 1e9)


def sdk_arguments(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``spec`` with its device requests and ulimits as the docker.types objects the SDK expects."""
    from docker.types import DeviceRequest, Ulimit

    kwargs = dict(spec)
    if "device_requests" in kwargs:
        kwargs["device_requests"] = [DeviceRequest(**d) for d in kwargs["device_requests"]]
    if "ulimits" in kwargs:
        kwargs["ulimits"] = [Ulimit(**u) for u in kwargs["ulimits"]]
    return kwargs


# --- how a container ended (pure) ----------------------------------------------------------


def judge(state: Mapping[str, Any]) -> Exit:
    """The Exit of a stopped container from its ``State`` (``attrs["State"]``)."""
    code = state.get("ExitCode")
    if state.get("OOMKilled"):
        return Exit(code, Status.OOM, f"killed by the out-of-memory killer (exit {code})")
    if state.get("Error"):
        return Exit(code, Status.ERROR, f"the engine could not run the container: {state['Error']}")
    if code == 0:
        return Exit(0, Status.OK)
    if isinstance(code, int) and 128 < code < 160:
        # the shell convention the engine follows: 128 + the signal that ended the process
        number = code - 128
        name = (
            signal.Signals(number).name if number in signal.valid_signals() else f"signal {number}"
        )
        extra = ", not by the out-of-memory killer" if name == "SIGKILL" else ""
        return Exit(code, Status.FAILED, f"killed by {name} (exit {code}{extra})")
    return Exit(code, Status.FAILED, f"exited with code {code}")


def _repository(ref: str) -> str:
    """``ref`` without tag or digest, Docker Hub's implicit prefixes removed."""
    name = ref.partition("@")[0]
    head, _, last = name.rpartition("/")
    if ":" in last:
        name = f"{head}/{last.partition(':')[0]}" if head else last.partition(":")[0]
    for prefix in (
        "docker.io/library/",
        "index.docker.io/library/",
        "docker.io/",
        "index.docker.io/",
    ):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def image_record(ref: str, image_id: str | None, repo_digests: list[str]) -> dict[str, Any]:
    """What ran: the reference asked for, the image ID, and the repo digest of that repository."""
    repository = _repository(ref)
    digest = next((d for d in repo_digests if _repository(d) == repository), None)
    if digest is None and "@" in ref:
        digest = ref
    return {"ref": ref, "id": image_id, "digest": digest}


# --- the engine ------------------------------------------------------------------------------


def engine_address() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "explanation", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def connect(timeout: float | None = REQUEST_TIMEOUT, *, version: str | None = None) -> Any:
    """A Docker client of the engine the environment names; BackendUnavailable if it does not answer."""
    try:
        import docker
        import requests
    except ImportError:
        raise BackendUnavailable(
            "the Docker SDK for Python is not installed", hint="pip install 'mbctl[docker]'"
        ) from None
    try:
        # without a version the SDK asks the engine for one: that request is the first ping,
        # made with a short timeout whatever the caller's, like the ping itself
        first = PING_TIMEOUT if timeout is None else min(timeout, PING_TIMEOUT)
        client = docker.from_env(timeout=first, version=version)
        client.ping()
        client.api.timeout = timeout
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise BackendUnavailable(
            f"Docker engine not reachable at {engine_address()}: {_first_line(exc)}",
            hint="start dockerd (make docker-up) or set DOCKER_HOST",
        ) from None
    return client


def _errors() -> Any:
    import docker.errors

    return docker.errors


class DockerBackend(Backend):
    """Runs each job as a detached container, reads its log, judges and removes it.

    A job spanning N nodes runs as N containers on a network of its own (``nodes`` is how
    many ``--nodes`` allows on this one host): see ``node_specs``.
    """

    name = "docker"

    def __init__(
        self,
        settings: DockerSettings | None = None,
        *,
        client: Any = None,
        host: HostFacts | None = None,
        nodes: int = 1,
    ) -> None:
        self.settings = settings or DockerSettings()
        self.nodes = nodes
        self._client = client
        self._host = host
        self._logs_client: Any = None
        self._lock = threading.Lock()
        self._networks: set[str] = set()
        self._preflighted: set[tuple[str, str]] = set()

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = connect()
            return self._client

    def _log_reader(self) -> Any:
        """A client without a read timeout: the SDK ends a followed log silently after one."""
        client = self.client
        with self._lock:
            if self._logs_client is None:
                self._logs_client = connect(None, version=client.api.api_version)
            return self._logs_client

    def host_facts(self, vendor: str) -> HostFacts:
        # only ROCm's exposure reads the host (render nodes, video/render groups)
        if self._host is None and vendors.get(vendor).vendor is vendors.Vendor.ROCM:
            self._host = HostFacts.probe()
        return self._host or HostFacts()

    def check(self) -> None:
        connect(PING_TIMEOUT).close()

    def max_nodes(self) -> int:
        return self.nodes

    def submit(self, job: Job, ctx: RunContext) -> Handle:
        if job.nodes > 1 and ctx.phase is Phase.RUN:
            return self._submit_nodes(job, ctx)
        spec = container_spec(job, ctx, self.settings, self.host_facts(job.vendor))
        if ctx.phase is Phase.RUN:
            self._preflight(job, spec["image"])
        results = results_dir(ctx, job)
        results.mkdir(parents=True, exist_ok=True)
        self._hand_over(results)
        if ctx.phase is Phase.PREPARE:
            self._hand_over(ctx.data_dir)  # prepare writes the dataset cache as the job's user
        if "network_mode" not in spec:  # Gaudi's host network is the vendor's requirement
            spec["network"] = self._network(ctx.run_id)
        container = self._run(job, ctx, spec)
        return Handle(
            job=job,
            native=container,
            extra={"drained": threading.Event(), "image": self._image(spec["image"], container)},
        )

    def _preflight(self, job: Job, image: str) -> None:
        """Once per image and vendor, before its first job: the image's framework must see the
        planned device (``mbctl doctor``'s in-image part), so a broken image fails in seconds.
        Only images mbctl built carry benchkit to ask; a missing one is pulled by the run itself."""
        key = (image, job.vendor)
        if key in self._preflighted:
            return
        self._preflighted.add(key)
        try:
            labels = self.client.images.get(image).labels or {}
        except _errors().ImageNotFound:
            return
        if "mbctl.benchmark" not in labels:
            return
        from orchestrator.doctor import FATAL, image_preflight

        checks = image_preflight(self.client, image, job.vendor, job.devices)
        failed = [c for c in checks if not c.ok and c.name in FATAL]
        if failed:
            raise ImageError(
                f"image {image} cannot run {job.vendor} jobs: "
                + "; ".join(f"{c.name}: {c.detail}" for c in failed),
                hint=failed[0].fix or f"mbctl doctor --vendor {job.vendor} --image {image}",
            )

    def _hand_over(self, folder: Path) -> None:
        """Give ``folder`` to the container's user when root runs mbctl for another uid."""
        user = self.settings.user or ""
        uid, _, gid = user.partition(":")
        if os.getuid() == 0 and uid.isdigit() and (not gid or gid.isdigit()):
            os.chown(folder, int(uid), int(gid) if gid else -1)

    def _network(self, run_id: str) -> str:
        """The run's own bridge network, made on first use: its jobs reach the outside (a
        prepare may download) but no container of another run or of anyone else."""
        name = network_name(run_id)
        if run_id in self._networks:
            return name
        errors = _errors()
        try:
            self.client.networks.get(name)
        except errors.NotFound:
            try:
                self.client.networks.create(name, driver="bridge", labels={LABEL_RUN: run_id})
            except errors.APIError as exc:
                raise OrchestratorError(
                    f"cannot create the network {name} of run {run_id}: {_first_line(exc)}"
                ) from None
        self._networks.add(run_id)
        return name

    def _run(self, job: Job, ctx: RunContext, spec: dict[str, Any]) -> Any:
        errors = _errors()
        client = self.client
        for attempt in (1, 2):
            try:
                # pulls the image first when the engine does not have it
                return client.containers.run(**sdk_arguments(spec))
            except errors.APIError as exc:
                # 409: the name is taken, by an interrupted attempt of this run (--resume) if by us
                if (
                    exc.status_code == 409
                    and attempt == 1
                    and self._remove_named(spec["name"], ctx.run_id)
                ):
                    continue
                # the SDK creates before it starts: a container that failed to start is left behind
                self._remove_named(spec["name"], ctx.run_id)
                if not self._has_image(spec["image"]):
                    raise ImageError(
                        f"image {spec['image']} of {job.id} is not in the engine and could not be pulled: {_first_line(exc)}",
                        hint="build it (mbctl build), pull it, or pass the --lock that names it",
                    ) from None
                raise OrchestratorError(
                    f"cannot start the container of {job.id}: {_first_line(exc)}"
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _has_image(self, ref: str) -> bool:
        errors = _errors()
        try:
            self.client.images.get(ref)
        except errors.ImageNotFound:
            return False
        except errors.APIError:
            return True  # cannot tell: report the start error as it is
        return True

    def _remove_named(self, name: str, run_id: str) -> bool:
        """Remove the container called ``name`` if it belongs to ``run_id``; True if it is gone."""
        errors = _errors()
        try:
            found = self.client.containers.get(name)
            if found.labels.get(LABEL_RUN) != run_id:
                return False
            found.remove(force=True)
        except errors.NotFound:
            return True
        except errors.APIError:
            return False
        return True

    def _image(self, ref: str, container: Any) -> dict[str, Any]:
        errors = _errors()
        image_id = container.attrs.get("Image")
        try:
            digests = list(self.client.images.get(image_id).attrs.get("RepoDigests") or [])
        except errors.APIError:
            digests = []
        return image_record(ref, image_id, digests)

    def stream(self, handle: Handle) -> Iterator[str]:
        if isinstance(handle.native, NodeContainers):
            yield from self._stream_nodes(handle)
            return
        errors = _errors()
        drained: threading.Event = handle.extra["drained"]
        try:
            chunks = self._log_reader().api.logs(
                handle.native.id, stream=True, follow=True, stdout=True, stderr=True
            )
            handle.extra["logs"] = chunks
            yield from split_lines(chunks)
        except (errors.APIError, BackendUnavailable):
            return  # removed, or the engine is gone: wait() judges the exit or reports the engine
        finally:
            drained.set()

    def wait(self, handle: Handle, timeout: float | None) -> Exit | None:
        """The exit once the container stopped; the container is then removed, after ``stream``
        has read its log (or LOG_GRACE seconds, for a caller that never streams)."""
        import requests

        if isinstance(handle.native, NodeContainers):
            return self._wait_nodes(handle, timeout)
        errors = _errors()
        container = handle.native
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                container.reload()
                if container.status in ("exited", "dead"):
                    break
                if deadline is None:
                    # polled, not a blocking wait: every call keeps its REQUEST_TIMEOUT
                    time.sleep(POLL)
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                time.sleep(min(POLL, left))
        except errors.NotFound:
            handle.extra["drained"].set()
            return Exit(
                None,
                Status.ERROR,
                "the container disappeared (removed by someone else?)",
                handle.extra["image"],
            )
        except requests.exceptions.RequestException as exc:
            raise BackendUnavailable(
                f"lost the Docker engine at {engine_address()} while running {handle.job.id}: {_first_line(exc)}",
                hint="its containers are labelled mbctl.run; `mbctl clean` removes them",
            ) from None
        result = judge(container.attrs.get("State", {}))
        result.image = handle.extra["image"]
        self._remove(handle)
        return result

    def _remove(self, handle: Handle) -> None:
        """Remove the container once its log is read: the log goes with it."""
        errors = _errors()
        handle.extra["drained"].wait(LOG_GRACE)
        logs = handle.extra.get("logs")
        if logs is not None and not handle.extra["drained"].is_set():
            # a follow that outlives its container (an engine bug) is cut so its reader ends;
            # the stream's close raises whatever its transport does, and it is going away anyway
            with contextlib.suppress(Exception):
                logs.close()
        with contextlib.suppress(errors.NotFound, errors.APIError):
            handle.native.remove(force=True)

    def cancel(self, handle: Handle) -> None:
        import requests

        if isinstance(handle.native, NodeContainers):
            for node in handle.native.containers:
                self.cancel(Handle(job=handle.job, native=node))
            return
        errors = _errors()
        container = handle.native
        try:
            # after a second Ctrl-C (``hurry``) there is no grace: kill below at once
            if not handle.extra.get("hurry"):
                container.stop(timeout=STOP_GRACE)
        except errors.NotFound:
            return
        except (errors.APIError, requests.exceptions.RequestException):
            pass  # kill below is the fallback
        with contextlib.suppress(errors.NotFound, errors.APIError):
            container.reload()
            if container.status not in ("exited", "dead"):
                container.kill()

    def leftovers(self, *, exclude_run: str | None = None) -> list[Leftover]:
        return leftovers(self.client, exclude_run=exclude_run)

    def cleanup_run(self, run_id: str) -> list[Leftover]:
        removed = cleanup_run(run_id, self.client)
        self._networks.discard(run_id)
        return removed

    # --- one job over several nodes ------------------------------------------------------------

    def _submit_nodes(self, job: Job, ctx: RunContext) -> Handle:
        specs = node_specs(job, ctx, self.settings, self.host_facts(job.vendor))
        results = results_dir(ctx, job)
        results.mkdir(parents=True, exist_ok=True)
        self._hand_over(results)
        network = self._node_network(job, ctx)
        group = NodeContainers(network=network)
        try:
            for spec in specs:
                group.containers.append(self._run(job, ctx, spec))
        except OrchestratorError:
            for started in group.containers:
                with contextlib.suppress(_errors().APIError):
                    started.remove(force=True)
            with contextlib.suppress(_errors().APIError):
                network.remove()
            raise
        image = self._image(specs[0]["image"], group.containers[0])
        return Handle(job=job, native=group, extra={"drained": threading.Event(), "image": image})

    def _node_network(self, job: Job, ctx: RunContext) -> Any:
        """The job's own bridge network: its containers find node 0 by name on it."""
        errors = _errors()
        name = node_network_name(ctx.run_id, job.id)
        with contextlib.suppress(errors.NotFound):
            stale = self.client.networks.get(name)
            if (stale.attrs.get("Labels") or {}).get(LABEL_RUN) == ctx.run_id:
                stale.remove()  # left by an interrupted attempt of this run (--resume)
        return self.client.networks.create(
            name, driver="bridge", labels=job_labels(job, ctx), check_duplicate=True
        )

    def _stream_nodes(self, handle: Handle) -> Iterator[str]:
        """Every node's log lines, interleaved as they come."""
        group: NodeContainers = handle.native
        lines: queue.Queue[str | None] = queue.Queue()
        nodes = [
            Handle(job=handle.job, native=c, extra={"drained": threading.Event()})
            for c in group.containers
        ]

        def pump(node: Handle) -> None:
            try:
                for line in self.stream(node):
                    lines.put(line)
            finally:
                lines.put(None)

        for node in nodes:
            threading.Thread(target=pump, args=(node,), daemon=True).start()
        try:
            running = len(nodes)
            while running:
                line = lines.get()
                if line is None:
                    running -= 1
                else:
                    yield line
        finally:
            handle.extra["drained"].set()

    def _wait_nodes(self, handle: Handle, timeout: float | None) -> Exit | None:
        """Like ``wait``, for all nodes: the first node that fails stops the others and is the
        job's exit; the containers and their network are then removed."""
        errors = _errors()
        group: NodeContainers = handle.native
        deadline = None if timeout is None else time.monotonic() + timeout
        failed: Exit | None = None
        try:
            while True:
                for container in group.containers:
                    container.reload()
                ended = [c for c in group.containers if c.status in ("exited", "dead")]
                verdicts = [judge(c.attrs.get("State", {})) for c in ended]
                failed = next((v for v in verdicts if v.status is not Status.OK), None)
                if failed is not None or len(ended) == len(group.containers):
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                time.sleep(POLL)
        except errors.NotFound:
            failed = Exit(
                None, Status.ERROR, "a node's container disappeared (removed by someone else?)"
            )
        if failed is not None:
            for container in group.containers:
                with contextlib.suppress(errors.NotFound, errors.APIError):
                    container.stop(timeout=STOP_GRACE)
        result = failed or Exit(0, Status.OK)
        result.image = handle.extra["image"]
        handle.extra["drained"].wait(LOG_GRACE)
        for container in group.containers:
            with contextlib.suppress(errors.NotFound, errors.APIError):
                container.remove(force=True)
        with contextlib.suppress(errors.NotFound, errors.APIError):
            group.network.remove()
        return result


# --- containers that outlived their run ------------------------------------------------------


@dataclass(frozen=True)
class Leftover:
    """A container labelled ``mbctl.run``, as ``leftovers`` and ``clean`` report it."""

    id: str
    name: str
    run: str
    job: str
    status: str

    @property
    def running(self) -> bool:
        return self.status in ("running", "restarting", "paused")


def _labelled(client: Any, run_id: str | None = None) -> list[tuple[Any, Leftover]]:
    """Every container carrying ``mbctl.run`` (of ``run_id`` if given); nothing else, ever."""
    selector = LABEL_RUN if run_id is None else f"{LABEL_RUN}={run_id}"
    found = []
    for container in client.containers.list(all=True, filters={"label": selector}):
        labels = container.labels or {}
        # the engine filtered already; checking again means a filter bug can never widen a removal
        if LABEL_RUN not in labels or (run_id is not None and labels[LABEL_RUN] != run_id):
            continue
        found.append(
            (
                container,
                Leftover(
                    id=container.short_id,
                    name=container.name,
                    run=labels[LABEL_RUN],
                    job=labels.get(LABEL_JOB, ""),
                    status=container.status,
                ),
            )
        )
    return found


def leftovers(client: Any | None = None, *, exclude_run: str | None = None) -> list[Leftover]:
    """Containers of mbctl runs other than ``exclude_run``: left by a run that crashed or was killed."""
    client = client or connect()
    return [item for _, item in _labelled(client) if item.run != exclude_run]


def clean(
    client: Any | None = None,
    *,
    run_id: str | None = None,
    everything: bool = False,
    dry_run: bool = False,
) -> list[Leftover]:
    """Remove mbctl's containers and return them: those of ``run_id``; else every stopped one,
    and running ones too with ``everything``. ``dry_run`` only lists them."""
    errors = _errors()
    client = client or connect()
    chosen = [
        (container, item)
        for container, item in _labelled(client, run_id)
        if run_id is not None or everything or not item.running
    ]
    if not dry_run:
        for container, _ in chosen:
            with contextlib.suppress(errors.NotFound):
                container.remove(force=True)
        remove_networks(client, run_id)
    return [item for _, item in chosen]


def remove_networks(client: Any, run_id: str | None = None) -> None:
    """Remove the per-run networks (of ``run_id``, else of every run) that no container uses."""
    errors = _errors()
    selector = LABEL_RUN if run_id is None else f"{LABEL_RUN}={run_id}"
    for network in client.networks.list(filters={"label": selector}):
        labels = network.attrs.get("Labels") or {}
        if LABEL_RUN not in labels or (run_id is not None and labels[LABEL_RUN] != run_id):
            continue
        # a network still in use (a running container of another run) stays
        with contextlib.suppress(errors.NotFound, errors.APIError):
            network.remove()


def cleanup_run(run_id: str, client: Any | None = None) -> list[Leftover]:
    """Remove whatever containers of ``run_id`` remain (after a run, or when resuming it)."""
    return clean(client, run_id=run_id)


# --- one job over several nodes: N containers on a network of their own (pure part) ----------

#: The rendezvous port of node 0 inside its container (each container has its own ports).
NODE_MASTER_PORT = 29500
LABEL_NODE = "mbctl.node"


@dataclass
class NodeContainers:
    """The containers of a multi-node job, node 0 first, and the network they share."""

    network: Any
    containers: list[Any] = field(default_factory=list)


def node_network_name(run_id: str, job_id: str) -> str:
    return container_name(run_id, job_id)


def node_container_name(run_id: str, job_id: str, rank: int) -> str:
    return container_name(run_id, f"{job_id}-node{rank}")


def node_specs(
    job: Job, ctx: RunContext, settings: DockerSettings, host: HostFacts | None = None
) -> list[dict[str, Any]]:
    """One ``container_spec`` per node of ``job``: the same container, named ``...-node<r>``,
    on the job's network, with the multi-node variables (node 0's name is the master address:
    Docker's DNS resolves container names on a user-defined network)."""
    base = container_spec(job, ctx, settings, host)
    master = node_container_name(ctx.run_id, job.id, 0)
    specs = []
    for rank in range(job.nodes):
        env = node_environment(job.nodes, rank, master, NODE_MASTER_PORT)
        specs.append(
            {
                **base,
                "name": node_container_name(ctx.run_id, job.id, rank),
                "hostname": node_container_name(ctx.run_id, job.id, rank),
                "labels": {**base["labels"], LABEL_NODE: str(rank)},
                "environment": {**base["environment"], **env},
                "network": node_network_name(ctx.run_id, job.id),
            }
        )
    return specs
