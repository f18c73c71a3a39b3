"""Starting, watching and stopping a set of child processes (used by `iotpipe up`).

Children start in order, each waited for until it is ready; a child that dies is
restarted after a pause that doubles each time (so a broken one does not spin); on stop,
every child gets SIGTERM in reverse order, then SIGKILL if it has not gone in time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from iotpipe.errors import UserError

STOP_TIMEOUT_S = 10.0
RESTART_MAX_S = 30.0


@dataclass
class Child:
    name: str
    argv: list[str]
    ready: Callable[[], bool]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)  # added to ours; for secrets, not argv
    restarts: int = 0
    restart_at: float = 0.0
    uptime_start: float = field(default=0.0)

    def spawn(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env} if self.env else None,
                # Own process group: a Ctrl-C in the terminal reaches `up` alone, which
                # then stops the children in the right order.
                start_new_session=True,
            )
        self.uptime_start = time.monotonic()

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def tail(self, lines: int = 8) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("    " + line for line in text[-lines:])

    def stop(self) -> None:
        if not self.alive():
            return
        assert self.popen is not None
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


class Supervisor:
    def __init__(self, say: Callable[[str], None] = print) -> None:
        self.children: list[Child] = []
        self.say = say

    def start(self, child: Child, timeout: float, what: str) -> None:
        self.children.append(child)
        child.spawn()
        deadline = time.monotonic() + timeout
        while not child.ready():
            if not child.alive():
                raise UserError(
                    f"{child.name} exited at start-up (log {child.log}):\n{child.tail()}"
                )
            if time.monotonic() > deadline:
                raise UserError(
                    f"{child.name} was not ready after {timeout:.0f} s "
                    f"(log {child.log}):\n{child.tail()}"
                )
            time.sleep(0.05)
        self.say(f"  ✓ {child.name:<12} {what}")

    def watch_once(self) -> None:
        """Restart any child that died, after its backoff."""
        now = time.monotonic()
        for child in self.children:
            if child.alive():
                if now - child.uptime_start > RESTART_MAX_S:
                    child.restarts = 0  # it ran long enough: forgive earlier crashes
                continue
            if child.restart_at == 0.0:
                delay = min(2.0**child.restarts, RESTART_MAX_S)
                child.restart_at = now + delay
                code = child.popen.returncode if child.popen else None
                self.say(
                    f"  ✗ {child.name} exited ({code}); restarting in {delay:.0f} s — "
                    f"log {child.log}:\n{child.tail()}"
                )
            elif now >= child.restart_at:
                child.restarts += 1
                child.restart_at = 0.0
                child.spawn()
                self.say(f"  ↻ {child.name} restarted")

    def stop_all(self) -> None:
        for child in reversed(self.children):
            child.stop()


def iotpipe_argv(*args: str) -> list[str]:
    """Run a sub-command with this same interpreter, whatever PATH says.

    ``-P``: without it ``python -m`` puts the working directory first on ``sys.path``, so
    inside a clone its bare ``iotpipe/`` folder (which lacks ``iotpipe.dashboard`` and the
    rest, mapped in only by the install) would shadow the installed package."""
    return [sys.executable, "-P", "-m", "iotpipe", *args]
