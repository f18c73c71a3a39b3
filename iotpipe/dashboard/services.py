"""What the HTTP routes need from the running dashboard, wired once by ``create_app``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import current_app

from iotpipe.counters import Counters
from iotpipe.dashboard.live import Hub
from iotpipe.dashboard.store import Store
from iotpipe.dashboard.writer import Health

if TYPE_CHECKING:
    from iotpipe.dashboard.alerts import Alerts
    from iotpipe.dashboard.board_requests import BoardRequests


@dataclass
class Services:
    store: Store
    hub: Hub
    counters: Counters
    mqtt_connected: Callable[[], bool] = lambda: False
    gauges: Callable[[], dict[str, float]] = dict
    board_requests: BoardRequests | None = None
    command_timeout: float = 5.0
    alerts: Alerts | None = None
    store_health: Callable[[], Health] = lambda: Health("ok")
    subscribed: Callable[[], bool] = lambda: False


def current_services() -> Services:
    """The running dashboard's services, for a route in any blueprint."""
    found: Services = current_app.extensions["iotpipe"]
    return found
