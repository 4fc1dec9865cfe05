"""``mbctl render k8s`` as a library: image references for a plan, and its manifests written as files."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

from orchestrator import vendors
from orchestrator.backends.base import Phase
from orchestrator.backends.kubernetes.manifests import Manifest, kustomization, render_bundle
from orchestrator.backends.kubernetes.settings import K8sSettings
from orchestrator.config import Suite
from orchestrator.errors import ConfigError
from orchestrator.plan import Plan

KUSTOMIZATION = "kustomization.yaml"


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
    from orchestrator import images

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
    locked = images.read_lock(lock) if lock is not None else None
    refs: dict[str, str] = {}
    for bench in suite.benchmarks:
        ref = given.get(bench.name) or given.get(bench.definition)
        if ref is None and locked is not None:
            entry = locked.entry(bench.definition, chosen)
            ref = entry.ref if entry is not None else None
        if ref is None and registry:
            ref = f"{registry.rstrip('/')}/{images.NAMESPACE}/{bench.definition}:{chosen.value}"
        if ref is not None:
            refs[bench.name] = ref
    return refs


class _Dumper(yaml.SafeDumper):
    """Never writes anchors and aliases: kubectl reads them, people and diff tools do not."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def to_yaml(manifest: Mapping[str, object]) -> str:
    """``manifest`` as YAML with sorted keys: the same objects always give the same bytes."""
    return yaml.dump(
        dict(manifest), Dumper=_Dumper, sort_keys=True, default_flow_style=False, width=1 << 16
    )


def write_manifests(
    plan: Plan, settings: K8sSettings, output: Path, phase: Phase = Phase.RUN
) -> list[Path]:
    """Write one YAML file per object of ``plan`` and a kustomization listing them; the paths written."""
    bundle: dict[str, Manifest] = render_bundle(plan, settings, phase)
    output = Path(output)
    try:
        output.mkdir(parents=True, exist_ok=True)
        written = []
        for name, manifest in bundle.items():
            path = output / name
            path.write_text(to_yaml(manifest), encoding="utf-8")
            written.append(path)
        path = output / KUSTOMIZATION
        path.write_text(to_yaml(kustomization(bundle)), encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write manifests to {output}: {exc.strerror or exc}") from None
    return [*written, path]
