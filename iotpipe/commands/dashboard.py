"""`iotpipe dashboard`: flags here; the heavy parts load inside ``run`` (the dashboard
itself is put together in ``iotpipe/dashboard/daemon.py``)."""

from __future__ import annotations

import argparse

from iotpipe.mqttlogin import SETTINGS as LOGIN_SETTINGS
from iotpipe.settings import add_settings


def configure(parser: argparse.ArgumentParser) -> None:
    add_settings(
        parser,
        *LOGIN_SETTINGS,
        "base-topic",
        "http",
        "data",
        "store",
        "history",
        "retention",
        "share-group",
        "alerts",
        "public-url",
        "alert-retry",
        "http-threads",
        "command-timeout",
        "log-level",
    )


def run(args: argparse.Namespace) -> int:
    from iotpipe.dashboard import daemon

    daemon.run(args)
    return 0
