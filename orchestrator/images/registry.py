"""Registries: pull, resolve the vendor base, push and lock, verify, and the refs `run` uses."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator import vendors
from orchestrator.errors import ConfigError, ImageError
from orchestrator.images.build import _errors, _first_line, find_image
from orchestrator.images.inputs import (
    _OWN_LABELS,
    LABEL_BASE_LOCAL,
    LABEL_BENCHMARK,
    LABEL_VENDOR,
    NAMESPACE,
    OCI,
    BaseRef,
    Log,
    _quiet,
    base_ref_of,
)
from orchestrator.images.lock import Lock, LockBase, LockEntry, read_lock
from orchestrator.vendors import Vendor

#: Warnings for the CLI (printed on stderr when nothing configured logging).
log = logging.getLogger("mbctl.images")

if TYPE_CHECKING:
    from orchestrator.config import Benchmark, Suite


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


# --- push, verify, resolve -----------------------------------------------------------------


def local_image(client: Any, name: str, vendor: str | Vendor, *, version: str | None = None) -> Any:
    """The local image built for benchmark folder ``name`` on ``vendor``: the one of ``version``
    (``<vendor>-<hash>``, what the current tree builds) when given, else the newest."""
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
    if version is not None:
        exact = [i for i in found if (i.labels or {}).get(f"{OCI}version") == version]
        if not exact:
            others = sorted({str((i.labels or {}).get(f"{OCI}version")) for i in found})
            raise ImageError(
                f"the image of {name} that this tree builds ({version}) is not in the engine; "
                f"it has {', '.join(others)}, built from other sources or options",
                hint=f"mbctl build --vendor {spec.vendor.value} with the same options first",
            )
        found = exact
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
    client: Any,
    names: Sequence[str],
    vendor: str | Vendor,
    registry: str,
    *,
    versions: Mapping[str, str] | None = None,
    log: Log = _quiet,
) -> dict[str, LockEntry]:
    """Push the image of each benchmark folder, the one of ``versions[name]`` (what the current
    tree builds) when given, else the newest; the entries for the lock."""
    images = {
        name: local_image(client, name, vendor, version=(versions or {}).get(name))
        for name in names
    }
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
    fallback: list[str] = []
    for bench in suite.benchmarks:
        ref = given.get(bench.name) or given.get(bench.definition)
        if ref is None and locked is not None:
            entry = locked.entry(bench.definition, chosen)
            ref = entry.ref if entry is not None else None
        if ref is None and registry:
            ref = f"{registry.rstrip('/')}/{NAMESPACE}/{bench.definition}:{chosen.value}"
            if locked is not None:
                fallback.append(bench.name)
        if ref is not None:
            refs[bench.name] = ref
    if fallback:
        # a pinned lock and floating tags in one run: the run is only partly reproducible
        log.warning(
            "warning: %s not in %s: using the floating registry tag %s (not pinned by digest)",
            ", ".join(fallback),
            lock,
            f"{registry}/{NAMESPACE}/<folder>:{chosen.value}",
        )
    return refs
