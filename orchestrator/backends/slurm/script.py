"""Pure sbatch scripts: a job's options, environment and per-runtime command line (no Slurm needed).

One function, ``batch_script``, decides how a planned job becomes a Slurm batch job; the
backend submits its text and ``mbctl render slurm`` writes it to files, so what a site admin
reads is what mbctl runs. Golden tests pin it per runtime and vendor.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Sequence
from pathlib import Path

from orchestrator import __version__, vendors
from orchestrator.backends.base import Phase, RunContext
from orchestrator.backends.docker import DATA_MOUNT, RESULTS_MOUNT, results_dir
from orchestrator.backends.local import job_environment
from orchestrator.backends.slurm.settings import GpuRequest, Runtime, SlurmSettings
from orchestrator.errors import ConfigError
from orchestrator.plan import Job
from orchestrator.vendors import Vendor

#: The benchmark images' WORKDIR (images/benchmark.Dockerfile.j2): main.py and prepare.py are there.
IMAGE_WORKDIR = "/opt/mbctl/benchmark"
#: Every Slurm job mbctl submits is named ``mbctl.<run>.<job>``: how a run finds its own jobs.
NAME_PREFIX = "mbctl."

#: Container flags per vendor. Slurm chooses the devices (and sets CUDA_VISIBLE_DEVICES and
#: ROCR_VISIBLE_DEVICES in the task), so a container sees the whole device class and the
#: scheduler's variables say which to use; the rest mirrors vendors.docker_exposure.
PODMAN_DEVICE_FLAGS: dict[Vendor, tuple[str, ...]] = {
    Vendor.CPU: (),
    Vendor.CUDA: (
        "--device=nvidia.com/gpu=all",
        "--ipc=host",
        "--ulimit=memlock=-1:-1",
        "--ulimit=stack=67108864:67108864",
    ),
    Vendor.ROCM: (
        "--device=/dev/kfd",
        "--device=/dev/dri",
        "--group-add=keep-groups",
        "--security-opt=seccomp=unconfined",
        "--ipc=host",
    ),
    Vendor.HPU: ("--runtime=habana", "--cap-add=SYS_NICE", "--ipc=host"),
    Vendor.XPU: ("--device=/dev/dri", "--ipc=host"),
}
#: Apptainer binds /dev already; CUDA and ROCm need their user-space libraries bound in.
APPTAINER_DEVICE_FLAGS: dict[Vendor, tuple[str, ...]] = {
    Vendor.CPU: (),
    Vendor.CUDA: ("--nv",),
    Vendor.ROCM: ("--rocm",),
    Vendor.HPU: (),
    Vendor.XPU: (),
}
#: Variables Slurm sets per task; Podman does not pass the host environment, so they are named.
SLURM_DEVICE_ENV = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL")

_REGISTRY = re.compile(r"^[^/]+[.:][^/]*$|^localhost$")


def job_name(run_id: str, job_id: str) -> str:
    return f"{NAME_PREFIX}{run_id}.{job_id}"


def time_limit(max_duration: float, margin_minutes: int) -> str:
    """``--time`` as H:MM:SS: the benchmark's limit rounded up to minutes, plus the margin."""
    minutes = math.ceil(max_duration / 60) + margin_minutes
    return f"{minutes // 60}:{minutes % 60:02d}:00"


def pyxis_image(ref: str) -> str:
    """``ref`` as enroot names images: the registry host, if any, is separated by ``#``.

    ``registry.example.com:5000/mbctl/fp32@sha256:…`` becomes
    ``registry.example.com:5000#mbctl/fp32@sha256:…``; without the ``#`` enroot asks Docker Hub.
    """
    head, sep, rest = ref.partition("/")
    if sep and _REGISTRY.match(head):
        if head in ("docker.io", "index.docker.io"):
            return rest
        return f"{head}#{rest}"
    return ref


