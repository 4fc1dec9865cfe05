"""Every ``mbctl …`` command of README.md and docs/*.md runs as pasted, in a sandbox with run
folders and a lock; where hardware or a registry is needed, ``HOW`` says what runs instead and why.

A doc that adds a command adds nothing here when it runs as pasted in the sandbox; otherwise one
line in ``HOW``. A synopsis (``mbctl report RUN…``, placeholders in capitals) runs its
subcommand's ``--help``.
"""

from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
from typer.testing import CliRunner

from orchestrator import config, images
from orchestrator.cli.main import app
from orchestrator.plan import Job, PlanKind
from orchestrator.results import RunDir
from orchestrator.vendors import Vendor
from tests.conftest import docker_available
from tests.unit.readme_commands import ROOT, Command, extract


@dataclass(frozen=True)
class How:
    kind: Literal["run", "help", "skip", "docker"]
    """``docker``: runs as pasted where an engine answers (always in CI), else skipped."""
    reason: str
    extra: tuple[str, ...] = ()
    """Arguments appended to the pasted command (``--dry-run`` where it would launch work)."""
    code: int = 0


DRY = How("run", "launches work on hardware or an engine: planned with --dry-run", ("--dry-run",))
NAME = How("help", "a command named in prose, not an invocation")
ENGINE = "needs a Docker engine with built images"
REGISTRY = "needs a registry holding the built images"
CLUSTER = "needs a Kubernetes cluster"
BASES = "needs a Docker engine holding the vendor's base image"

