"""Benchmark images: Dockerfiles from images/, content-hash tags, OCI labels, build/push/pull, the lock."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator import vendors
from orchestrator.config import benchmarks_root, load_model
from orchestrator.errors import ConfigError, ImageError
from orchestrator.vendors import Vendor

if TYPE_CHECKING:
    import jinja2

    from orchestrator.config import Benchmark, Suite

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
    return (Path(__file__).resolve().parent.parent / "images").resolve()


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


def requirements_file(bench_dir: Path, vendor: str | Vendor) -> Path | None:
    """``requirements.<vendor>.txt`` when the benchmark has one, else ``requirements.txt``, else None."""
    spec = vendors.get(vendor)
    for candidate in (f"requirements.{spec.vendor.value}.txt", "requirements.txt"):
        path = bench_dir / candidate
        if path.is_file():
            return path
    return None


def image_names(suite: Suite, vendor: str | Vendor) -> list[str]:
    """The benchmark folders whose images ``suite`` needs on ``vendor``, once each, in suite order."""
    spec = vendors.get(vendor)
    names: list[str] = []
    for bench in suite.benchmarks:
        supported = bench.vendors is None or spec.vendor in bench.vendors
        # A planned benchmark (not built yet) has no code to put in an image.
        if supported and bench.status == "ready" and bench.definition not in names:
            names.append(bench.definition)
    return names


# --- rendering (pure) ----------------------------------------------------------------------


@lru_cache(maxsize=4)
def _environment(root: Path) -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(root),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render(template: str, *, root: Path | None = None, **values: Any) -> str:
    """Render one template of ``images/``; a missing template or variable is an ImageError."""
    import jinja2

    root = root or templates_root()
    try:
        return _environment(root).get_template(template).render(template=template, **values)
    except jinja2.TemplateNotFound as exc:
        raise ImageError(
            f"no template {exc.name} in {root}", hint="set MBCTL_IMAGES to the images/ folder"
        ) from None
    except jinja2.UndefinedError as exc:
        raise ImageError(f"template {template}: {exc.message}") from None


def render_base(
    vendor: str | Vendor,
    base: BaseRef,
    *,
    ca_bundle: bool = False,
    wheelhouse: bool = False,
    build_args: Iterable[str] = (),
    root: Path | None = None,
) -> str:
    """The Dockerfile of the vendor's shared base image (``images/base-<vendor>.Dockerfile.j2``)."""
    spec = vendors.get(vendor)
    return render(
        f"base-{spec.vendor.value}.Dockerfile.j2",
        root=root,
        vendor=spec.vendor.value,
        vendor_title=spec.title,
        base_image=base.pinned,
        python="python3",
        ca_bundle=ca_bundle,
        wheelhouse=wheelhouse,
        packages=list(spec.image_packages),
        torch_index=spec.torch_index,
        build_args=sorted(build_args),
    )


def render_benchmark(
    name: str,
    vendor: str | Vendor,
    base_image: str,
    *,
    requirements: bool = True,
    wheelhouse: bool = False,
    build_args: Iterable[str] = (),
    root: Path | None = None,
) -> str:
    """The Dockerfile of one benchmark's image, ``FROM`` the vendor's mbctl base image."""
    spec = vendors.get(vendor)
    return render(
        BENCHMARK_TEMPLATE,
        root=root,
        name=name,
        vendor=spec.vendor.value,
        vendor_title=spec.title,
        base_image=base_image,
        requirements=requirements,
        wheelhouse=wheelhouse,
        torch_index=spec.torch_index,
        build_args=sorted(build_args),
    )


# --- build context and content hash (pure but for reading files) ---------------------------


def _skipped(path: Path) -> bool:
    name = path.name
    return (
        name.startswith(".")
        or name in _SKIPPED_DIRS
        or name.endswith((".egg-info", ".pyc", ".pyo"))
    )