def gpu_options(job: Job, settings: SlurmSettings) -> list[str]:
    """The accelerator request of ``job``: as many per node as the plan gives it."""
    count = len(job.devices)
    if vendors.get(job.vendor).vendor is Vendor.CPU or count == 0:
        return [f"--cpus-per-task={settings.cpus_per_task}"] if settings.cpus_per_task else []
    typed = f"{settings.gpu_type}:{count}" if settings.gpu_type else str(count)
    options = (
        [f"--gpus-per-node={typed}"]
        if settings.gpu_request is GpuRequest.GPUS_PER_NODE
        else [f"--gres=gpu:{typed}"]
    )
    if settings.cpus_per_gpu:
        options.append(f"--cpus-per-gpu={settings.cpus_per_gpu}")
    return options


def sbatch_options(job: Job, settings: SlurmSettings, *, name: str, output: str) -> list[str]:
    """The ``#SBATCH`` options of ``job``, in a fixed order."""
    if any(c.isspace() for c in output):
        raise ConfigError(
            f"Slurm output path {output!r} contains whitespace",
            hint="put the results folder (--results) on a path without spaces",
        )
    options = [
        f"--job-name={name}",
        f"--output={output}",
        # a node failure is reported as NODE_FAIL, not hidden by a silent second attempt
        "--no-requeue",
        f"--time={time_limit(job.max_duration, settings.time_margin)}",
        f"--nodes={job.nodes}",
        "--ntasks-per-node=1",
    ]
    for flag, value in (
        ("partition", settings.partition),
        ("account", settings.account),
        ("qos", settings.qos),
        ("reservation", settings.reservation),
        ("constraint", settings.constraint),
        ("mem", settings.mem),
    ):
        if value:
            options.append(f"--{flag}={value}")
    options += gpu_options(job, settings)
    if settings.exclusive:
        options.append("--exclusive")
    options += settings.extra_sbatch
    return options


def task_environment(
    job: Job, ctx: RunContext, settings: SlurmSettings, data_dir: str
) -> dict[str, str]:
    """What the benchmark process sees; paths are inside the container for container runtimes."""
    spec = vendors.get(job.vendor)
    # the plan numbers devices as a whole node; Slurm gives the job its own and sets these itself
    env = {k: v for k, v in job_environment(job, ctx).items() if k not in spec.visible_devices_env}
    if settings.runtime is Runtime.NONE:
        env["MBCTL_DATA"] = data_dir
        env["MBCTL_RESULTS"] = str(results_dir(ctx, job))
        env["PYTHONPATH"] = str(ctx.benchmarks_root / "benchkit")
    else:
        env["MBCTL_DATA"] = DATA_MOUNT
        env["MBCTL_RESULTS"] = RESULTS_MOUNT
    return env


def _mounts(ctx: RunContext, job: Job, data_dir: str, settings: SlurmSettings) -> list[str]:
    """SRC:DST[:ro] of the dataset cache (writable only to prepare), results, and the site's."""
    data_mode = "" if ctx.phase is Phase.PREPARE else ":ro"
    return [
        f"{data_dir}:{DATA_MOUNT}{data_mode}",
        f"{results_dir(ctx, job)}:{RESULTS_MOUNT}",
        *settings.container_mounts,
    ]


def runtime_command(
    job: Job, ctx: RunContext, settings: SlurmSettings, data_dir: str, env_names: Sequence[str]
) -> tuple[list[str], list[str]]:
    """``(srun options, command)`` that start ``job``'s script under the site's runtime."""
    script = "prepare.py" if ctx.phase is Phase.PREPARE else "main.py"
    vendor = vendors.get(job.vendor).vendor
    mounts = _mounts(ctx, job, data_dir, settings)
    match settings.runtime:
        case Runtime.NONE:
            folder = ctx.benchmarks_root / job.definition
            return [f"--chdir={folder}"], [settings.python, script, *job.argv]
        case Runtime.PYXIS:
            srun = [
                f"--container-image={pyxis_image(_image(job))}",
                f"--container-mounts={','.join(mounts)}",
                f"--container-workdir={IMAGE_WORKDIR}",
                # the user's ~/.local must not leak packages into the measured environment
                "--no-container-mount-home",
                # the images' ENTRYPOINT is `python main.py`: the command below says which script
                "--no-container-entrypoint",
            ]
            return srun, ["python", script, *job.argv]
        case Runtime.APPTAINER:
            command = [
                "apptainer",
                "exec",
                *APPTAINER_DEVICE_FLAGS[vendor],
                "--no-home",
                *(f"--bind={m}" for m in mounts),
                f"--pwd={IMAGE_WORKDIR}",
                *settings.apptainer_args,
                f"docker://{_image(job)}",
                "python",
                script,
                *job.argv,
            ]
            return [], command
        case Runtime.PODMAN:
            command = [
                "podman",
                "run",
                "--rm",
                # a real init as PID 1: signals reach the benchmark, DataLoader zombies are reaped
                "--init",
                # the node's own network: torchrun's store and NCCL/Gloo reach the other nodes
                "--network=host",
                *PODMAN_DEVICE_FLAGS[vendor],
                *(f"--volume={m}" for m in mounts),
                f"--workdir={IMAGE_WORKDIR}",
                *(f"--env={name}" for name in env_names),
                # the images' ENTRYPOINT is `python main.py`: the script is chosen here instead
                "--entrypoint=python",
                *settings.podman_args,
                _image(job),
                script,
                *job.argv,
            ]
            return [], command
    raise AssertionError(settings.runtime)  # pragma: no cover - the match is exhaustive


