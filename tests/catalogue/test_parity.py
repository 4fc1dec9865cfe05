"""Parity with Milabench v1 is data: each bench.yaml `parity` block is checked against the
recorded Milabench suite (references/milabench-v1-suite.yaml) and our suites' full profile.

Schema: docs/catalogue.md, "Parity with Milabench". A drift on either side (Milabench's argv as
recorded, or our full-profile argv) fails here.
"""

from __future__ import annotations

from typing import Any

import catalogue_doc
import parity
import pytest
from test_catalogue_metadata import REPORT_MAIN

from orchestrator import config

#: Scored (weight > 0) entries of `standard` whose bench.yaml does not declare parity yet. Each
#: helper aligning a benchmark adds its `parity` block and removes the name here; the list must
#: end empty (the lead removes it at merge when it is).
PARITY_KEYS = {"milabench", "argv", "options", "deviation"}
ROW_KEYS = {"milabench", "ours", "value", "why"}
#: Milabench's plan → ours (config.PlanSpec kind and n).
PLANS = {
    "per_gpu": ("per_gpu", 1),
    "per_gpu n=1 nodes=1": ("per_gpu", 1),
    "per_gpu nodes=1": ("per_gpu", 1),
    "njobs n=1": ("njobs", 1),
    "njobs n=1 nodes=1": ("njobs", 1),
    "njobs n=1 nodes=2": ("nodes", 2),
}
SUITES = ("standard", "precision")


def _suite(name: str) -> config.Suite:
    return config.load_suite(parity.BENCHMARKS / "suites" / f"{name}.yaml", profile="full")


def _in_suites() -> dict[str, list[config.Benchmark]]:
    found: dict[str, list[config.Benchmark]] = {}
    for name in SUITES:
        for bench in _suite(name).benchmarks:
            found.setdefault(bench.name, []).append(bench)
    return found


def _with_parity() -> list[str]:
    return sorted(n for n, d in parity.declared().items() if d.parity is not None)


def test_reference_is_milabench_v1_with_the_report_main_suite() -> None:
    entries = parity.reference()
    assert len(entries) == 46
    scored = {n: e.get("report_weight", e["weight"]) for n, e in entries.items() if e["weight"]}
    assert scored == REPORT_MAIN
    assert all(
        set(e) <= {"weight", "report_weight", "plan", "definition", "argv", "workload"}
        for e in entries.values()
    )


def test_every_scored_entry_declares_parity() -> None:
    declared = parity.declared()
    scored = [b for b in _suite("standard").benchmarks if b.weight > 0]
    missing = {b.name for b in scored if b.name not in declared or declared[b.name].parity is None}
    assert missing == set(), "scored without a parity block"


def _check_row(
    option: str, row: Any, milabench: dict[str, Any], ours: list[dict[str, Any]]
) -> list[str]:
    if not isinstance(row, dict) or not set(row) <= ROW_KEYS or "milabench" not in row:
        return [f"{option}: a row is {{milabench, ours[, value] | why}}, got {row!r}"]
    problems = []
    if not parity.same(row["milabench"], milabench[option]):
        problems.append(
            f"{option}: recorded {row['milabench']!r}, Milabench has {milabench[option]!r}"
        )
    if row.get("ours") is None:
        if not row.get("why") or "value" in row:
            problems.append(f"{option}: no counterpart (ours: null) needs `why` and no `value`")
        return problems
    want = row.get("value", row["milabench"])
    for argv in ours:
        got = argv.get(row["ours"])
        if got is None or not parity.same(got, want):
            problems.append(f"{option} → {row['ours']}: full profile has {got!r}, want {want!r}")
    return problems


@pytest.mark.parametrize("name", _with_parity())
def test_parity_block_matches_milabench_and_our_full_profile(name: str) -> None:
    item = parity.declared()[name]
    block = item.parity
    assert block is not None and set(block) == PARITY_KEYS, f"{name}: keys {PARITY_KEYS}"
    reference = parity.reference()
    assert block["milabench"] in reference, f"{name}: unknown Milabench entry {block['milabench']}"
    entry = reference[block["milabench"]]
    assert block["argv"] == entry["argv"], f"{name}: argv is not Milabench's verbatim"
    deviation = block["deviation"]
    assert deviation is None or (isinstance(deviation, str) and "\n" not in deviation.strip())

    benches = _in_suites().get(name, [])
    assert benches, f"{name} declares parity but is in no suite"
    milabench = parity.parse_argv(entry["argv"])
    rows = block["options"] or {}
    assert set(rows) == set(milabench), f"{name}: every Milabench option needs a row"
    ours = [parity.options(b.command_args()) for b in benches]
    problems = [p for option, row in rows.items() for p in _check_row(option, row, milabench, ours)]
    assert not problems, f"{name}: {problems}"

    for bench in benches:
        assert bench.definition == item.folder, name
        assert (bench.plan.kind.value, bench.plan.n) == PLANS[entry["plan"]], f"{name}: plan"
        assert bench.weight == entry.get("report_weight", entry["weight"]), f"{name}: weight"


def test_parser_reads_milabench_argv_forms() -> None:
    assert parity.parse_argv('ppo --n auto({cpu_per_gpu}, 128) --flag --x 1 a.b=2 repo="x/y"') == {
        "$1": "ppo",
        "--n": "auto({cpu_per_gpu}, 128)",
        "--flag": True,
        "--x": "1",
        "a.b": "2",
        "repo": '"x/y"',
    }
    assert parity.options(["--tf32", "--m", "8", "--m", "9"]) == {"--tf32": True, "--m": "9"}
    assert parity.same(256, "256") and parity.same(True, True) and not parity.same(0.01, "0.1")


@pytest.mark.parametrize("table", sorted(catalogue_doc.TABLES))
def test_catalogue_doc_tables_are_in_sync(table: str) -> None:
    rendered = catalogue_doc.TABLES[table]()
    assert catalogue_doc.section(table) == rendered, "run `python tests/catalogue/catalogue_doc.py`"
