"""Making a running broker read its password file and ACL again, without a restart.

Mosquitto reloads ``password_file`` and ``acl_file`` on SIGHUP. It writes its pid to
``DATA/mosquitto.pid`` (``pid_file`` in the locked config) *after* switching to the user
the config names, and reads the password file and the ACL as that user too (Mosquitto
2.0.11, tried as root with ``user nobody``): so the data directory must stay writable, and
the files readable, by the broker's user (``iotpipe/broker/auth.py`` keeps their owner). It removes
the pid file when it exits cleanly; after a crash or SIGKILL the file stays behind and its
number may be reused, so the process it names must be a mosquitto started with this data
directory's config before it gets a signal.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

PID_FILE = "mosquitto.pid"
CONFIG_FILE = "mosquitto.conf"  # what `iotpipe broker` writes and starts Mosquitto with


@dataclass(frozen=True, slots=True)
class Outcome:
    reloaded: bool
    message: str


def pid_path(data: Path) -> Path:
    return data.resolve() / PID_FILE


def running_pid(data: Path) -> int | None:
    """The pid of the live Mosquitto that runs this data directory's config, else None."""
    try:
        pid = int(pid_path(data).read_text().strip())
    except (OSError, ValueError):
        return None
    argv = _command_line(pid)
    if not argv or not Path(argv[0]).name.startswith("mosquitto"):
        return None
    return pid if any(Path(arg).name == CONFIG_FILE for arg in argv[1:]) else None


def _command_line(pid: int) -> list[str]:
    proc = Path(f"/proc/{pid}/cmdline")
    if Path("/proc/self").exists():
        try:
            return [a for a in proc.read_bytes().decode(errors="replace").split("\0") if a]
        except OSError:
            return []
    try:  # no /proc (macOS, BSD): ask ps
        done = subprocess.run(
            ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return done.stdout.split()


def reload(data: Path, change: str) -> Outcome:
    """SIGHUP to the broker running with ``data``, or what to do instead; ``change`` names
    what the reload is for, e.g. "the new login"."""
    pid = running_pid(data)
    if pid is None:
        return Outcome(
            False,
            f"no broker is running with {data}: {change} takes effect when "
            f"`iotpipe broker --data {data}` starts",
        )
    try:
        os.kill(pid, signal.SIGHUP)
    except PermissionError:
        return Outcome(
            False,
            f"the broker (pid {pid}) runs as another user — make it reload with "
            f"`sudo kill -HUP {pid}`, or restart it",
        )
    except ProcessLookupError:
        return Outcome(
            False, f"the broker (pid {pid}) just stopped: {change} takes effect at its next start"
        )
    return Outcome(True, f"told the running broker (pid {pid}) to reload its logins (SIGHUP)")
