"""The shared wait helper: returns what the predicate found, fails naming what was awaited."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.wait import process_alive, wait_for


def test_wait_for_returns_the_first_truthy_value():
    calls: list[None] = []

    def third_time_lucky():
        calls.append(None)
        return {"found": len(calls)} if len(calls) == 3 else None

    assert wait_for(third_time_lucky, timeout=60, interval=0) == {"found": 3}
    assert len(calls) == 3


def test_wait_for_fails_naming_what_was_awaited_and_the_last_value():
    calls: list[None] = []

    def never():
        calls.append(None)
        return []

    with pytest.raises(AssertionError, match=r"waited 0 s for the alias to move; last value: \[\]"):
        wait_for(never, timeout=0, message="the alias to move")
    assert len(calls) == 1  # looked once before giving up


def test_process_alive_sees_a_running_process_and_not_a_finished_one():
    assert process_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    assert process_alive(child.pid)
    child.communicate(b"")
    assert not process_alive(child.pid)
