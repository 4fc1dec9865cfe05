"""What a build starts from: names, options, the vendor base image reference, templates and requirements."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from orchestrator import vendors
from orchestrator.config import benchmarks_root
from orchestrator.errors import ConfigError
from orchestrator.vendors import Vendor

if TYPE_CHECKING:
    from orchestrator.config import Suite

#: Registry part of tags built without ``--registry``: podman's name for "only in this engine".
DEFAULT_REGISTRY = "localhost"
NAMESPACE = "mbctl"
BASE_NAME = "base"
LOCK_FILE = Path("images.lock.yaml")
BENCHMARK_TEMPLATE = "benchmark.Dockerfile.j2"
HASH_LENGTH = 12
LOG_TAIL = 20
OCI = "org.opencontainers.image."
LABEL_BENCHMARK = "mbctl.benchmark"
LABEL_VENDOR = "mbctl.vendor"
#: Every benchmark image lists its pip-installed files here (``sha256  /path``), for rebuild checks.
MANIFEST = "/opt/mbctl/installed.sha256"
#: The same for what the vendor's mbctl base image added (its image packages).
BASE_MANIFEST = "/opt/mbctl/installed-base.sha256"
#: Set when ``base.digest`` is the local image ID of an imported or locally built base image.
LABEL_BASE_LOCAL = "mbctl.base.local"

#: The OCI labels mbctl sets; an image also inherits its base's (Ubuntu's version, NGC's ...).
_OWN_LABELS = frozenset(
    OCI + key
    for key in (
        "title",
        "version",
        "created",
        "vendor",
        "source",
        "revision",
        "base.name",
        "base.digest",
    )
)
_DIGEST = r"sha256:[0-9a-f]{64}"
_NAME = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_SKIPPED_DIRS = frozenset({"__pycache__", "build", "dist"})
_RUN_FAILED = re.compile(r"^The command .* returned a non-zero code: (\d+)$", re.DOTALL)
#: Builder lines about its own bookkeeping, left out of a failure's tail.
_ENGINE_CHATTER = (" ---> ", "Removing intermediate container")

Log = Callable[[str, str], None]
"""Receives ``(image name, one line of engine output)`` while a build, push or pull goes on."""

ContextSource = Path | bytes
"""A build context entry: a file or folder on disk, or generated content."""


def _quiet(name: str, line: str) -> None:
    """The default Log: engine output is dropped (failures still carry their last lines)."""


# --- inputs --------------------------------------------------------------------------------


def templates_root() -> Path:
    """The folder of Dockerfile templates: $MBCTL_IMAGES, ./images, or the source tree's."""
    env = os.environ.get("MBCTL_IMAGES")
    if env:
        return Path(env).resolve()
    here = Path.cwd() / "images"
    if (here / BENCHMARK_TEMPLATE).is_file():
        return here.resolve()
    # orchestrator/images/inputs.py → the source tree's images/ folder
    return (Path(__file__).resolve().parents[2] / "images").resolve()


