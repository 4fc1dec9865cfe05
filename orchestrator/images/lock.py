"""The images lock (images.lock.yaml): per benchmark and vendor, the pushed image that must run."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator import vendors
from orchestrator.config import load_model
from orchestrator.images.inputs import _DIGEST, LOCK_FILE
from orchestrator.vendors import Vendor

# --- the lock ------------------------------------------------------------------------------


class _LockModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LockBase(_LockModel):
    """The vendor image an image was built on."""

    name: str
    digest: str = Field(pattern=f"^{_DIGEST}$")
    local: bool = Field(
        default=False, description="digest is a local image ID, not a registry digest"
    )


class LockEntry(_LockModel):
    """One pushed image: pull it by ``ref``; its config digest (image ID) must be ``image_id``."""

    ref: str
    image_id: str = Field(pattern=f"^{_DIGEST}$")
    base: LockBase
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("ref")
    @classmethod
    def _pinned(cls, value: str) -> str:
        if not re.fullmatch(rf"[^@\s]+@{_DIGEST}", value):
            raise ValueError(f"{value!r} has no digest: expected REPOSITORY@sha256:<64 hex digits>")
        return value

    @property
    def repository(self) -> str:
        return self.ref.partition("@")[0]

    @property
    def digest(self) -> str:
        return self.ref.partition("@")[2]


class Lock(_LockModel):
    """``images.lock.yaml``: per benchmark folder and vendor, the image that must run."""

    version: Literal[1] = 1
    images: dict[str, dict[Vendor, LockEntry]] = Field(default_factory=dict)

    def entry(self, name: str, vendor: str | Vendor) -> LockEntry | None:
        return self.images.get(name, {}).get(vendors.get(vendor).vendor)

    def entries(self) -> Iterator[tuple[str, Vendor, LockEntry]]:
        for name in sorted(self.images):
            for vendor in sorted(self.images[name]):
                yield name, vendor, self.images[name][vendor]

    def updated(self, vendor: str | Vendor, entries: Mapping[str, LockEntry]) -> Lock:
        """A copy with ``entries`` (benchmark folder → entry) set for ``vendor``."""
        key = vendors.get(vendor).vendor
        images = {name: dict(by_vendor) for name, by_vendor in self.images.items()}
        for name, entry in entries.items():
            images.setdefault(name, {})[key] = entry
        return Lock(images=images)


_LOCK_HEADER = (
    "# mbctl images lock: the image of each benchmark per vendor, pinned by registry digest.\n"
    "# Written by `mbctl push`; check it with `mbctl lock verify`. Do not edit by hand.\n"
)


def dump_lock(lock: Lock) -> str:
    """The lock as YAML with sorted keys: the same lock always gives the same bytes."""
    data = lock.model_dump(mode="json")
    return _LOCK_HEADER + yaml.safe_dump(
        data, sort_keys=True, default_flow_style=False, width=1 << 16
    )


def write_lock(lock: Lock, path: Path = LOCK_FILE) -> None:
    """Write atomically (temp file + rename), so a reader never sees half a lock."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(dump_lock(lock))
    os.replace(tmp, path)


def read_lock(path: Path = LOCK_FILE) -> Lock:
    """Load and validate a lock; every problem is a ConfigError naming the file, line and key."""
    return load_model(
        path, Lock, what="images lock", hint="`mbctl push --registry REGISTRY` (re)writes it"
    )
