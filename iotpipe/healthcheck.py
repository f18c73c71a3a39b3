"""The container health check (the Dockerfile's HEALTHCHECK): ``python -m iotpipe.healthcheck``.

It reads the command line of the container's main process (PID 1), parses it with the
CLI's own parser (so flags, environment and config file count exactly as they did for
that process) and asks the part how it is:

- ``dashboard``: ``GET /healthz`` answers ``"ok": true`` and ``"subscribed": true``
  (its subscriptions granted: from then on the broker keeps every reading for it, so what
  starts after a healthy dashboard loses nothing);
- ``bridge`` with ``--metrics HOST:PORT``: ``/metrics`` says it is connected to the broker,
  which it is once its board has spoken (so a bridge still waiting for its board shows as
  unhealthy in ``docker compose ps``); without ``--metrics``, running is healthy;
- anything else: healthy while it runs.

Exit status 0 when healthy, 1 (with the reason on stdout, which docker keeps) otherwise.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from iotpipe.endpoints import HostPort

TIMEOUT_S = 4.0


def command_line(cmdline: bytes) -> list[str]:
    """The iotpipe arguments in a /proc/PID/cmdline: after ``…/iotpipe`` or ``-m iotpipe``."""
    argv = [a.decode(errors="replace") for a in cmdline.split(b"\0") if a]
    for i, arg in enumerate(argv):
        if Path(arg).name == "iotpipe":
            return argv[i + 1 :]
    return []


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
        body: bytes = response.read()
        return body


def check(argv: Sequence[str]) -> str | None:
    """None when healthy, else what is wrong."""
    from iotpipe.cli import build_parser

    if not argv:
        return None
    args = build_parser(argv).parse_args(argv)
    command = getattr(args, "command_module", "")
    try:
        if command == "iotpipe.commands.dashboard":
            http: HostPort = args.http
            health = json.loads(_get(http.url + "healthz"))
            if not health.get("ok"):
                return "the dashboard says it is not ok"
            if not health.get("subscribed"):
                return "the dashboard is not subscribed at the broker (yet)"
        elif command == "iotpipe.commands.bridge" and args.metrics is not None:
            text = _get(args.metrics.url + "metrics").decode()
            if "iotpipe_bridge_mqtt_connected 1" not in text:
                return "the bridge is not publishing: no board on its port yet, or no broker"
    except (OSError, ValueError) as exc:
        return f"{command}: {exc}"
    return None


def main() -> int:
    try:
        argv = command_line(Path("/proc/1/cmdline").read_bytes())
    except OSError:
        argv = []
    problem = check(argv)
    if problem:
        print(problem)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
