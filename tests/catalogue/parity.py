"""Parity data: each bench.yaml's `parity` blocks against Milabench's v1 suite (references/).

Shared by tests/catalogue/test_parity.py and catalogue_doc.py (the parity table of
docs/catalogue.md). The schema is in docs/catalogue.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"
REFERENCE = ROOT / "references" / "milabench-v1-suite.yaml"


def reference() -> dict[str, dict[str, Any]]:
    """Milabench's v1 entries by name."""
    entries: dict[str, dict[str, Any]] = yaml.safe_load(REFERENCE.read_text())["entries"]
    return entries


#: One word of a Milabench argv: quoted strings and parenthesised groups (``auto({n_worker}, 8)``)
#: stay inside the word they belong to.
WORD = re.compile(r'(?:"[^"]*"|\([^)]*\)|[^\s"(])+')


def parse_argv(argv: str) -> dict[str, Any]:
    """Milabench's argv text → option: value (see :func:`options`)."""
    return options(WORD.findall(argv))


def options(words: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Command-line words → option: value, the last one winning.

    ``--flag`` followed by another option (or nothing) is True; ``key=value`` (Hydra and
    torchtune overrides) is ``key``; any other word is positional ``$1``, ``$2``...
    """
    found: dict[str, Any] = {}
    positional = 0
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("--"):
            if i + 1 < len(words) and not words[i + 1].startswith("--"):
                found[word] = words[i + 1]
                i += 2
                continue
            found[word] = True
        elif "=" in word:
            key, value = word.split("=", 1)
            found[key] = value
        else:
            positional += 1
            found[f"${positional}"] = word
        i += 1
    return found


def same(a: Any, b: Any) -> bool:
    """Equal as command-line text: YAML reads 256 as int and 0.01 as float, argv holds strings."""

    def text(v: Any) -> str:
        return str(v).lower() if isinstance(v, bool) else str(v)

    return text(a) == text(b)


@dataclass(frozen=True)
class Declared:
    """One benchmark entry of a bench.yaml with its parity block (None when not declared)."""

    name: str
    folder: str
    entry: dict[str, Any]
    parity: dict[str, Any] | None


def declared() -> dict[str, Declared]:
    """Every bench.yaml benchmark entry of the catalogue, by name."""
    found: dict[str, Declared] = {}
    for path in sorted(BENCHMARKS.glob("*/bench.yaml")):
        meta = yaml.safe_load(path.read_text())
        for name, entry in (meta.get("benchmarks") or {}).items():
            found[name] = Declared(name, path.parent.name, entry, entry.get("parity"))
    return found


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _value(row: dict[str, Any]) -> str:
    milabench = row.get("milabench")
    shown = "flag" if milabench is True else f"`{milabench}`"
    if row.get("ours") is None:
        return f"{shown} → none ({row['why']})"
    ours = row.get("value", milabench)
    ours_shown = "" if ours is True else f" `{ours}`"
    return f"{shown} → `{row['ours']}`{ours_shown}"


def render() -> str:
    """The parity table of docs/catalogue.md, from the bench.yaml parity blocks."""
    lines = [
        "| benchmark | Milabench entry | definition | Milabench option → our full-profile option | deviation |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, item in sorted(declared().items()):
        if item.parity is None:
            continue
        rows = "; ".join(
            f"`{option}` {_value(row)}" for option, row in item.parity["options"].items()
        )
        deviation = item.parity.get("deviation") or "none"
        lines.append(
            f"| `{name}` | `{item.parity['milabench']}` | [`{item.folder}`](../benchmarks/"
            f"{item.folder}) | {_cell(rows)} | {_cell(deviation)} |"
        )
    return "\n".join(lines)
