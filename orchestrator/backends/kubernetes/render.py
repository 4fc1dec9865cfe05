"""``mbctl render k8s`` as a library: image references for a plan, and its manifests written as files."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml

from orchestrator.backends.base import Phase
from orchestrator.backends.kubernetes.manifests import Manifest, kustomization, render_bundle
from orchestrator.backends.kubernetes.settings import K8sSettings
from orchestrator.errors import ConfigError
from orchestrator.plan import Plan

KUSTOMIZATION = "kustomization.yaml"


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
