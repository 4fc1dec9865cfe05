"""Every size cap on untrusted input in one table: files, YAML, plans, bundles and archives.

Each limit is far above what a real suite, run or bundle needs and far below what exhausts
a workstation; an input past one is refused with a one-line error naming the limit.
"""

from __future__ import annotations

from typing import Final

#: Bytes of one YAML file (suite, lock, reference, settings): the standard suite is ~30 kB.
MAX_YAML_BYTES: Final = 2 * 2**20
#: Nesting of YAML collections: suites nest five deep; Python's recursion limit is ~1,000.
MAX_YAML_DEPTH: Final = 64
#: Nodes that aliases (``*name``) may add to a YAML document once expanded: defeats alias bombs.
MAX_YAML_ALIAS_NODES: Final = 10_000
#: Benchmarks in one suite, after includes.
MAX_BENCHMARKS: Final = 1_000
#: Jobs of one plan (``njobs`` × benchmarks, devices × per-GPU benchmarks).
MAX_JOBS: Final = 10_000
#: Devices of one plan (``--devices``): the largest nodes hold 16 accelerators.
MAX_DEVICES: Final = 1_024
#: Bytes of one file read from a bundle or archive before it is parsed: a job's events file of
#: a long run is a few MB, and 64 MB of JSON lines already take ~500 MB as Python objects.
MAX_MEMBER_BYTES: Final = 64 * 2**20
#: Bytes of small metadata files of a bundle (manifest, meta.json, images.json, lock, suite).
MAX_METADATA_BYTES: Final = 16 * 2**20
#: Uncompressed ÷ compressed size of one archive member: real JSON lines compress ~10-30×.
MAX_COMPRESSION_RATIO: Final = 200
#: Characters of one line read from an archive member or a results file.
MAX_LINE_CHARS: Final = 1 << 20
