"""The ``mbctl`` Typer app: global options, command registration, one place that turns errors into exits."""

from __future__ import annotations

import os
import signal
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from orchestrator.errors import OrchestratorError


class _Group(TyperGroup):
    """Prints an OrchestratorError as one ``error:`` line with its exit code (traceback with --debug)."""

    def invoke(self, ctx: Any) -> Any:  # typer vendors click: its Context is private
        try:
            return super().invoke(ctx)
        except OrchestratorError as exc:
            if os.environ.get("MBCTL_DEBUG"):
                raise
            from orchestrator.cli.console import err

            err.print(f"[bold red]error:[/] {_escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


app = typer.Typer(
    cls=_Group,
    name="mbctl",
    help="Benchmark AI accelerators with one container per benchmark, scored like Milabench.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish)
    # Plain help: no rich/markdown import for --help (start-up time), and brackets in help
    # texts (HOST[:PORT]) are text, never markup.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from orchestrator import __version__

        typer.echo(f"mbctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    if debug:
        os.environ["MBCTL_DEBUG"] = "1"


def _register() -> None:
    from orchestrator.cli import (
        compose,
        containers,
        doctor,
        images,
        info,
        k8s,
        render,
        reporting,
        running,
        submission,
    )

    info.register(app)
    running.register(app)
    reporting.register(app)
    render.register(app)
    k8s.register(app)
    compose.register(app)
    images.register(app)
    containers.register(app)
    submission.register(app)
    doctor.register(app)


_register()


def main() -> None:
    # SIGTERM (e.g. from a CI timeout or `kill`) gets the same clean stop as Ctrl-C
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
