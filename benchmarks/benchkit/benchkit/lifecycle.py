"""A benchmark's lifetime: start event, telemetry, errors as events, prompt exit on signals."""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Callable

from ._version import __version__
from .device import DeviceMismatch, device_facts
from .distributed import relaunch_under_torchrun, silence_other_ranks
from .protocol import Emitter, default_emitter
from .telemetry import start_telemetry

EXIT_ERROR = 1


class Terminated(BaseException):
    """Raised in the main thread when the orchestrator sends SIGTERM (timeout, cancel)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"received signal {signum}")
        self.signum = signum


def versions() -> dict[str, str]:
    """Interpreter, platform and the versions of frameworks the benchmark already imported.

    Only modules already in ``sys.modules`` are asked: importing torch to report it would cost
    seconds (and a CUDA context check) in a JAX benchmark.
    """
    found = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "benchkit": __version__,
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        found["torch"] = torch.__version__
        for key in ("cuda", "hip"):
            value = getattr(torch.version, key, None)
            if value:
                found[key] = str(value)
    for name in ("jax", "jaxlib", "numpy"):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "__version__"):
            found[name] = str(module.__version__)
    return found


def _raise_terminated(signum: int, _frame: Any) -> None:
    # A second SIGTERM while cleaning up kills at once instead of being swallowed.
    signal.signal(signum, signal.SIG_DFL)
    raise Terminated(signum)


@contextmanager
def session(
    bench: str,
    *,
    argv: Sequence[str] | None = None,
    telemetry: float | None = 2.0,
    emitter: Emitter | None = None,
) -> Iterator[None]:
    """Run a benchmark body: emit ``start``, sample GPUs every ``telemetry`` seconds, and exit.

    An exception becomes an ``error`` event (traceback on stderr) and exit status 1; Ctrl-C and
    SIGTERM exit at once with 130/143 (the orchestrator knows it asked). A body that returns
    without a loop having emitted ``end`` gets ``end`` status ``done``.
    """
    out = default_emitter() if emitter is None else emitter
    ends = out.counts.get("end", 0)
    # Installed first: a SIGTERM during start-up (importing pynvml can take a while) must exit
    # through the same path as one during the measurements.
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main else None
    monitor = None
    try:
        # What the job runs on, checked against the plan before anything is measured; a
        # mismatch still gets its start event, then fails as an error event.
        mismatch: DeviceMismatch | None = None
        try:
            device = device_facts()
        except DeviceMismatch as exc:
            device, mismatch = None, exc
        fields: dict[str, Any] = {"device": device} if device is not None else {}
        out.emit(
            "start",
            bench=bench,
            argv=list(sys.argv if argv is None else argv),
            versions=versions(),
            pid=os.getpid(),
            **fields,
        )
        if mismatch is not None:
            raise mismatch
        # One sampler per node is enough: the other ranks of a torchrun job see the same GPUs.
        if telemetry and os.environ.get("LOCAL_RANK", "0") == "0":
            monitor = start_telemetry(telemetry)
        yield
    except Terminated as exc:
        raise SystemExit(128 + exc.signum) from None
    except KeyboardInterrupt:
        raise SystemExit(128 + signal.SIGINT) from None
    except DeviceMismatch as exc:
        # a plan/host mismatch, not a bug: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        out.emit("error", message=str(exc), type=type(exc).__name__)
        raise SystemExit(EXIT_ERROR) from None
    except Exception as exc:
        traceback.print_exc()
        out.emit("error", message=str(exc) or type(exc).__name__, type=type(exc).__name__)
        raise SystemExit(EXIT_ERROR) from exc
    else:
        if out.counts.get("end", 0) == ends:
            out.emit("end", status="done")
    finally:
        if monitor is not None:
            monitor.stop()
        if in_main:
            # None means a handler installed outside Python; the default is the closest match.
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def main(
    train: Callable[[argparse.Namespace], object],
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None = None,
    *,
    telemetry: float | None = 2.0,
) -> None:
    """Parse the command line and run ``train(args)`` inside a :func:`session` named ``parser.prog``."""
    args = parser.parse_args(argv)
    with session(
        parser.prog, argv=None if argv is None else [parser.prog, *argv], telemetry=telemetry
    ):
        train(args)


def ddp_main(
    train: Callable[[argparse.Namespace], object],
    parser: argparse.ArgumentParser,
    *,
    telemetry: float | None = 2.0,
) -> None:
    """:func:`main` for a data-parallel benchmark whose parser has ``--devices``.

    Replaces the process by torchrun when ``--devices`` (or a multi-node job) asks for more than
    one worker, sends the stdout of ranks other than 0 to /dev/null (only rank 0 speaks the
    metrics protocol), then runs ``train(args)`` in every worker. Reads ``sys.argv``: torchrun
    starts the workers with the same command line.
    """
    relaunch_under_torchrun(parser.parse_args().devices)
    silence_other_ranks()
    main(train, parser, telemetry=telemetry)
