"""The ``resources:`` of a benchmark (memory, pids, CPUs): one model every backend reads.

Suites set them under ``defaults:`` for every benchmark and per benchmark (merged key by
key); Docker, Compose and Kubernetes apply the same values, each in its own words.
"""

from __future__ import annotations

import re
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field

_UNITS: Final = {
    "": 1,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}
#: A Kubernetes quantity of bytes (``16Gi``, ``512Mi``, ``2G``, ``1073741824``).
MEMORY_PATTERN: Final = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$"
_MEMORY_RE: Final = re.compile(MEMORY_PATTERN)


class Resources(BaseModel):
    """Limits of one job's container or pod; a field left out keeps the runtime's default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    memory: Annotated[str, Field(pattern=MEMORY_PATTERN)] | None = Field(
        default=None, description="memory limit as a Kubernetes quantity: 16Gi, 512Mi, 8G"
    )
    pids: Annotated[int, Field(gt=0, le=4_194_304)] | None = Field(
        default=None, description="most processes and threads the job may hold"
    )
    cpus: Annotated[float, Field(gt=0, le=4096, allow_inf_nan=False)] | None = Field(
        default=None, description="CPU cores the job may use (fractions allowed)"
    )

    def memory_bytes(self) -> int | None:
        """``memory`` in bytes, as Docker and Compose take it."""
        if self.memory is None:
            return None
        match = _MEMORY_RE.match(self.memory)
        assert match is not None  # the field's pattern held at validation
        number = self.memory[: match.start(2)] if match[2] else self.memory
        return int(float(number) * _UNITS[match[2] or ""])
