"""`sklambda serve` as a user runs it: a process of its own, its banner read as it is printed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.helpers import ROOT
from tests.support.wait import process_alive, wait_for

CLI = [sys.executable, "-m", "sklambda_dev.cli"]


@dataclass
class Served:
    proc: subprocess.Popen[str]
    env: dict[str, str]
    lines: list[str] = field(default_factory=list)  # every line so far (a reader thread appends)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    @property
    def api(self) -> str:
        found = re.search(r"API\s+(http://127\.0\.0\.1:\d+)", self.output)
        assert found, "serve printed no API URL:\n" + self.output
        return found.group(1)

    @property
    def state_file(self) -> Path:
        return Path(self.env["SKLAMBDA_STATE_FILE"])

    def workers(self) -> list[int]:
        """The function workers (children in sessions of their own, outside the process group)."""
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def interrupt(self) -> int:
        """Ctrl-C, as a terminal sends it to the foreground process group; the exit status."""
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(timeout=120)

    def kill(self) -> None:
        """kill -9 the server and its workers: no exit handler runs anywhere."""
        workers = self.workers()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=60)
        for pid in workers:
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not [p for p in workers if process_alive(p)], timeout=60, message=f"workers {workers} gone")


def start_serve(state_file: Path, *args: str, timeout: float = 300.0) -> Served:
    """Start `sklambda serve --port 0 ARGS` with its state next to ``state_file``; return once it serves."""
    env = {**os.environ, "SKLAMBDA_STATE_FILE": str(state_file), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", "0", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    served = Served(proc, env)
    assert proc.stdout is not None
    stdout = proc.stdout

    def read() -> None:  # always, so a full pipe never blocks the server
        for line in stdout:
            served.lines.append(line)

    threading.Thread(target=read, daemon=True).start()

    def ready() -> bool:
        assert proc.poll() is None or "Ctrl-C stops it" in served.output, "serve exited:\n" + served.output
        return "Ctrl-C stops it" in served.output

    try:
        wait_for(ready, timeout=timeout, interval=0.1, message="the serve banner")
    except BaseException:
        served.kill()
        raise
    return served
