"""The consoles every command prints to: results on stdout, diagnostics on stderr."""

from __future__ import annotations

from rich.console import Console

#: Width when writing to a pipe or a CI log, where rich would otherwise squeeze tables into 80 columns.
PIPE_WIDTH = 160

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
for _console in (out, err):
    if not _console.is_terminal:
        _console.width = PIPE_WIDTH