HOW: dict[str, How] = {
    "mbctl build": NAME,
    "mbctl build --vendor rocm --suite standard": DRY,
    "mbctl build --vendor cpu --base-image cpu=mirror.local/python:3.11-slim --ca-bundle "
    "/etc/ssl/certs/ca-certificates.crt --wheelhouse ./wheels --network none": DRY,
    "mbctl build --vendor cuda": DRY,
    "mbctl build --vendor cpu": DRY,
    "mbctl build --vendor cuda --suite standard": DRY,
    "mbctl build --vendor rocm --suite standard --select resnet50,bert-tf32-fp16": DRY,
    "mbctl build --vendor cpu --wheelhouse wheels --network none": DRY,
    "mbctl build --suite standard --vendor cuda": DRY,
    "mbctl push": NAME,
    "mbctl push --vendor rocm --registry reg.example.org/lab": How("skip", REGISTRY),
    "mbctl push --vendor rocm --registry registry.example.org/lab": How("skip", REGISTRY),
    "mbctl push --vendor cuda --registry registry.example.org/lab": How("skip", REGISTRY),
    "mbctl push --registry registry.example.com --lock images.lock.yaml": How("skip", REGISTRY),
    "mbctl lock verify images.lock.yaml": How("skip", REGISTRY),
    "mbctl lock verify": How("skip", REGISTRY),
    "mbctl prepare": NAME,
    "mbctl prepare --suite standard --data /mnt/cache": DRY,
    "mbctl prepare --suite standard --profile tiny --backend local "
    "--python .venv-bench/bin/python": DRY,
    "mbctl prepare --suite standard --profile tiny --python .venv-bench/bin/python": DRY,
    "mbctl run": NAME,
    "mbctl run --vendor rocm --lock images.lock.yaml": DRY,
    "mbctl run --resume runs/20261123-104501-smoke-3f2a": DRY,
    "mbctl run --suite standard --profile tiny --backend local "
    "--python .venv-bench/bin/python": DRY,
    "mbctl run --lock": NAME,
    "mbctl run --backend docker": NAME,
    "mbctl run --backend kubernetes": NAME,
    "mbctl run --backend kubernetes --vendor cuda --devices 8 --namespace bench "
    "--lock images.lock.yaml": How("skip", "needs a Kubernetes cluster with GPUs"),
    "mbctl run --backend docker --vendor cuda --lock images.lock.yaml": How("skip", ENGINE),
    "mbctl run --backend docker --vendor cpu --image "
    "fp32=localhost/mbctl/matmul:cpu-55c3a1c284fe": How("skip", ENGINE),
    "mbctl report": NAME,
    "mbctl report runs/x --reference references/h100-milabench-report.yaml": How(
        "run", "exits 1: the sandbox's CPU run is slower than the H100", code=1
    ),
    "mbctl report latest --fail-under 2000 --junit report.xml": How(
        "run", "exits 1: the sandbox's run scores under 2000, so the gate fails", code=1
    ),
    "mbctl compare": NAME,
    "mbctl clean": NAME,
    "mbctl clean --dry-run": How("docker", "lists the mbctl containers of the Docker engine"),
    "mbctl clean --all": How(
        "skip", "removes every mbctl container of the engine, other tests' running ones too"
    ),
    "mbctl render compose": NAME,
    "mbctl render k8s": NAME,
    "mbctl submit runs/x --lock images.lock.yaml -o acme.tar.gz --sign ~/.ssh/id_ed25519": How(
        "skip", "needs an ssh signing key and a run of locked images"
    ),
    "mbctl submit runs/20261123-104501-standard-3f2a --lock images.lock.yaml --output "
    "acme-h100.tar.gz --sign ~/.ssh/id_ed25519": How(
        "skip", "needs an ssh signing key and a run of locked images"
    ),
    "mbctl verify": NAME,
    "mbctl verify acme.tar.gz --lock images.lock.yaml": How("skip", "needs a bundle (submit)"),
    "mbctl verify acme-h100.tar.gz --allowed-signers allowed_signers --identity "
    "sales@acme.example --lock our-images.lock.yaml --reference "
    "references/h100-milabench-report.yaml": How("skip", "needs a signed bundle (submit)"),
    "mbctl rerun": NAME,
    "mbctl rerun acme.tar.gz --allowed-signers signers --identity acme": How(
        "skip", ENGINE + " and a signed bundle"
    ),
    "mbctl rerun acme.tar.gz (loaner)": NAME,
    "mbctl rerun acme-h100.tar.gz --allowed-signers buyers_trust --identity acme@vendor "
    "--backend docker --tolerance 0.10": How("skip", ENGINE + " and a signed bundle"),
    "mbctl run --suite that.yaml --backend local --python /path/to/venv/bin/python": How(
        "help", "a recipe step: the suite file and the venv are the reader's"
    ),
    "mbctl clean --backend kubernetes": How("skip", CLUSTER),
    "mbctl lock deps --vendor rocm --suite standard": How("skip", BASES),
    "mbctl lock deps --vendor cpu --wheelhouse wheels": How("skip", BASES),
    "mbctl lock verify --rebuild --vendor cpu --select fp32": How("skip", BASES),
    "mbctl lock deps": NAME,
    "mbctl lock verify --rebuild --vendor cpu --select fp32 --wheelhouse .cache/test-wheelhouse": How(
        "skip", BASES + " (minutes of --no-cache builds; tests/docker/test_vendor_bases.py does it)"
    ),
    "mbctl prepare --backend kubernetes": NAME,
    "mbctl run --backend kubernetes --nodes 2": How("skip", CLUSTER),
    "mbctl run --suite standard --backend kubernetes --nodes 2": How("skip", CLUSTER),
    "mbctl run --suite standard --profile tiny --backend local --nodes 2 "
    "--python .venv-bench/bin/python": DRY,
    "mbctl run --backend slurm": NAME,
    "mbctl run --resume": NAME,
    "mbctl render slurm": NAME,
    "mbctl render slurm --nodes 2": NAME,
    "mbctl run --backend slurm --vendor cuda --devices 8 --slurm-config slurm.yaml "
    "--lock images.lock.yaml": DRY,
    "mbctl prepare --backend slurm --vendor cuda --devices 8 --slurm-config slurm.yaml "
    "--lock images.lock.yaml": DRY,
}

RUNS = ("x", "a100", "h100", "20261123-104501-smoke-3f2a", "20261123-104501-standard-3f2a")


