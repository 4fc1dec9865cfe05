"""Dockerfiles from the templates of images/ (pure), and the RUN commands of one (for shell checks)."""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator import vendors
from orchestrator.errors import ImageError
from orchestrator.images.inputs import (
    BASE_MANIFEST,
    BENCHMARK_TEMPLATE,
    MANIFEST,
    BaseRef,
    templates_root,
)
from orchestrator.vendors import Vendor

if TYPE_CHECKING:
    import jinja2


# --- rendering (pure) ----------------------------------------------------------------------


@lru_cache(maxsize=4)
def _environment(root: Path) -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(root),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    # a requirement such as nvidia-ml-py>=12 is a redirect to the shell unless quoted
    env.filters["shell_quote"] = shlex.quote
    return env


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
        locked=False,
        manifest=BASE_MANIFEST,
        framework=list(spec.framework_packages),
        torch_index=spec.torch_index,
        build_args=sorted(build_args),
    )


def render_benchmark(
    name: str,
    vendor: str | Vendor,
    base_image: str,
    *,
    requirements: bool = True,
    locked: bool = False,
    wheelhouse: bool = False,
    build_args: Iterable[str] = (),
    root: Path | None = None,
) -> str:
    """The Dockerfile of one benchmark's image, ``FROM`` the vendor's mbctl base image; with
    ``locked`` its requirements are a dependency lock, installed with ``--require-hashes``."""
    spec = vendors.get(vendor)
    return render(
        BENCHMARK_TEMPLATE,
        root=root,
        name=name,
        vendor=spec.vendor.value,
        vendor_title=spec.title,
        base_image=base_image,
        requirements=requirements,
        locked=locked,
        manifest=MANIFEST,
        wheelhouse=wheelhouse,
        framework=list(spec.framework_packages),
        torch_index=spec.torch_index,
        build_args=sorted(build_args),
    )


def run_lines(dockerfile: str) -> list[str]:
    """The shell command of every ``RUN`` instruction, continuation lines joined (for checks)."""
    commands: list[str] = []
    current: list[str] | None = None
    for line in dockerfile.splitlines():
        if current is None:
            if not line.startswith("RUN "):
                continue
            current = []
            line = line[4:]
        if line.rstrip().endswith("\\"):
            current.append(line.rstrip()[:-1])
            continue
        current.append(line)
        commands.append(" ".join(part.strip() for part in current))
        current = None
    return commands
