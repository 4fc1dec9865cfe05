"""Vendor submissions: the bundle format and packing, safe extraction, verification, re-run.

``bundle`` (format, manifest, packing, signatures), ``extract`` (members checked and
size-capped before anything is written), ``verify`` (the checks of ``mbctl verify``) and
``rerun`` (locked images only, signature required) each own one concern; this module
re-exports what the CLI and tests use.
"""

from __future__ import annotations

from orchestrator.submission.bundle import (
    FORMAT,
    IMAGES,
    LOCK,
    MANIFEST,
    NAMESPACE,
    RUN,
    SIGNATURE,
    SUITE,
    FileEntry,
    Manifest,
    Submitted,
    VerificationFailed,
    create,
    file_entry,
    hash_files,
    load_run_suite,
    sign,
    write_archive,
)
from orchestrator.submission.extraction import Bundle, default_workdir, extract
from orchestrator.submission.rerunning import (
    DEFAULT_TOLERANCE,
    Rerun,
    RerunRow,
    rerun,
    rerun_table,
    rerun_to_json,
)
from orchestrator.submission.verification import (
    DEFAULT_MIN_MEASURES,
    Check,
    Verification,
    checks_table,
    verification_to_json,
    verify,
)

__all__ = [
    "DEFAULT_MIN_MEASURES",
    "DEFAULT_TOLERANCE",
    "FORMAT",
    "IMAGES",
    "LOCK",
    "MANIFEST",
    "NAMESPACE",
    "RUN",
    "SIGNATURE",
    "SUITE",
    "Bundle",
    "Check",
    "FileEntry",
    "Manifest",
    "Rerun",
    "RerunRow",
    "Submitted",
    "Verification",
    "VerificationFailed",
    "checks_table",
    "create",
    "default_workdir",
    "extract",
    "file_entry",
    "hash_files",
    "load_run_suite",
    "rerun",
    "rerun_table",
    "rerun_to_json",
    "sign",
    "verification_to_json",
    "verify",
    "write_archive",
]
