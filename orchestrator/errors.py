"""The error hierarchy: every failure the CLI reports as one line, with its exit code."""

from __future__ import annotations


class OrchestratorError(Exception):
    """Base of every error mbctl reports to a user; ``exit_code`` follows STYLE.md."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(OrchestratorError):
    """A suite, override, selection or other user input is wrong (usage/config)."""

    exit_code = 2


class UsageError(ConfigError):
    """A command-line option is wrong or contradicts another one."""


class BackendUnavailable(OrchestratorError):
    """The chosen backend (Docker engine, cluster, ...) cannot be reached."""

    exit_code = 3


class ImageError(OrchestratorError):
    """An image could not be rendered, built, pushed, pulled or verified."""

    exit_code = 4


class BenchmarkFailed(OrchestratorError):
    """One or more benchmarks failed; their results are still written."""

    exit_code = 1


class ResultsError(OrchestratorError):
    """A run folder, bundle or result file is missing, unreadable or malformed."""

    exit_code = 2
