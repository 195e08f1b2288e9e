"""Run until SIGINT or SIGTERM: the one way `send`, `serve` and `sandbox` stop on a signal.

Standard library only, so that the sandbox (which shares no code with what it tests) and serve
can use it without importing Click.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def until_stopped(on_signal: Callable[[], object] | None = None) -> Iterator[asyncio.Event]:
    """While the block runs, SIGINT and SIGTERM set the event it is given (and call
    `on_signal`, e.g. a task's `cancel`) instead of their default actions; after the block,
    the defaults again. Call it from inside the running event loop."""
    stop = asyncio.Event()

    def stopped() -> None:
        stop.set()
        if on_signal is not None:
            on_signal()

    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stopped)
    try:
        yield stop
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
