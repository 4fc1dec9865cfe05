"""What the Docker-layer fixtures and tests share: the images under test and the fixtures' values."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator import images
from orchestrator.vendors import Vendor

ROOT = Path(__file__).resolve().parents[2]
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
#: The images the Docker tests build: the torch benchmarks of the smoke suite. jaxmlp is left out
#: so that the wheelhouse holds torch alone (jax adds its own ~100 MB for no extra coverage).
NAMES = ("matmul", "convnet")


@dataclass(frozen=True)
class AuthRegistry:
    address: str
    user: str
    password: str


@dataclass(frozen=True)
class CpuBuild:
    options: images.BuildOptions
    base: images.BaseRef
    base_spec: images.ImageSpec
    specs: list[images.ImageSpec]
    built: list[images.Built]
    seconds: float


def cpu_options(base_image: str, wheelhouse: Path) -> images.BuildOptions:
    """CPU images on the local base image, offline from the wheelhouse, trusting the host's CAs."""
    return images.BuildOptions(
        base_images={Vendor.CPU: base_image},
        ca_bundle=HOST_CA if HOST_CA.is_file() else None,
        wheelhouse=wheelhouse,
    )
