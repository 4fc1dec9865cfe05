"""The consoles every command prints to: results on stdout, diagnostics on stderr."""

from __future__ import annotations

from rich.console import Console

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
