"""The engine (Docker SDK, imported lazily): find and build images."""

from __future__ import annotations

import tarfile
import tempfile
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from orchestrator.errors import ImageError
from orchestrator.images.context import write_context
from orchestrator.images.inputs import (
    _ANSI,
    _ENGINE_CHATTER,
    _RUN_FAILED,
    BASE_MANIFEST,
    LOG_TAIL,
    MANIFEST,
    Log,
    _quiet,
)
from orchestrator.images.plan import ImageSpec

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


@dataclass(frozen=True)
class Rebuilt:
    """One image built again from scratch next to the existing one: same installed files?"""

    name: str
    tag: str
    files: int
    differing: tuple[str, ...]
    same_image_id: bool

    @property
    def ok(self) -> bool:
        return not self.differing


def installed_manifest(client: Any, ref: str, path: str = MANIFEST) -> dict[str, str]:
    """Path -> sha256 of the files pip installed into image ``ref`` (its manifest at ``path``).

    Read from a created, never started, container: a container's log of a few MB can end early."""
    errors = _errors()
    container = client.containers.create(ref, entrypoint=["true"], network_disabled=True)
    try:
        stream, _ = container.get_archive(path)
        with tempfile.TemporaryFile() as fileobj:
            for chunk in stream:
                fileobj.write(chunk)
            fileobj.seek(0)
            with tarfile.open(fileobj=fileobj) as tar:
                member = tar.next()
                handle = tar.extractfile(member) if member is not None else None
                text = handle.read().decode() if handle is not None else ""
    except errors.NotFound:
        raise ImageError(
            f"{ref} has no {path}", hint="rebuild it with this mbctl (mbctl build)"
        ) from None
    finally:
        container.remove(force=True)
    pairs = (line.split("  ", 1) for line in text.splitlines() if line)
    return {name: digest for digest, name in pairs}


def rebuild_and_compare(
    client: Any,
    base: ImageSpec,
    specs: Sequence[ImageSpec],
    *,
    network: str | None = None,
    log: Log = _quiet,
) -> list[Rebuilt]:
    """Build each image (when missing), then again with no cache under a scratch tag, and compare
    the installed files of the two; the scratch image is removed afterwards. The vendor's mbctl
    base comes first when it installs packages (its own manifest)."""
    built = {
        b.spec.tag: b.image_id for b in build_images(client, base, specs, network=network, log=log)
    }
    if base.tag not in built:
        found = find_image(client, base.tag)
        built[base.tag] = (
            found.id if found is not None else build_image(client, base, network=network, log=log)
        )
    own = [(base, BASE_MANIFEST)] if BASE_MANIFEST in base.dockerfile else []
    results = []
    for spec, manifest in [*own, *((s, MANIFEST) for s in specs)]:
        scratch = replace(spec, tag=f"{spec.tag}-rebuild")
        again = build_image(client, scratch, no_cache=True, network=network, log=log)
        try:
            first = installed_manifest(client, spec.tag, manifest)
            second = installed_manifest(client, scratch.tag, manifest)
        finally:
            client.images.remove(scratch.tag, noprune=False)
        differing = sorted(p for p in first.keys() | second.keys() if first.get(p) != second.get(p))
        results.append(
            Rebuilt(spec.name, spec.tag, len(first), tuple(differing), built[spec.tag] == again)
        )
    return results
