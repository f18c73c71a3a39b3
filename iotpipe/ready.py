"""``iotpipe-ready``: wait until the dashboard is connected and subscribed on the broker.

The dashboard's systemd unit runs it as ``ExecStartPost=``: systemd counts the dashboard
as started only once it returns, and the bridge unit is ordered after the dashboard. So
on the very first start the dashboard's broker session — its subscriptions, which the
broker keeps from then on, also across dashboard restarts — exists before a board's first
reading is published, and the broker keeps every reading for it.

The dashboard's address comes from the same settings as the dashboard's own (``--http``'s
environment variable ``IOTPIPE_HTTP``, the configuration file, the default).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from collections.abc import Sequence

from iotpipe.endpoints import HostPort

TIMEOUT_S = 60.0
POLL_S = 0.25


def subscribed(http: HostPort) -> str | None:
    """None once ``/healthz`` says the dashboard is on the broker, else why not yet."""
    try:
        with urllib.request.urlopen(http.url + "healthz", timeout=5) as response:
            health = json.loads(response.read())
    except (OSError, ValueError) as exc:
        return f"the dashboard at {http.url} does not answer ({exc})"
    if not health.get("subscribed"):
        return f"the dashboard at {http.url} is not subscribed at its broker yet"
    return None


def wait(http: HostPort, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    while (problem := subscribed(http)) is not None and time.monotonic() < deadline:
        time.sleep(POLL_S)
    return problem


def main(argv: Sequence[str] | None = None) -> int:
    from iotpipe.cli import build_parser

    own = argparse.ArgumentParser(prog="iotpipe-ready", description=__doc__.splitlines()[0])
    own.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds (default 60)")
    timeout = own.parse_args(argv).timeout
    http: HostPort = build_parser(["dashboard"]).parse_args(["dashboard"]).http
    problem = wait(http, timeout)
    if problem is not None:
        print(f"iotpipe-ready: after {timeout:g} s, {problem} — its log says why")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