def parse_pairs(items: Iterable[str], option: str) -> dict[str, str]:
    """The ``KEY=VALUE`` words of a repeatable option as a mapping (a later word wins)."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{option} {item!r}: expected KEY=VALUE")
        pairs[key.strip()] = value
    return pairs


def parse_base_images(items: Iterable[str]) -> dict[Vendor, str]:
    """``--base-image VENDOR=REF`` words; an unknown vendor or an empty reference is an error."""
    chosen: dict[Vendor, str] = {}
    for key, ref in parse_pairs(items, "--base-image").items():
        if not ref.strip():
            raise ConfigError(f"--base-image {key}=: the image reference is empty")
        chosen[vendors.get(key).vendor] = ref.strip()
    return chosen


def base_image_name(
    vendor: str | Vendor,
    overrides: Mapping[Vendor, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """The vendor image to build on: ``--base-image``, else $MBCTL_BASE_IMAGE_<VENDOR>, else the table."""
    spec = vendors.get(vendor)
    environ = os.environ if environ is None else environ
    return (
        (overrides or {}).get(spec.vendor)
        or environ.get(f"MBCTL_BASE_IMAGE_{spec.vendor.value.upper()}")
        or spec.base_image
    )


@dataclass(frozen=True)
class BuildOptions:
    """What a site may change about the images; every field shapes the tags."""

    registry: str = DEFAULT_REGISTRY
    base_images: Mapping[Vendor, str] = field(default_factory=dict)
    ca_bundle: Path | None = None
    wheelhouse: Path | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)
    platform: str | None = None

    def check(self) -> None:
        """Fail early, naming the option, when a given file or folder is missing."""
        if self.ca_bundle is not None and not self.ca_bundle.is_file():
            raise ConfigError(f"--ca-bundle {self.ca_bundle}: no such file")
        if self.wheelhouse is not None and not self.wheelhouse.is_dir():
            raise ConfigError(f"--wheelhouse {self.wheelhouse}: no such folder")
        if not self.registry or self.registry != self.registry.strip("/ "):
            raise ConfigError(f"--registry {self.registry!r}: expected HOST[:PORT][/PATH]")


@dataclass(frozen=True)
class BaseRef:
    """The vendor image a base is built on, with its digest once resolved against an engine."""

    name: str
    digest: str | None = None
    #: ``digest`` is the local image ID: the image was imported or built here and has no repo digest.
    local: bool = False

    @property
    def pinned(self) -> str:
        """What ``FROM`` names: ``name@digest`` when a registry digest is known, so a moved tag
        cannot change what is built under the same mbctl tag."""
        if self.digest is None or self.local or "@" in self.name:
            return self.name
        return f"{self.name}@{self.digest}"


def base_ref_of(name: str, image_id: str, repo_digests: Sequence[str]) -> BaseRef:
    """Pin ``name`` by the repo digest of its repository, else by the image ID (marked local)."""
    if "@" in name:
        return BaseRef(name=name, digest=name.partition("@")[2])
    repository = _repository(name)
    digests = [d.partition("@") for d in repo_digests]
    for repo, _, digest in digests:
        if _repository(repo) == repository:
            return BaseRef(name=name, digest=digest)
    if digests:
        return BaseRef(name=name, digest=digests[0][2])
    return BaseRef(name=name, digest=image_id, local=True)


def _repository(ref: str) -> str:
    """``ref`` without tag or digest, with Docker Hub's implicit prefixes removed."""
    ref = ref.partition("@")[0]
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        ref = ref[: len(ref) - len(last)] + last.partition(":")[0]
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/"):
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    return ref


def deps_lock_file(bench_dir: Path, vendor: str | Vendor) -> Path:
    """Where ``mbctl lock deps`` writes a benchmark's pinned, hashed requirements for ``vendor``."""
    return bench_dir / f"requirements.{vendors.get(vendor).vendor.value}.lock"


def requirements_file(bench_dir: Path, vendor: str | Vendor) -> Path | None:
    """``requirements.<vendor>.txt`` when the benchmark has one, else ``requirements.txt``, else None
    (the ranges a dependency lock is resolved from)."""
    spec = vendors.get(vendor)
    for candidate in (f"requirements.{spec.vendor.value}.txt", "requirements.txt"):
        path = bench_dir / candidate
        if path.is_file():
            return path
    return None


def bench_framework(folder: Path) -> str | None:
    """The ``framework`` of a benchmark folder's bench.yaml (torch, jax, ...), None without one."""
    path = folder / "bench.yaml"
    if not path.is_file():
        return None
    data = yaml.safe_load(path.read_text()) or {}
    value = data.get("framework") if isinstance(data, dict) else None
    return str(value) if value else None


def unsupported(suite: Suite, vendor: str | Vendor, root: Path | None = None) -> dict[str, str]:
    """Benchmark folder → why it has no image on ``vendor`` (JAX where the vendor has no plugin)."""
    spec = vendors.get(vendor)
    root = root or benchmarks_root()
    reasons: dict[str, str] = {}
    for bench in suite.benchmarks:
        if spec.jax_unsupported and bench_framework(root / bench.definition) == "jax":
            reasons[bench.definition] = f"JAX on {spec.vendor.value}: {spec.jax_unsupported}"
    return reasons


def image_names(suite: Suite, vendor: str | Vendor, root: Path | None = None) -> list[str]:
    """The benchmark folders whose images ``suite`` needs on ``vendor``, once each, in suite order."""
    spec = vendors.get(vendor)
    skipped = unsupported(suite, spec.vendor, root)
    names: list[str] = []
    for bench in suite.benchmarks:
        supported = bench.vendors is None or spec.vendor in bench.vendors
        # A planned benchmark (not built yet) has no code to put in an image.
        ready = bench.status == "ready"
        if (
            supported
            and ready
            and bench.definition not in names
            and bench.definition not in skipped
        ):
            names.append(bench.definition)
    return names
