"""The consoles every command prints to: results on stdout, diagnostics on stderr.

Each is made on first use, so commands that print nothing through rich (``--help``) never
import it: start-up time.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from rich.console import Console

#: Width when writing to a pipe or a CI log with no ``COLUMNS``, where rich would otherwise
#: squeeze tables into 80 columns; ``COLUMNS`` (set by the user or the CI) always wins.
PIPE_WIDTH = 160


class _Lazy:
    """Stands for a rich Console, created with ``stderr`` on the first attribute asked."""

    def __init__(self, *, stderr: bool) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    def _get(self) -> Console:
        if self._console is None:
            from rich.console import Console

            console = Console(stderr=self._stderr, highlight=False)
            if not console.is_terminal and not os.environ.get("COLUMNS", "").isdigit():
                console.width = PIPE_WIDTH
            self._console = console
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)

    # special methods are looked up on the type, not through __getattr__ (rich's Live uses these)
    def __enter__(self) -> Console:
        return self._get().__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._get().__exit__(*exc)


out = cast("Console", _Lazy(stderr=False))
err = cast("Console", _Lazy(stderr=True))
