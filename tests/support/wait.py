"""Waiting in tests for what the system does asynchronously, and checking processes are gone.

``timeout`` is a bound on how long to keep looking, never an assertion about speed: pick it large
enough for a slow, shared machine. Absence ("nothing happened") cannot be awaited this way; prove
the system processed the input (wait for a positive event) before asserting that something did
not happen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float = 30.0,
    interval: float = 0.1,
    message: str = "the condition",
) -> T:
    """Call ``predicate`` until it returns a truthy value, and return that value.

    Fails the test (AssertionError) after ``timeout`` seconds, naming ``message`` (what was
    awaited) and the last value seen. The predicate runs at least once, even with ``timeout=0``.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout:g} s for {message}; last value: {value!r}")
        time.sleep(interval)


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not reaped yet) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # The state letter follows the parenthesised command name, which may itself hold spaces.
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