def _image(job: Job) -> str:
    if not job.image:
        raise ConfigError(
            f"benchmark {job.bench} has no image for vendor {job.vendor}",
            hint="pass --lock images.lock.yaml or --image BENCH=REF, or use runtime: none",
        )
    return job.image


def batch_script(
    job: Job, ctx: RunContext, settings: SlurmSettings, *, output: str, data_dir: Path | str
) -> str:
    """The sbatch script of ``job``: readable, editable, and exactly what the backend submits."""
    data = str(data_dir)
    env = task_environment(job, ctx, settings, data)
    multi = job.nodes > 1
    names = [*env, *SLURM_DEVICE_ENV]
    if multi:
        names += ["MBCTL_NNODES", "MBCTL_NODE_RANK", "MBCTL_MASTER_ADDR", "MBCTL_MASTER_PORT"]
    srun_opts, command = runtime_command(job, ctx, settings, data, names)
    name = job_name(ctx.run_id, job.id)
    lines = [
        "#!/bin/bash",
        f"# mbctl {__version__}: job {job.id} of benchmark {job.bench} ({job.vendor}, "
        f"runtime {settings.runtime.value}, phase {ctx.phase.value}, run {ctx.run_id})",
        f"# submit by hand with: sbatch {job.id}.sbatch",
        *(f"#SBATCH {o}" for o in sbatch_options(job, settings, name=name, output=output)),
        "set -euo pipefail",
        "",
        *(f"export {k}={shlex.quote(v)}" for k, v in env.items()),
    ]
    lines.append(f"mkdir -p {shlex.quote(str(results_dir(ctx, job)))}")
    if ctx.phase is Phase.PREPARE:
        lines.append(f"mkdir -p {shlex.quote(data)}")
    srun = ["srun", f"--nodes={job.nodes}", f"--ntasks={job.nodes}", "--ntasks-per-node=1"]
    if multi:
        # torchrun's static rendezvous: the first node of the allocation hosts the store
        lines += [
            f"export MBCTL_NNODES={job.nodes}",
            'export MBCTL_MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
            f"export MBCTL_MASTER_PORT={settings.master_port}",
        ]
        # each task learns its node rank where it runs (inside the container for Pyxis)
        command = [
            "sh",
            "-c",
            'export MBCTL_NODE_RANK="$SLURM_NODEID"; exec "$@"',
            "mbctl-task",
            *command,
        ]
    lines += ["", _wrap(srun, srun_opts, command)]
    return "\n".join(lines) + "\n"


def _wrap(srun: Sequence[str], options: Sequence[str], command: Sequence[str]) -> str:
    """The launch line, one option per line, so a reader can see and edit each."""
    lines = ["exec " + " ".join(shlex.quote(a) for a in srun)]
    lines += ["  " + shlex.quote(o) for o in options]
    current: list[str] = []
    previous = ""
    for word in command:
        # a new line before each option, and after a runtime's --opt=value (the image follows)
        option = word.startswith("-") and previous != "sh"
        if current and (option or (previous.startswith("--") and "=" in previous)):
            lines.append("  " + " ".join(current))
            current = []
        current.append(shlex.quote(word))
        previous = word
    lines.append("  " + " ".join(current))
    return " \\\n".join(lines)
