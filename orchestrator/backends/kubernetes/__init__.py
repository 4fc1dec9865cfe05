"""The Kubernetes backend package: settings, pure manifest builders, and the client-driven backend."""

from __future__ import annotations

from orchestrator.backends.kubernetes.backend import KubernetesBackend
from orchestrator.backends.kubernetes.settings import K8sSettings, load_settings

__all__ = ["K8sSettings", "KubernetesBackend", "load_settings"]
