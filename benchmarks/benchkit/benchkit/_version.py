"""The harness version, reported in every ``start`` event."""

__version__ = "0.1.0"