def _entries(context: Mapping[str, ContextSource]) -> list[tuple[str, ContextSource | None, int]]:
    """``(arcname, source, mode)`` of every entry, sorted; folders have source None.

    Caches and build leftovers (``__pycache__``, ``*.egg-info``, ``build/``, hidden files) are left
    out so that a developer's checkout and a clean one give the same context and the same tag."""
    items: list[tuple[str, ContextSource | None, int]] = []
    for arcname, source in context.items():
        if isinstance(source, bytes):
            items.append((arcname, source, 0o644))
        elif source.is_dir():
            items.append((arcname, None, 0o755))
            stack = [source]
            while stack:
                folder = stack.pop()
                for child in folder.iterdir():
                    if _skipped(child):
                        continue
                    rel = f"{arcname}/{child.relative_to(source).as_posix()}"
                    if child.is_dir():
                        items.append((rel, None, 0o755))
                        stack.append(child)
                    elif child.is_file():
                        items.append((rel, child, 0o755 if child.stat().st_mode & 0o111 else 0o644))
        elif source.is_file():
            items.append((arcname, source, 0o644))
        else:
            raise ImageError(f"build context entry {arcname}: {source} does not exist")
    return sorted(items, key=lambda item: item[0])


@lru_cache(maxsize=4096)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    # size and mtime are part of the key so that an edited file is hashed again
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _digest_of(source: ContextSource) -> str:
    if isinstance(source, bytes):
        return hashlib.sha256(source).hexdigest()
    stat = source.stat()
    return _file_digest(str(source), stat.st_size, stat.st_mtime_ns)


def content_hash(
    context: Mapping[str, ContextSource],
    *,
    build_args: Mapping[str, str] | None = None,
    platform: str | None = None,
    base_digest: str | None = None,
) -> str:
    """SHA-256 over every file of the context (Dockerfile included) and the options that shape the
    image: same inputs, same hash, same tag, on any machine."""
    digest = hashlib.sha256()
    for arcname, source, mode in _entries(context):
        line = f"{arcname}\0{mode:o}\0{'-' if source is None else _digest_of(source)}\n"
        digest.update(line.encode())
    options = {
        "build_args": dict(sorted((build_args or {}).items())),
        "platform": platform,
        "base": base_digest,
    }
    digest.update(json.dumps(options, sort_keys=True).encode())
    return digest.hexdigest()


def write_context(context: Mapping[str, ContextSource], fileobj: IO[bytes]) -> None:
    """The context as a tar stream with fixed owners and times, so the engine's cache keys are stable."""
    with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for arcname, source, mode in _entries(context):
            info = tarfile.TarInfo(arcname)
            info.mode, info.mtime, info.uid, info.gid = mode, 0, 0, 0
            if source is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(source, bytes):
                info.size = len(source)
                tar.addfile(info, io.BytesIO(source))
            else:
                info.size = source.stat().st_size
                with source.open("rb") as f:
                    tar.addfile(info, f)


def image_tag(registry: str, name: str, vendor: str | Vendor, digest: str) -> str:
    """``REGISTRY/mbctl/<name>:<vendor>-<hash12>``."""
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"benchmark folder {name!r} cannot name an image",
            hint="use lowercase letters, digits and . _ - (not at either end)",
        )
    return (
        f"{registry}/{NAMESPACE}/{name}:{vendors.get(vendor).vendor.value}-{digest[:HASH_LENGTH]}"
    )


# --- labels --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceInfo:
    """Where the images' sources come from, for the OCI labels."""

    revision: str | None = None
    url: str | None = None


