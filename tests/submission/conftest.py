"""Fixtures of the submission tests: a real run of the mini suite (local backend, CPU), bundles, keys."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from bundles import MATMUL_IMAGE, fixed_rate_root, record, set_exit_images, write_lock

from orchestrator import submission
from orchestrator.backends.base import BACKENDS


@pytest.fixture(scope="session")
def recorded_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mini suite run for real once per session (local backend, CPU)."""
    return record(tmp_path_factory.mktemp("recorded"))


@pytest.fixture
def container_run(recorded_run: Path, tmp_path: Path) -> Path:
    """A copy of the recorded run whose jobs say they ran the locked matmul image."""
    run = tmp_path / "runs" / recorded_run.name
    shutil.copytree(recorded_run, run)
    set_exit_images(run, MATMUL_IMAGE)
    return run


@pytest.fixture
def lock_file(tmp_path: Path) -> Path:
    return write_lock(tmp_path / "images.lock.yaml")


@pytest.fixture
def bundle(container_run: Path, lock_file: Path, tmp_path: Path) -> Path:
    path = tmp_path / "submission.tar.gz"
    submission.create(container_run, path, lock=lock_file)
    return path


@pytest.fixture(scope="session")
def ssh_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A vendor's ed25519 key and a buyer's allowed_signers file trusting it as vendor@example."""
    root = tmp_path_factory.mktemp("keys")
    key = root / "vendor_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vendor@example", "-f", str(key)],
        check=True,
    )
    kind, body = (root / "vendor_ed25519.pub").read_text().split()[:2]
    allowed = root / "allowed_signers"
    allowed.write_text(f'vendor@example namespaces="{submission.NAMESPACE}" {kind} {body}\n')
    return key, allowed


@pytest.fixture
def fixed_rate_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The mini suite recorded on the fixed-rate matmul, as a container run of the locked image;
    the test keeps that benchmarks root, and the ``recording`` backend, for its re-runs."""
    monkeypatch.setenv("MBCTL_BENCHMARKS", str(fixed_rate_root(tmp_path / "benchmarks")))
    monkeypatch.setitem(BACKENDS, "recording", "bundles:RecordingBackend")
    run = record(tmp_path / "recorded")
    set_exit_images(run, MATMUL_IMAGE)
    return run
