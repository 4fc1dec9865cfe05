"""The dataset cache: one folder per dataset, named by a hash of its parameters, built once.

A dataset is described by a ``spec``, a JSON-able dict with at least a ``"dataset"`` name (and,
by convention, a ``"version"`` bumped when its generator changes). It lives in
``<data_dir>/<dataset>-<12 hex digits of the spec's sha256>``, and counts as prepared once the
marker file holding the spec is there. Building is idempotent and interrupt-safe: the data is
generated into a temporary sibling folder, the marker written last, and the folder renamed into
place; an interrupted build leaves only a temporary folder, which the next build deletes.

Preparers of one dataset may run at once (prepare Jobs on a shared volume, where every pod is
PID 1): a lock file beside the dataset lets one build while the others wait and then find it
built, and temporary folders are named by host, PID and a random part, never by PID alone.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .cli import data_dir

MARKER = ".mbctl-dataset.json"

Spec = dict[str, Any]


def dataset_dir(spec: Spec) -> Path:
    """Where the dataset described by ``spec`` lives (prepared or not)."""
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    return data_dir() / f"{spec['dataset']}-{digest}"


def is_prepared(spec: Spec) -> bool:
    return (dataset_dir(spec) / MARKER).is_file()


def require_dataset(spec: Spec) -> Path:
    """The prepared dataset, or an error saying how to make it."""
    path = dataset_dir(spec)
    if not (path / MARKER).is_file():
        raise FileNotFoundError(
            f"{spec['dataset']} is not prepared in {path.parent} (looked for {path.name}); "
            "run `mbctl prepare` with the same suite and profile first"
        )
    return path


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive POSIX lock on ``path`` (created if missing) for the block.

    POSIX record locks (``lockf``) reach other hosts on NFS and CephFS, unlike BSD ``flock``
    on some NFS clients; the kernel drops them when the holder dies, so a killed preparer
    never blocks the next one.
    """
    with open(path, "a+b") as handle:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            print(f"waiting for another preparer of {path.stem}", file=sys.stderr, flush=True)
            fcntl.lockf(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(handle, fcntl.LOCK_UN)


def _unique() -> str:
    # every pod is PID 1 in its own PID namespace: the PID alone names nothing uniquely
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def materialise(spec: Spec, generate: Callable[[Path], None]) -> Path:
    """Generate the dataset once: into a temporary folder renamed into place when complete.

    The marker holding the parameters is written last, so an interrupted run leaves only a
    temporary folder, which the next run deletes before starting over. The build holds the
    dataset's lock, so a second preparer waits, then finds the dataset and returns it.
    """
    final = dataset_dir(spec)
    if (final / MARKER).is_file():
        return final
    with _exclusive(final.with_name(f"{final.name}.lock")):
        if (final / MARKER).is_file():  # built by the preparer this one waited for
            return final
        # only a dead preparer's: a living one would hold the lock
        for stale in final.parent.glob(f"{final.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = final.with_name(f"{final.name}.tmp-{_unique()}")
        tmp.mkdir(parents=True)
        generate(tmp)
        (tmp / MARKER).write_text(json.dumps(spec, sort_keys=True, indent=2) + "\n")
        shutil.rmtree(final, ignore_errors=True)  # a folder without marker is incomplete
        os.rename(tmp, final)
    return final


def prepare_main(
    argv: list[str],
    *,
    prog: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    params: Callable[[argparse.Namespace], Spec],
    generate: Callable[[Spec], Callable[[Path], None]],
    label: str | None = None,
) -> Path:
    """A benchmark's ``prepare.py``: build the dataset that ``argv`` (main.py's argv) selects.

    prepare.py receives main.py's whole command line; only ``--seed`` and the options that
    ``add_arguments`` declares matter here, the rest is ignored. Prints
    ``<label> ready in <folder>`` (``label`` defaults to the spec's dataset name).
    """
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--seed", type=int, default=0)
    add_arguments(parser)
    args, _ = parser.parse_known_args(argv)
    spec = params(args)
    path = materialise(spec, generate(spec))
    print(f"{label or spec['dataset']} ready in {path}")
    return path
