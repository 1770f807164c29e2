"""Waiting for Ctrl-C or SIGTERM without taking a lock in a signal handler.

A Python signal handler runs in the main thread between two bytecodes of whatever it is doing.
When that is ``threading.Event.wait`` (pure Python over a plain, non-reentrant ``Lock``), the
handler can run while the main thread holds the event's lock: a handler that calls ``set()`` then
waits for that lock forever, and a default SIGINT handler raises ``KeyboardInterrupt`` at that spot
instead. So the handlers here only flip a flag, and the waiting loop only sleeps (a sleep is cut short
by a signal) and reads flags (``Event.is_set`` takes no lock).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Set by SIGINT / SIGTERM while ``catching()`` is active; read by ``wait()``."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.signal is None:
            self.signal = signum
        else:  # asked twice: the default behaviour (KeyboardInterrupt, or exit for SIGTERM) from now on
            signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)

    @contextmanager
    def catching(self) -> Iterator[StopRequest]:
        """Catch the stop signals for the block (main thread only; elsewhere, a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.signal(s, self._on_signal) for s in STOP_SIGNALS}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def wait(self, also: threading.Event | None = None, interval: float = 0.2) -> None:
        """Return once a stop signal arrived (or ``also`` is set)."""
        while self.signal is None and not (also is not None and also.is_set()):
            time.sleep(interval)
