"""Docker-layer fixtures: engine client, local registries, the test base image, a wheelhouse, built images.

Each is made by a script of tests/infra (which `make` and CI call as well), idempotent and cached
under .cache/ across sessions, so a warm run only checks that things exist. Outside CI a fixture
that cannot be made skips its tests with the reason; in CI ($CI set) it fails them instead.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from imagesupport import NAMES, ROOT, AuthRegistry, CpuBuild, cpu_options

from orchestrator import images, vendors
from orchestrator.vendors import Vendor

INFRA = ROOT / "tests" / "infra"
CACHE = Path(os.environ.get("MBCTL_CACHE", ROOT / ".cache"))
BASE_IMAGE = os.environ.get("MBCTL_TEST_BASE_IMAGE", "mbctl-test/python-base:bookworm")


def unavailable(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)


def script(name: str, *args: str, env: dict[str, str] | None = None, timeout: int = 600) -> None:
    try:
        done = subprocess.run(
            [str(INFRA / name), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        unavailable(f"tests/infra/{name}: {exc}")
        return
    if done.returncode != 0:
        unavailable(f"tests/infra/{name} {' '.join(args)} failed: {done.stderr.strip()[-800:]}")


@pytest.fixture(scope="session")
def docker_client() -> Any:
    return images.engine()


def free_port() -> str:
    """A loopback port nothing listens on: each test session gets registries of its own."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


@pytest.fixture(scope="session")
def registry() -> Iterator[str]:
    """A registry without auth on 127.0.0.1 ($MBCTL_TEST_REGISTRY_PORT, else a free port)."""
    port = os.environ.get("MBCTL_TEST_REGISTRY_PORT") or free_port()
    script("registry-up.sh", port)
    yield f"127.0.0.1:{port}"
    script("registry-up.sh", "--stop", port)


@pytest.fixture(scope="session")
def auth_registry() -> Iterator[AuthRegistry]:
    """A registry with basic auth and fresh credentials ($MBCTL_TEST_AUTH_REGISTRY_PORT, else a free port)."""
    port = os.environ.get("MBCTL_TEST_AUTH_REGISTRY_PORT") or free_port()
    user, password = "mbctl-test", secrets.token_urlsafe(18)
    script(
        "registry-up.sh",
        "--auth",
        port,
        env={"MBCTL_REGISTRY_USER": user, "MBCTL_REGISTRY_PASSWORD": password},
    )
    yield AuthRegistry(f"127.0.0.1:{port}", user, password)
    script("registry-up.sh", "--stop", port)


@pytest.fixture(scope="session")
def base_image(docker_client: Any) -> str:
    """The debootstrapped Python base image, built (or re-imported from the cache) when missing."""
    script("base-image.sh", BASE_IMAGE, timeout=900)
    return BASE_IMAGE


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    """torch 2.13.0 (CPU) and numpy for CPython 3.11 (the base image's) with their dependencies.

    The torch wheel comes from $MBCTL_TEST_WHEELS (default /opt/wheels) when it holds one, else
    from PyTorch's CPU index; the rest from the configured index. Kept under .cache/ afterwards."""
    folder = CACHE / "test-wheelhouse"
    if list(folder.glob("torch-2.13.0*.whl")) and list(folder.glob("numpy-*.whl")):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    links = Path(os.environ.get("MBCTL_TEST_WHEELS", "/opt/wheels"))
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(folder),
        "--only-binary=:all:", "--implementation", "cp", "--python-version", "3.11",
        "--platform", "manylinux_2_28_x86_64",
        "--extra-index-url", str(vendors.get(Vendor.CPU).torch_index),
        *(["--find-links", str(links)] if links.is_dir() else []),
        "torch==2.13.0", "numpy",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        unavailable(f"cannot make the test wheelhouse: {done.stderr.strip()[-800:]}")
    return folder


@pytest.fixture(scope="session")
def cpu_build(docker_client: Any, base_image: str, wheelhouse: Path) -> CpuBuild:
    """The CPU images of NAMES, built once per session (a no-op when their tags exist)."""
    options = cpu_options(base_image, wheelhouse)
    base = images.resolve_base(docker_client, base_image)
    base_spec, specs = images.plan_images(
        list(NAMES),
        Vendor.CPU,
        options,
        base,
        root=ROOT / "benchmarks",
        source=images.source_info(ROOT),
    )
    started = time.monotonic()
    # no network at all: the wheelhouse must be enough (the air-gapped case)
    built = images.build_images(docker_client, base_spec, specs, network="none")
    return CpuBuild(options, base, base_spec, specs, built, time.monotonic() - started)
