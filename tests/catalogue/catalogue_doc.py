"""The tables of docs/catalogue.md, rendered from the bench.yaml files and the suites.

`python tests/catalogue/catalogue_doc.py` rewrites them; test_parity.py fails when the document
and the data disagree. Each table sits between `<!-- generated: NAME ... -->` and
`<!-- end of NAME -->` markers; the prose around them is written by hand.
"""

from __future__ import annotations

import sys
from typing import Any

import parity
import yaml

DOC = parity.ROOT / "docs" / "catalogue.md"
SUITES = parity.BENCHMARKS / "suites"
MAIN_HEADER = [
    "| benchmark | domain | model (parameters) | library | unit of work | weight | status | definition |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
]


def _begin(name: str) -> str:
    return f"<!-- generated: {name} (python tests/catalogue/catalogue_doc.py) -->"


def _end(name: str) -> str:
    return f"<!-- end of {name} -->"


def _folders() -> dict[str, dict[str, Any]]:
    return {
        p.parent.name: yaml.safe_load(p.read_text())
        for p in sorted(parity.BENCHMARKS.glob("*/bench.yaml"))
        if "benchmarks" in yaml.safe_load(p.read_text())
    }


def _suite_order(name: str) -> list[str]:
    return list(yaml.safe_load((SUITES / f"{name}.yaml").read_text())["benchmarks"])


def _status(meta: dict[str, Any], entry: dict[str, Any]) -> str:
    return str(entry.get("status", meta["status"]))


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _entries() -> dict[str, tuple[str, dict[str, Any], dict[str, Any]]]:
    """Benchmark name → (folder, folder metadata, entry), in suite order, then the rest."""
    found = {
        name: (folder, meta, entry)
        for folder, meta in _folders().items()
        for name, entry in meta["benchmarks"].items()
    }
    order = [*_suite_order("standard"), *_suite_order("precision"), *sorted(found)]
    return {name: found[name] for name in dict.fromkeys(order) if name in found}


def _row(name: str, folder: str, meta: dict[str, Any], entry: dict[str, Any]) -> str:
    cells = [
        f"`{name}`",
        meta["domain"],
        entry["model"],
        meta["library"],
        f"{meta['unit_of_work']} ({meta['unit']})",
        _number(entry["weight"]),
        _status(meta, entry),
        f"[`{folder}`](../benchmarks/{folder})",
    ]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def main_table(scored: bool) -> str:
    rows = [_row(n, f, m, e) for n, (f, m, e) in _entries().items() if (e["weight"] > 0) == scored]
    return "\n".join([*MAIN_HEADER, *rows])


def sizes_table() -> str:
    lines = [
        "| definition | benchmarks | tiny (CPU, seconds) | full (what `--profile full` runs; the parity table says which entries match Milabench) |",
        "| --- | --- | --- | --- |",
    ]
    folders = _folders()
    seen: list[str] = []
    for _, (folder, meta, _entry) in _entries().items():
        if folder not in seen and meta["status"] == "ready" and "tiny" in meta:
            seen.append(folder)
    for folder in seen:
        meta = folders[folder]
        ready = [n for n, e in meta["benchmarks"].items() if _status(meta, e) == "ready"]
        names = ", ".join(f"`{n}`" for n in ready)
        link = f"[`{folder}`](../benchmarks/{folder})"
        lines.append(f"| {link} | {names} | {_cell(meta['tiny'])} | {_cell(meta['full'])} |")
    return "\n".join(lines)


def planned_table() -> str:
    lines = ["| benchmark | weight | reason |", "| --- | --- | --- |"]
    for name, (_, meta, entry) in _entries().items():
        if _status(meta, entry) == "planned":
            reason = entry.get("reason", meta.get("reason"))
            lines.append(f"| `{name}` | {_number(entry['weight'])} | {_cell(reason)} |")
    return "\n".join(lines)


TABLES = {
    "main suite": lambda: main_table(scored=True),
    "optional benchmarks": lambda: main_table(scored=False),
    "sizes": sizes_table,
    "planned": planned_table,
    "parity": parity.render,
}


def section(name: str, text: str | None = None) -> str:
    """The table ``name`` as it stands in ``text`` (the document by default)."""
    text = DOC.read_text() if text is None else text
    if _begin(name) not in text or _end(name) not in text:
        return ""
    return text.split(_begin(name), 1)[1].split(_end(name), 1)[0].strip()


def write_doc() -> None:
    text = DOC.read_text()
    for name, render in TABLES.items():
        head, rest = text.split(_begin(name), 1)
        _, tail = rest.split(_end(name), 1)
        text = f"{head}{_begin(name)}\n{render()}\n{_end(name)}{tail}"
    DOC.write_text(text)


if __name__ == "__main__":
    write_doc()
    sys.stdout.write(f"wrote the tables of {DOC}\n")
