"""What to build, with which tags: the vendor base image and one image per benchmark (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from orchestrator import vendors
from orchestrator.config import benchmarks_root
from orchestrator.errors import ConfigError
from orchestrator.images.context import (
    SourceInfo,
    build_time,
    content_hash,
    image_labels,
    image_tag,
)
from orchestrator.images.inputs import (
    BASE_NAME,
    NAMESPACE,
    BaseRef,
    BuildOptions,
    ContextSource,
    bench_framework,
    deps_lock_file,
    requirements_file,
    templates_root,
)
from orchestrator.images.render import render_base, render_benchmark
from orchestrator.vendors import Vendor

# --- planning: what to build, with which tags (pure) ---------------------------------------

#: The install stage's helper script (images/mbctl-pip.py), run by the base's own interpreter.
PIP_HELPER = "mbctl-pip.py"


def bench_requirements(
    name: str, folder: Path, requirements: Path | None, spec: vendors.VendorSpec
) -> ContextSource | None:
    """The benchmark's requirements, plus the vendor's jaxlib plugin for a JAX benchmark: CPU
    jaxlib alone in an accelerator image would measure the host."""
    if bench_framework(folder) != "jax":
        return requirements
    if spec.jax_unsupported:
        raise ConfigError(
            f"benchmark {name!r} uses JAX, which is unsupported on {spec.vendor.value}: {spec.jax_unsupported}"
        )
    if spec.jax_plugin is None:
        return requirements
    text = requirements.read_text() if requirements is not None else ""
    return f"{text.rstrip()}\n# the vendor's jaxlib plugin (mbctl vendor table)\n{spec.jax_plugin}\n".encode()


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
    source: SourceInfo | None = None,
) -> tuple[ImageSpec, list[ImageSpec]]:
    """The vendor's base image and one image per benchmark folder in ``names``, tagged by content."""
    spec = vendors.get(vendor)
    source = source or SourceInfo()
    root = root or benchmarks_root()
    created = created or build_time()
    build_args = dict(options.build_args)
    wheelhouse = options.wheelhouse is not None

    # the install stage's helper: part of every context, so a change to it changes every tag
    extra: dict[str, ContextSource] = {PIP_HELPER: templates_root() / PIP_HELPER}
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

    base_version_ref = f"{NAMESPACE}/{BASE_NAME}:{base_tag.rpartition(':')[2]}"
    benches: list[ImageSpec] = []
    for name in names:
        folder = root / name
        if not (folder / "main.py").is_file():
            raise ConfigError(f"benchmark {name!r}: {folder}/main.py does not exist")
        locked = deps_lock_file(folder, spec.vendor)
        wanted = (
            locked
            if locked.is_file()
            else bench_requirements(name, folder, requirements_file(folder, spec.vendor), spec)
        )

        shape = partial(
            render_benchmark,
            name,
            spec.vendor,
            requirements=wanted is not None,
            locked=locked.is_file(),
            wheelhouse=wheelhouse,
            build_args=build_args,
        )
        dockerfile = shape(base_tag)
        context: dict[str, ContextSource] = {
            "Dockerfile": dockerfile.encode(),
            "benchkit": root / "benchkit",
            "code": folder,
            **extra,
        }
        if wanted is not None:
            context["requirements.txt"] = wanted
        # The tag hashes the Dockerfile as if FROM named the base by content alone: the same
        # tree, lock and options give the same tag under every --registry.
        hashed_dockerfile = shape(base_version_ref)
        hashed = {**context, "Dockerfile": hashed_dockerfile.encode()}
        tag = image_tag(
            options.registry,
            name,
            spec.vendor,
            content_hash(
                hashed, build_args=build_args, platform=options.platform, base_digest=base.digest
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