def source_info(path: Path) -> SourceInfo:
    """The git commit and origin URL of the checkout holding ``path`` (None when not a checkout)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(path), *args],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return (done.stdout.strip() or None) if done.returncode == 0 else None

    url = git("config", "--get", "remote.origin.url")
    return SourceInfo(
        revision=git("rev-parse", "HEAD"), url=_without_credentials(url) if url else None
    )


def _without_credentials(url: str) -> str:
    # labels are readable by anyone who can pull the image: a token in the remote URL must not leak
    parts = urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return url


def build_time(environ: Mapping[str, str] | None = None) -> str:
    """RFC 3339 UTC time for ``created``; $SOURCE_DATE_EPOCH makes it reproducible."""
    environ = os.environ if environ is None else environ
    epoch = environ.get("SOURCE_DATE_EPOCH")
    when = dt.datetime.fromtimestamp(int(epoch), dt.UTC) if epoch else dt.datetime.now(dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def image_labels(
    *,
    name: str,
    vendor: str | Vendor,
    version: str,
    base: BaseRef,
    created: str,
    source: SourceInfo = SourceInfo(),
    benchmark: bool = True,
    tree_path: str | None = None,
) -> dict[str, str]:
    """OCI annotations plus mbctl's own; ``base.*`` name the vendor's image, not mbctl's base.

    ``source`` is the git remote, else ``tree_path`` (default ``benchmarks/<name>``) in the tree."""
    spec = vendors.get(vendor)
    labels = {
        f"{OCI}title": name,
        f"{OCI}version": version,
        f"{OCI}created": created,
        f"{OCI}vendor": "mbctl",
        f"{OCI}source": source.url or tree_path or f"benchmarks/{name}",
        f"{OCI}base.name": base.name,
        LABEL_VENDOR: spec.vendor.value,
    }
    if benchmark:
        labels[LABEL_BENCHMARK] = name
    if source.revision:
        labels[f"{OCI}revision"] = source.revision
    if base.digest:
        labels[f"{OCI}base.digest"] = base.digest
    if base.local:
        labels[LABEL_BASE_LOCAL] = "true"
    return labels


# --- planning: what to build, with which tags (pure) ---------------------------------------


@dataclass(frozen=True)
class ImageSpec:
    """One image to build: what ``build --dry-run`` prints and what ``build_images`` sends."""

    name: str
    vendor: Vendor
    tag: str
    dockerfile: str
    context: Mapping[str, ContextSource]
    labels: Mapping[str, str]
    base: BaseRef
    build_args: Mapping[str, str] = field(default_factory=dict)
    platform: str | None = None

    @property
    def version(self) -> str:
        return self.tag.rpartition(":")[2]


def plan_images(
    names: Sequence[str],
    vendor: str | Vendor,
    options: BuildOptions,
    base: BaseRef,
    *,
    root: Path | None = None,
    created: str | None = None,
    source: SourceInfo = SourceInfo(),
) -> tuple[ImageSpec, list[ImageSpec]]:
    """The vendor's base image and one image per benchmark folder in ``names``, tagged by content."""
    spec = vendors.get(vendor)
    root = root or benchmarks_root()
    created = created or build_time()
    build_args = dict(options.build_args)
    wheelhouse = options.wheelhouse is not None

    extra: dict[str, ContextSource] = {}
    if options.wheelhouse is not None:
        extra["wheelhouse"] = options.wheelhouse
    base_dockerfile = render_base(
        spec.vendor,
        base,
        ca_bundle=options.ca_bundle is not None,
        wheelhouse=wheelhouse,
        build_args=build_args,
    )
    base_context: dict[str, ContextSource] = {"Dockerfile": base_dockerfile.encode(), **extra}
    if options.ca_bundle is not None:
        base_context["ca-bundle.crt"] = options.ca_bundle
    base_hash = content_hash(
        base_context, build_args=build_args, platform=options.platform, base_digest=base.digest
    )
    base_tag = image_tag(options.registry, BASE_NAME, spec.vendor, base_hash)
    base_spec = ImageSpec(
        name=BASE_NAME,
        vendor=spec.vendor,
        tag=base_tag,
        dockerfile=base_dockerfile,
        context=base_context,
        labels=image_labels(
            name=f"{NAMESPACE}-{BASE_NAME}-{spec.vendor.value}",
            vendor=spec.vendor,
            version=base_tag.rpartition(":")[2],
            base=base,
            created=created,
            source=source,
            benchmark=False,
            tree_path=f"images/base-{spec.vendor.value}.Dockerfile.j2",
        ),
        base=base,
        build_args=build_args,
        platform=options.platform,
    )

    benches: list[ImageSpec] = []
    for name in names:
        folder = root / name
        if not (folder / "main.py").is_file():
            raise ConfigError(f"benchmark {name!r}: {folder}/main.py does not exist")
        requirements = requirements_file(folder, spec.vendor)
        dockerfile = render_benchmark(
            name,
            spec.vendor,
            base_tag,
            requirements=requirements is not None,
            wheelhouse=wheelhouse,
            build_args=build_args,
        )
        context: dict[str, ContextSource] = {
            "Dockerfile": dockerfile.encode(),
            "benchkit": root / "benchkit",
            "code": folder,
            **extra,
        }
        if requirements is not None:
            context["requirements.txt"] = requirements
        tag = image_tag(
            options.registry,
            name,
            spec.vendor,
            content_hash(
                context, build_args=build_args, platform=options.platform, base_digest=base.digest
            ),
        )
        benches.append(
            ImageSpec(
                name=name,
                vendor=spec.vendor,
                tag=tag,
                dockerfile=dockerfile,
                context=context,
                labels=image_labels(
                    name=name,
                    vendor=spec.vendor,
                    version=tag.rpartition(":")[2],
                    base=base,
                    created=created,
                    source=source,
                ),
                base=base,
                build_args=build_args,
                platform=options.platform,
            )
        )
    return base_spec, benches


