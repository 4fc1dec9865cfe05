"""The consoles every command prints to: results on stdout, diagnostics on stderr."""

from __future__ import annotations

import os

from rich.console import Console

#: Width when writing to a pipe or a CI log with no ``COLUMNS``, where rich would otherwise
#: squeeze tables into 80 columns; ``COLUMNS`` (set by the user or the CI) always wins.
PIPE_WIDTH = 160

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
for _console in (out, err):
    if not _console.is_terminal and not os.environ.get("COLUMNS", "").isdigit():
        _console.width = PIPE_WIDTH
