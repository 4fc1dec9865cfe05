"""Bounded YAML: nesting depth, alias expansion and file size checked before anything is built.

PyYAML composes and constructs recursively and expands aliases without limit, so a few
hundred bytes can take gigabytes (an alias bomb) or a RecursionError (10k-deep nesting).
``check`` walks the parser's event stream, which is iterative, and refuses such a document
with ``file:line`` before the recursive stages ever see it.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from orchestrator import limits
from orchestrator.errors import ConfigError

_OPEN = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSE = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def read_text(path: Path, *, max_bytes: int = limits.MAX_YAML_BYTES) -> str:
    """The text of ``path``, refused past ``max_bytes`` without reading the rest."""
    try:
        with open(path, "rb") as f:
            raw = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(raw) > max_bytes:
        raise ConfigError(
            f"{path}: larger than {max_bytes} bytes (limits.MAX_YAML_BYTES)",
            hint="a suite file is a few kB; split it with include:",
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read (not UTF-8: {exc.reason})") from None


def _where(path: Path | str, event: yaml.Event) -> str:
    mark = event.start_mark
    return f"{path}:{mark.line + 1}" if mark is not None else str(path)


def check(text: str, path: Path | str) -> None:
    """Refuse ``text`` if it nests deeper than MAX_YAML_DEPTH, if its aliases would add more
    than MAX_YAML_ALIAS_NODES nodes once expanded, or if an alias refers to its own anchor.

    Parse errors propagate as ``yaml.MarkedYAMLError`` for the caller to report.
    """
    sizes: dict[str, int] = {}
    # per open collection: nodes inside it so far (expanded), and its anchor
    stack: list[list[int | str | None]] = []
    added = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, _OPEN):
            if len(stack) >= limits.MAX_YAML_DEPTH:
                raise ConfigError(
                    f"{_where(path, event)}: nested deeper than {limits.MAX_YAML_DEPTH} levels "
                    "(limits.MAX_YAML_DEPTH)"
                )
            stack.append([1, event.anchor])
            continue
        if isinstance(event, _CLOSE):
            count, anchor = stack.pop()
            assert isinstance(count, int)
            if isinstance(anchor, str):
                sizes[anchor] = count
            size = count
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor:
                sizes[event.anchor] = 1
            size = 1
        elif isinstance(event, yaml.AliasEvent):
            if any(item[1] == event.anchor for item in stack):
                raise ConfigError(
                    f"{_where(path, event)}: alias *{event.anchor} refers to a node that contains it"
                )
            size = sizes.get(str(event.anchor), 1)
            added += size
            if added > limits.MAX_YAML_ALIAS_NODES:
                raise ConfigError(
                    f"{_where(path, event)}: aliases expand to more than "
                    f"{limits.MAX_YAML_ALIAS_NODES} nodes (limits.MAX_YAML_ALIAS_NODES)",
                    hint="an alias bomb, or write the repeated settings out",
                )
        else:
            continue
        if stack:
            top = stack[-1][0]
            assert isinstance(top, int)
            stack[-1][0] = top + size
