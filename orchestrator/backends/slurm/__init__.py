"""The Slurm backend package: site settings, pure sbatch scripts, state parsing, the sbatch-driven backend."""

from __future__ import annotations

from orchestrator.backends.slurm.backend import SlurmBackend
from orchestrator.backends.slurm.settings import Runtime, SlurmSettings, load_settings

__all__ = ["Runtime", "SlurmBackend", "SlurmSettings", "load_settings"]
