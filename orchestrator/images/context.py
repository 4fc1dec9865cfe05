"""Build contexts, content-hash tags and OCI labels (pure but for reading files and git)."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

from orchestrator import vendors
from orchestrator.errors import ConfigError, ImageError
from orchestrator.images.inputs import (
    _NAME,
    _SKIPPED_DIRS,
    HASH_LENGTH,
    LABEL_BASE_LOCAL,
    LABEL_BENCHMARK,
    LABEL_VENDOR,
    NAMESPACE,
    OCI,
    BaseRef,
    ContextSource,
)
from orchestrator.vendors import Vendor

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