def _run_folder(root: Path, run_id: str, scale: float) -> None:
    """A small scored run of the smoke suite (matmul fp32 and convnet)."""
    meta = {
        "suite": {
            "name": "smoke",
            "file": "smoke",
            "profile": None,
            "benchmarks": [
                {"name": "fp32", "weight": 1.0, "enabled": True},
                {"name": "convnet", "weight": 1.0, "enabled": True},
            ],
        },
        "vendor": "cpu",
        "plan": {"skipped": []},
    }
    run = RunDir.create(root, meta, run_id=run_id)
    for bench in ("fp32", "convnet"):
        job = Job(
            id=f"{bench}.0",
            bench=bench,
            tag="0",
            definition=bench,
            vendor="cpu",
            plan=PlanKind.NJOBS,
            weight=1.0,
            max_duration=60,
            unit="items/s",
        )
        rec = run.recorder(job)
        for i in range(6):
            rec.event({"event": "rate", "t": 10.0 + i, "value": scale * (10 + i), "task": "train"})
        rec.finish(0, "ok")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("readme")
    for i, run_id in enumerate(RUNS):
        _run_folder(root / "runs", run_id, 1.0 + i)
    (root / "references").symlink_to(ROOT / "references")
    (root / "wheels").mkdir()
    (root / "site-k8s.yaml").write_text("{}\n")
    (root / "slurm.yaml").write_text((ROOT / "docs" / "slurm.example.yaml").read_text())
    images.write_lock(_lock(), root / "images.lock.yaml")
    return root


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _lock() -> images.Lock:
    """A lock naming an image for every benchmark folder of the shipped suites and vendor."""
    base = images.LockBase(name="vendor/base:1", digest=_digest("base"))
    folders = {
        b.definition
        for name in ("smoke", "standard")
        for b in config.load_selected(name).benchmarks
    }
    return images.Lock(
        images={
            folder: {
                vendor: images.LockEntry(
                    ref=f"registry.example.org/lab/mbctl/{folder}@{_digest(folder + vendor)}",
                    image_id=_digest(f"{folder} {vendor} config"),
                    base=base,
                )
                for vendor in (Vendor.CPU, Vendor.CUDA, Vendor.ROCM)
            }
            for folder in folders
        }
    )


COMMANDS = extract()


def test_commands_are_found() -> None:
    texts = {c.text for c in COMMANDS}
    assert "mbctl run --vendor cuda --devices 8 --dry-run --format json" in texts
    assert len(COMMANDS) > 40


def test_every_listed_command_is_still_in_the_docs() -> None:
    stale = sorted(set(HOW) - {c.text for c in COMMANDS})
    assert not stale, f"HOW lists commands no doc has any more: {stale}"


def _how(command: Command) -> How:
    if command.text in HOW:
        return HOW[command.text]
    if command.synopsis:
        return How("help", "a synopsis with placeholders")
    return How("run", "runs as pasted")


@pytest.mark.parametrize("command", COMMANDS, ids=[c.text[:80] for c in COMMANDS])
def test_command_runs(command: Command, sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    how = _how(command)
    if how.kind == "skip":
        pytest.skip(f"{command.where}: {how.reason}")
    if how.kind == "docker" and not os.environ.get("CI") and (why := docker_available()):
        pytest.skip(f"{command.where}: {why}")
    monkeypatch.chdir(sandbox)
    monkeypatch.setenv("HOME", str(sandbox))
    monkeypatch.setenv("MBCTL_DATA", str(sandbox / "data"))
    if how.kind == "help":
        args = [*command.subcommand, "--help"]
    else:  # the shell would expand `runs/*`
        args = [w for a in command.argv for w in (sorted(glob.glob(a)) if "*" in a else [a])]
        args += how.extra
    result = CliRunner().invoke(app, args)
    assert result.exit_code == how.code, (
        f"{command.where}: `mbctl {' '.join(args)}` ({how.reason}) exited {result.exit_code}:\n"
        f"{result.output}"
    )
