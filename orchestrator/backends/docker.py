"""The Docker backend: pure container specs, the SDK-driven backend, and clean-up of mbctl containers.

``container_spec`` is the single place that decides how a job becomes a container (image,
command, environment, mounts, devices, user, labels); the backend and the Compose renderer
both start from it. The Docker SDK is imported lazily: the pure part needs neither it nor an
engine.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from orchestrator import vendors
from orchestrator.backends.base import Exit, Handle, Phase, RunContext, Status, split_lines
from orchestrator.backends.local import job_environment
from orchestrator.errors import BackendUnavailable, ConfigError, ImageError, OrchestratorError
from orchestrator.plan import Job
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

#: Seconds for the reachability check of ``check()``: `auto` must not hang on a dead socket.
PING_TIMEOUT = 5
#: Seconds for ordinary API calls; creating a container may pull its image first.
REQUEST_TIMEOUT = 600
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


def invoking_user() -> str:
    """``uid:gid`` of this process: files a job writes to /results belong to whoever ran mbctl."""
    return f"{os.getuid()}:{os.getgid()}"


class DockerSettings(BaseModel):
    """How jobs run as containers; every field has a default that works on a plain engine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user: str | None = Field(
        default_factory=invoking_user,
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$",
        description="uid[:gid] (or names) the job runs as; None: the image's user",
    )
    shm_size: Size = Field(
        default="8g", description="size of /dev/shm where the vendor has a private one"
    )
    mem_limit: Size | None = Field(
        default=None,
        description="memory limit of each container (swap included, so it OOMs rather than swaps)",
    )


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
    return run


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
        # without a version the SDK asks the engine for one: that request is the first ping
        client = docker.from_env(timeout=timeout, version=version)
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise BackendUnavailable(
            f"Docker engine not reachable at {engine_address()}: {_first_line(exc)}",
            hint="start dockerd (make docker-up) or set DOCKER_HOST",
        ) from None
    return client


def _errors() -> Any:
    import docker.errors

    return docker.errors


class DockerBackend:
    """Runs each job as a detached container, reads its log, judges and removes it."""

    name = "docker"

    def __init__(
        self,
        settings: DockerSettings | None = None,
        *,
        client: Any = None,
        host: HostFacts | None = None,
    ) -> None:
        self.settings = settings or DockerSettings()
        self._client = client
        self._host = host
        self._logs_client: Any = None
        self._lock = threading.Lock()
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

    def submit(self, job: Job, ctx: RunContext) -> Handle:
        spec = container_spec(job, ctx, self.settings, self.host_facts(job.vendor))
        if ctx.phase is Phase.RUN:
            self._preflight(job, spec["image"])
        results = results_dir(ctx, job)
        results.mkdir(parents=True, exist_ok=True)
        self._hand_over(results)
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

        errors = _errors()
        container = handle.native
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                container.reload()
                if container.status in ("exited", "dead"):
                    break
                if deadline is None:
                    container.wait()
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

        errors = _errors()
        container = handle.native
        try:
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
        return cleanup_run(run_id, self.client)


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
    return [item for _, item in chosen]


def cleanup_run(run_id: str, client: Any | None = None) -> list[Leftover]:
    """Remove whatever containers of ``run_id`` remain (after a run, or when resuming it)."""
    return clean(client, run_id=run_id)