# --- the engine (Docker SDK; imported lazily) ----------------------------------------------


def engine(timeout: int = 600) -> Any:
    """A Docker client that answered a ping; BackendUnavailable otherwise.

    The long timeout is for pushes and pulls, whose streams may pause while a large layer moves."""
    from orchestrator.backends.docker import connect

    return connect(timeout)


def _first_line(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    text = str(explanation or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _errors() -> Any:
    import docker.errors

    return docker.errors


def find_image(client: Any, ref: str) -> Any | None:
    """The local image called ``ref`` (tag, ``repo@digest`` or ID), or None."""
    errors = _errors()
    try:
        return client.images.get(ref)
    except errors.ImageNotFound:
        return None
    except errors.APIError as exc:
        raise ImageError(f"cannot inspect image {ref}: {_first_line(exc)}") from None


def pull(client: Any, ref: str, *, platform: str | None = None, log: Log = _quiet) -> Any:
    """Pull ``ref`` (``name:tag`` or ``repo@sha256:…``) with the Docker config's credentials."""
    from docker.utils import parse_repository_tag

    errors = _errors()
    repository, tag = parse_repository_tag(ref)
    try:
        for event in client.api.pull(
            repository, tag=tag or "latest", stream=True, decode=True, platform=platform
        ):
            if "error" in event:
                raise ImageError(f"cannot pull {ref}: {event['error']}")
            if "progress" not in event and "status" in event:
                log(ref, f"{event.get('id', '')}: {event['status']}".lstrip(": "))
    except errors.APIError as exc:
        raise ImageError(f"cannot pull {ref}: {_first_line(exc)}") from None
    image = find_image(client, ref)
    if image is None:
        raise ImageError(f"pulled {ref}, but the engine does not list it")
    return image


def resolve_base(
    client: Any, name: str, *, platform: str | None = None, fetch: bool = True, log: Log = _quiet
) -> BaseRef:
    """The vendor image ``name`` pinned by digest, pulled first when the engine lacks it; with
    ``fetch=False`` (dry runs) a missing image stays unpinned instead."""
    image = find_image(client, name)
    if image is None and not fetch:
        return BaseRef(name=name)
    if image is None:
        try:
            image = pull(client, name, platform=platform, log=log)
        except ImageError as exc:
            raise ImageError(
                f"base image {name} is not in the engine and cannot be pulled ({exc.message})",
                hint="pull or load it, or choose another with --base-image VENDOR=REF or $MBCTL_BASE_IMAGE_<VENDOR>",
            ) from None
    return base_ref_of(name, image.id, image.attrs.get("RepoDigests") or [])


class BuildFailed(ImageError):
    """A build stopped: which image, at which Dockerfile step, and the engine's last lines."""

    def __init__(self, spec: ImageSpec, step: str | None, error: str, tail: Sequence[str]) -> None:
        where = f"at {step}" if step else "before its first step"
        # the classic builder repeats the whole RUN line in its error; the step already names it
        error = _RUN_FAILED.sub(r"the command exited with code \1", error.strip())
        lines = "".join(f"\n  | {line}" for line in tail)
        super().__init__(f"build of {spec.name} ({spec.vendor}) failed {where}: {error}{lines}")
        self.image = spec.name
        self.step = step
        self.tail = list(tail)


@dataclass(frozen=True)
class Built:
    """An image ``build_images`` produced, or found already built under the same tag."""

    spec: ImageSpec
    image_id: str
    cached: bool


def build_image(
    client: Any,
    spec: ImageSpec,
    *,
    no_cache: bool = False,
    network: str | None = None,
    log: Log = _quiet,
) -> str:
    """Build ``spec`` and return the image ID; BuildFailed on any error, with the last lines.

    ``network`` is the network of the RUN steps: ``none`` proves a wheelhouse build is offline,
    ``host`` helps where the engine has no NAT. It changes how, not what, so it is not hashed."""
    errors = _errors()
    tail: deque[str] = deque(maxlen=LOG_TAIL)
    step: str | None = None
    image_id: str | None = None
    with tempfile.TemporaryFile() as fileobj:
        write_context(spec.context, fileobj)
        fileobj.seek(0)
        try:
            stream = client.api.build(
                fileobj=fileobj,
                custom_context=True,
                tag=spec.tag,
                rm=True,
                forcerm=True,
                pull=False,  # base images are resolved beforehand; local-only ones must not be looked up remotely
                nocache=no_cache,
                decode=True,
                buildargs=dict(spec.build_args),
                labels=dict(spec.labels),
                platform=spec.platform,
                network_mode=network,
            )
            for event in stream:
                if "error" in event:
                    raise BuildFailed(spec, step, _ANSI.sub("", str(event["error"])), tail)
                if "aux" in event and isinstance(event["aux"], dict) and "ID" in event["aux"]:
                    image_id = event["aux"]["ID"]
                for line in _ANSI.sub("", str(event.get("stream", ""))).splitlines():
                    if not line.strip():
                        continue
                    if line.startswith("Step "):
                        step = " ".join(line.split())
                    if not line.startswith(_ENGINE_CHATTER):
                        tail.append(line)
                    log(spec.name, line)
        except errors.APIError as exc:
            raise BuildFailed(spec, step, _first_line(exc), tail) from None
    if image_id is None:
        image = find_image(client, spec.tag)
        if image is None:
            raise BuildFailed(spec, step, "the engine reported no image", tail)
        image_id = image.id
    return image_id


def build_images(
    client: Any,
    base: ImageSpec,
    specs: Sequence[ImageSpec],
    *,
    no_cache: bool = False,
    network: str | None = None,
    log: Log = _quiet,
) -> list[Built]:
    """Build what is missing: a tag that exists is never rebuilt (unless ``no_cache``), and the
    vendor base only when some benchmark image needs building."""
    done: list[Built] = []
    base_ready = False
    for spec in specs:
        existing = None if no_cache else find_image(client, spec.tag)
        if existing is not None:
            done.append(Built(spec, existing.id, cached=True))
            continue
        if not base_ready:
            found = None if no_cache else find_image(client, base.tag)
            base_id = (
                found.id
                if found is not None
                else build_image(client, base, no_cache=no_cache, network=network, log=log)
            )
            done.insert(0, Built(base, base_id, cached=found is not None))
            base_ready = True
        image_id = build_image(client, spec, no_cache=no_cache, network=network, log=log)
        done.append(Built(spec, image_id, cached=False))
    return done


# --- the lock ------------------------------------------------------------------------------


class _LockModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LockBase(_LockModel):
    """The vendor image an image was built on."""

    name: str
    digest: str = Field(pattern=f"^{_DIGEST}$")
    local: bool = Field(
        default=False, description="digest is a local image ID, not a registry digest"
    )


class LockEntry(_LockModel):
    """One pushed image: pull it by ``ref``; its config digest (image ID) must be ``image_id``."""

    ref: str
    image_id: str = Field(pattern=f"^{_DIGEST}$")
    base: LockBase
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("ref")
    @classmethod
    def _pinned(cls, value: str) -> str:
        if not re.fullmatch(rf"[^@\s]+@{_DIGEST}", value):
            raise ValueError(f"{value!r} has no digest: expected REPOSITORY@sha256:<64 hex digits>")
        return value

    @property
    def repository(self) -> str:
        return self.ref.partition("@")[0]

    @property
    def digest(self) -> str:
        return self.ref.partition("@")[2]


class Lock(_LockModel):
    """``images.lock.yaml``: per benchmark folder and vendor, the image that must run."""

    version: Literal[1] = 1
    images: dict[str, dict[Vendor, LockEntry]] = Field(default_factory=dict)

    def entry(self, name: str, vendor: str | Vendor) -> LockEntry | None:
        return self.images.get(name, {}).get(vendors.get(vendor).vendor)

    def entries(self) -> Iterator[tuple[str, Vendor, LockEntry]]:
        for name in sorted(self.images):
            for vendor in sorted(self.images[name]):
                yield name, vendor, self.images[name][vendor]

    def updated(self, vendor: str | Vendor, entries: Mapping[str, LockEntry]) -> Lock:
        """A copy with ``entries`` (benchmark folder → entry) set for ``vendor``."""
        key = vendors.get(vendor).vendor
        images = {name: dict(by_vendor) for name, by_vendor in self.images.items()}
        for name, entry in entries.items():
            images.setdefault(name, {})[key] = entry
        return Lock(images=images)


_LOCK_HEADER = (
    "# mbctl images lock: the image of each benchmark per vendor, pinned by registry digest.\n"
    "# Written by `mbctl push`; check it with `mbctl lock verify`. Do not edit by hand.\n"
)


def dump_lock(lock: Lock) -> str:
    """The lock as YAML with sorted keys: the same lock always gives the same bytes."""
    data = lock.model_dump(mode="json")
    return _LOCK_HEADER + yaml.safe_dump(
        data, sort_keys=True, default_flow_style=False, width=1 << 16
    )


def write_lock(lock: Lock, path: Path = LOCK_FILE) -> None:
    """Write atomically (temp file + rename), so a reader never sees half a lock."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(dump_lock(lock))
    os.replace(tmp, path)


def read_lock(path: Path = LOCK_FILE) -> Lock:
    """Load and validate a lock; every problem is a ConfigError naming the file, line and key."""
    return load_model(
        path, Lock, what="images lock", hint="`mbctl push --registry REGISTRY` (re)writes it"
    )


# --- push, verify, resolve -----------------------------------------------------------------


def local_image(client: Any, name: str, vendor: str | Vendor) -> Any:
    """The newest local image built for benchmark folder ``name`` on ``vendor``."""
    spec = vendors.get(vendor)
    errors = _errors()
    try:
        found = client.images.list(
            filters={"label": [f"{LABEL_BENCHMARK}={name}", f"{LABEL_VENDOR}={spec.vendor.value}"]}
        )
    except errors.APIError as exc:
        raise ImageError(f"cannot list images: {_first_line(exc)}") from None
    if not found:
        raise ImageError(
            f"no {spec.vendor.value} image of {name} in the engine",
            hint=f"build it first: mbctl build --vendor {spec.vendor.value}",
        )
    return max(found, key=lambda image: str(image.attrs.get("Created", "")))


def lock_entry(ref: str, image_id: str, labels: Mapping[str, str]) -> LockEntry:
    """The lock entry of a pushed image, its base taken from the labels the build set."""
    base_name = labels.get(f"{OCI}base.name")
    base_digest = labels.get(f"{OCI}base.digest")
    if not base_name or not base_digest:
        raise ImageError(
            f"{ref} has no {OCI}base.name/base.digest labels: was it built by mbctl build?"
        )
    base = LockBase(
        name=base_name, digest=base_digest, local=labels.get(LABEL_BASE_LOCAL) == "true"
    )
    own = {k: v for k, v in labels.items() if k in _OWN_LABELS or k.startswith("mbctl.")}
    return LockEntry(ref=ref, image_id=image_id, base=base, labels=own)


def push_image(
    client: Any, image: Any, name: str, registry: str, *, log: Log = _quiet
) -> LockEntry:
    """Tag ``image`` as ``REGISTRY/mbctl/<name>:<version>``, push it with the Docker config's
    credentials (never read, printed or stored here), and return its lock entry."""
    labels: dict[str, str] = dict(image.labels or {})
    version = labels.get(f"{OCI}version")
    if not version:
        raise ImageError(
            f"image {image.id} of {name} has no {OCI}version label: was it built by mbctl build?"
        )
    repository = f"{registry}/{NAMESPACE}/{name}"
    target = f"{repository}:{version}"
    errors = _errors()
    digest: str | None = None
    try:
        if target not in (image.tags or []):
            image.tag(repository, version)
        for event in client.api.push(repository, tag=version, stream=True, decode=True):
            if "error" in event:
                error = str(event["error"])
                hint = None
                if re.search(
                    r"unauthori[sz]ed|authentication required|no basic auth|denied", error, re.I
                ):
                    hint = f"log in first (docker login {registry}); credentials come from the Docker config"
                raise ImageError(f"push of {target} failed: {error}", hint=hint)
            aux = event.get("aux")
            if isinstance(aux, dict) and aux.get("Digest"):
                digest = str(aux["Digest"])
            elif "status" in event and "progress" not in event:
                log(name, f"{event.get('id', '')}: {event['status']}".lstrip(": "))
    except errors.APIError as exc:
        raise ImageError(f"push of {target} failed: {_first_line(exc)}") from None
    if digest is None:
        raise ImageError(f"push of {target} finished without reporting a digest")
    return lock_entry(f"{repository}@{digest}", image.id, labels)


def push_images(
    client: Any, names: Sequence[str], vendor: str | Vendor, registry: str, *, log: Log = _quiet
) -> dict[str, LockEntry]:
    """Push the newest local image of each benchmark folder; the entries for the lock."""
    images = {name: local_image(client, name, vendor) for name in names}
    return {
        name: push_image(client, image, name, registry, log=log) for name, image in images.items()
    }


@dataclass(frozen=True)
class Verified:
    """The outcome of checking one lock entry against its registry."""

    name: str
    vendor: Vendor
    ref: str
    ok: bool
    detail: str


def _check_entry(
    client: Any, name: str, vendor: Vendor, entry: LockEntry, *, fetch: bool, log: Log
) -> str:
    """The image ID of ``entry.ref`` after pulling (or finding) it; ImageError on any mismatch."""
    image = None if fetch else find_image(client, entry.ref)
    if image is None:
        image = pull(client, entry.ref, log=log)
    if image.id != entry.image_id:
        raise ImageError(
            f"{entry.ref} ({name}, {vendor}) has image ID {image.id}, the lock says {entry.image_id}",
            hint="the image under that digest is not the one that was locked; rebuild, push, and update the lock",
        )
    return str(image.id)


def verify_lock(
    client: Any, lock: Lock, *, vendor: str | Vendor | None = None, log: Log = _quiet
) -> list[Verified]:
    """Pull every entry (of ``vendor``) by digest and compare its image ID with the lock's."""
    only = vendors.get(vendor).vendor if vendor is not None else None
    results = []
    for name, entry_vendor, entry in lock.entries():
        if only is not None and entry_vendor is not only:
            continue
        try:
            image_id = _check_entry(client, name, entry_vendor, entry, fetch=True, log=log)
        except ImageError as exc:
            results.append(Verified(name, entry_vendor, entry.ref, False, str(exc)))
        else:
            results.append(
                Verified(
                    name,
                    entry_vendor,
                    entry.ref,
                    True,
                    f"pulled by digest, image ID {image_id[:19]} matches",
                )
            )
    return results


def resolve_images(
    lock: Lock,
    vendor: str | Vendor,
    benches: Iterable[Benchmark | str],
    *,
    client: Any | None = None,
    log: Log = _quiet,
) -> dict[str, str]:
    """``{benchmark name: "repo@sha256:…"}`` for ``run``. With a client, each image is also found
    or pulled and its image ID checked against the lock (ImageError on a mismatch)."""
    spec = vendors.get(vendor)
    refs: dict[str, str] = {}
    for bench in benches:
        name, definition = (
            (bench, bench) if isinstance(bench, str) else (bench.name, bench.definition)
        )
        entry = lock.entry(definition, spec.vendor)
        if entry is None:
            raise ImageError(
                f"the images lock has no {spec.vendor.value} image of {definition} (benchmark {name})",
                hint=f"mbctl build --vendor {spec.vendor.value} && mbctl push --vendor {spec.vendor.value} --registry REGISTRY",
            )
        if client is not None:
            _check_entry(client, definition, spec.vendor, entry, fetch=False, log=log)
        refs[name] = entry.ref
    return refs


def image_refs(
    suite: Suite,
    vendor: str,
    *,
    registry: str | None = None,
    lock: Path | None = None,
    explicit: Iterable[str] = (),
) -> dict[str, str]:
    """Benchmark name → image, from ``--image BENCH=REF`` first, then the lock, then the registry.

    ``BENCH`` is a benchmark's name or its folder; the lock pins folders (``repo@sha256``). A
    registry gives the floating ``REGISTRY/mbctl/<folder>:<vendor>``: a placeholder, since
    ``mbctl push`` only pushes content-hash tags.
    """
    chosen = vendors.get(vendor).vendor
    given: dict[str, str] = {}
    for item in explicit:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(
                f"--image {item!r}: expected BENCH=REF, e.g. resnet50=registry/mbctl/convnet@sha256:..."
            )
        given[key.strip()] = value.strip()
    known = {b.name for b in suite.benchmarks} | {b.definition for b in suite.benchmarks}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ConfigError(
            f"--image {', '.join(unknown)}: no such benchmark in suite {suite.name!r}",
            hint="benchmarks: " + ", ".join(suite.names()),
        )
    locked = read_lock(lock) if lock is not None else None
    refs: dict[str, str] = {}
    for bench in suite.benchmarks:
        ref = given.get(bench.name) or given.get(bench.definition)
        if ref is None and locked is not None:
            entry = locked.entry(bench.definition, chosen)
            ref = entry.ref if entry is not None else None
        if ref is None and registry:
            ref = f"{registry.rstrip('/')}/{NAMESPACE}/{bench.definition}:{chosen.value}"
        if ref is not None:
            refs[bench.name] = ref
    return refs
