"""Dependency locks (``mbctl lock deps``): each benchmark's requirements pinned and hashed per vendor.

pip resolves them inside the vendor's mbctl base image, so the base's own packages (the vendor's
torch, its pins) satisfy what they can and the lock holds only what the image adds: exact versions
and the sha256 of the very files pip chose. Images then install the lock with ``--require-hashes``,
and the lock is part of their build context, so their tag changes when, and only when, it does.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator import vendors
from orchestrator.config import benchmarks_root
from orchestrator.errors import ImageError
from orchestrator.images.build import _errors, _first_line, build_image, find_image
from orchestrator.images.inputs import (
    BaseRef,
    BuildOptions,
    ContextSource,
    Log,
    _quiet,
    deps_lock_file,
    requirements_file,
    templates_root,
)
from orchestrator.images.plan import PIP_HELPER, ImageSpec, bench_requirements, plan_images
from orchestrator.vendors import Vendor

WHEELHOUSE = "/tmp/mbctl/wheelhouse"
_HEADER = (
    "# mbctl dependency lock: {name} on {vendor}, resolved by pip in {base_tag}\n"
    "# (FROM {base}). Written by `mbctl lock deps`; images install it with --require-hashes.\n"
    "# Do not edit by hand: change requirements*.txt and run `mbctl lock deps` again.\n"
)


@dataclass(frozen=True)
class Pin:
    """One package of a dependency lock."""

    name: str
    version: str
    sha256: str

    def line(self) -> str:
        return f"{self.name}=={self.version} --hash=sha256:{self.sha256}"


def parse_report(text: str) -> list[Pin]:
    """The packages pip's ``--report`` would install, each with the sha256 of its file."""
    try:
        report = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImageError(f"pip's install report is not JSON ({exc.msg}): {text[:200]!r}") from None
    pins = []
    for item in report.get("install", []):
        meta = item["metadata"]
        info = item.get("download_info", {}).get("archive_info", {})
        digest = (info.get("hashes") or {}).get("sha256")
        if digest is None and str(info.get("hash", "")).startswith("sha256="):
            digest = info["hash"].partition("=")[2]
        if not digest:
            url = item.get("download_info", {}).get("url", "?")
            raise ImageError(
                f"{meta['name']} {meta['version']} comes from {url}, which has no sha256",
                hint="lock only packages from an index or a wheelhouse",
            )
        pins.append(Pin(_canonical(meta["name"]), meta["version"], digest))
    return sorted(pins, key=lambda pin: pin.name)


def _canonical(name: str) -> str:
    return name.replace("_", "-").replace(".", "-").lower()


def render_deps_lock(name: str, vendor: Vendor, base_spec: ImageSpec, pins: list[Pin]) -> str:
    """The lock file's text: a header naming what it was resolved in, one pinned line per package."""
    base = base_spec.base
    return _HEADER.format(
        name=name,
        vendor=vendor.value,
        base_tag=base_spec.tag.rpartition("/")[2],
        base=f"{base.name}@{base.digest}" if base.digest and not base.local else base.name,
    ) + "".join(pin.line() + "\n" for pin in pins)


def resolve_script(vendor: Vendor, *, wheelhouse: bool) -> str:
    """The shell command run in the base image: mbctl-pip.py's pins, then pip's dry run."""
    spec = vendors.get(vendor)
    index = (
        f"--no-index --find-links {WHEELHOUSE}"
        if wheelhouse
        else (f"--extra-index-url {shlex.quote(spec.torch_index)}" if spec.torch_index else "")
    )
    framework = ",".join(spec.framework_packages)
    return (
        'printf "%s" "$MBCTL_PIP_HELPER" > /tmp/mbctl-pip.py'
        ' && printf "%s" "$MBCTL_REQUIREMENTS" > /tmp/mbctl-requirements.txt'
        f" && python /tmp/mbctl-pip.py plan --out /tmp/mbctl-pip --framework {framework}"
        " -r /tmp/mbctl-requirements.txt >&2"
        " && python -m pip install --dry-run --quiet --report - --constraint"
        f" /tmp/mbctl-pip/constraints.txt {index} --requirement /tmp/mbctl-pip/requirements.txt"
    )


def resolve(
    client: Any,
    base_tag: str,
    vendor: Vendor,
    requirements: ContextSource,
    options: BuildOptions,
) -> list[Pin]:
    """Resolve ``requirements`` in the built mbctl base image ``base_tag``; the pins to install."""
    text = requirements if isinstance(requirements, bytes) else requirements.read_bytes()
    helper = (templates_root() / PIP_HELPER).read_text()
    volumes = {}
    if options.wheelhouse is not None:
        volumes[str(options.wheelhouse.resolve())] = {"bind": WHEELHOUSE, "mode": "ro"}
    errors = _errors()
    try:
        output = client.containers.run(
            base_tag,
            entrypoint=[
                "sh",
                "-c",
                resolve_script(vendor, wheelhouse=options.wheelhouse is not None),
            ],
            environment={
                **dict(options.build_args),
                "MBCTL_PIP_HELPER": helper,
                "MBCTL_REQUIREMENTS": text.decode(),
            },
            volumes=volumes,
            network_mode="none" if options.wheelhouse is not None else None,
            stdout=True,
            stderr=False,
            remove=True,
        )
    except errors.ContainerError as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        tail = "".join(f"\n  | {line}" for line in stderr.strip().splitlines()[-12:])
        raise ImageError(f"pip could not resolve the requirements in {base_tag}{tail}") from None
    except errors.APIError as exc:
        raise ImageError(f"cannot run {base_tag} to resolve: {_first_line(exc)}") from None
    return parse_report(output.decode())


def lock_dependencies(
    client: Any,
    names: list[str],
    vendor: str | Vendor,
    options: BuildOptions,
    base: BaseRef,
    *,
    root: Path | None = None,
    log: Log = _quiet,
) -> dict[str, tuple[Path, int]]:
    """Write ``requirements.<vendor>.lock`` for each benchmark folder with requirements, resolved in
    the vendor's mbctl base image (built first when missing); folder -> (lock file, packages)."""
    spec = vendors.get(vendor)
    root = root or benchmarks_root()
    base_spec, _ = plan_images([], spec.vendor, options, base, root=root)
    if find_image(client, base_spec.tag) is None:
        build_image(client, base_spec, log=log)
    written: dict[str, tuple[Path, int]] = {}
    for name in names:
        folder = root / name
        wanted = bench_requirements(name, folder, requirements_file(folder, spec.vendor), spec)
        if wanted is None:
            continue
        pins = resolve(client, base_spec.tag, spec.vendor, wanted, options)
        path = deps_lock_file(folder, spec.vendor)
        path.write_text(render_deps_lock(name, spec.vendor, base_spec, pins))
        written[name] = (path, len(pins))
    return written
