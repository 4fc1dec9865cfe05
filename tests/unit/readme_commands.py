"""Every ``mbctl …`` command written in README.md and docs/*.md, extracted as a reader would paste it."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_SPAN = re.compile(r"`(mbctl [^`]+)`")
_FENCE = re.compile(r"^\s*(```|~~~)")
#: A synopsis, not a command: placeholders (RUN, BUNDLE, F...), ellipses or alternatives.
_PLACEHOLDER = re.compile(r"…|\.\.\.|\||(^|\s)\[?[A-Z][A-Z0-9_]*\]?(\s|$)|<[a-z]")


@dataclass(frozen=True)
class Command:
    text: str
    where: str
    """``file:line`` of its first appearance."""

    @property
    def synopsis(self) -> bool:
        return bool(_PLACEHOLDER.search(self.text))

    @property
    def argv(self) -> list[str]:
        """The arguments after ``mbctl`` (``~`` expanded by no one: it stays literal)."""
        return shlex.split(self.text)[1:]

    @property
    def subcommand(self) -> list[str]:
        """``run``, ``render compose``, ``lock verify``...: the words before the first option."""
        words = []
        for word in self.argv:
            if word.startswith("-") or not re.fullmatch(r"[a-z][a-z0-9-]*", word):
                break
            words.append(word)
        return words[:2] if words[:1] in (["render"], ["lock"]) else words[:1]


def _clean(text: str) -> str:
    text = text.split(" #", 1)[0].strip()
    return re.sub(r"\s+", " ", text.replace("\\|", "|"))


def extract(paths: list[Path] = DOCS) -> list[Command]:
    """Commands in code blocks (``$ `` prompts and ``\\`` continuations joined) and in inline
    code spans, each once, in reading order."""
    found: dict[str, Command] = {}
    for path in paths:
        lines = path.read_text().splitlines()
        fenced = False
        i = 0
        while i < len(lines):
            line, where = lines[i], f"{path.relative_to(ROOT)}:{i + 1}"
            i += 1
            if _FENCE.match(line):
                fenced = not fenced
                continue
            if fenced:
                body = line.strip().removeprefix("$ ").strip()
                if not body.startswith("mbctl "):
                    continue
                while body.endswith("\\") and i < len(lines):
                    body = body[:-1] + " " + lines[i].strip()
                    i += 1
                text = _clean(body)
                found.setdefault(text, Command(text, where))
                continue
            for match in _SPAN.finditer(line):
                text = _clean(match.group(1))
                found.setdefault(text, Command(text, where))
    return list(found.values())
