"""A board on Wi-Fi and a board on serial, side by side: `iotpipe up --virtual 1
--virtual-wifi 1` with the locked broker, the firmware in both transports under the real
MicroPython unix port, the real dashboard and (for the page) headless Chromium."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Proc, Procs, free_port, wait_until
from tests.test_dashboard_browser import page  # noqa: F401  (fixture)
from tests.test_dashboard_support import http

BOARDS = {"virtual-1", "wifi-1"}


@dataclass
class Up:
    proc: Proc
    url: str
    data: Path

    def devices(self) -> dict[str, dict[str, Any]]:
        status, listed = http(self.url + "api/devices")
        assert status == 200
        return {d["id"]: d for d in listed}


@pytest.fixture
def up(procs: Procs, tmp_path: Path) -> Iterator[Up]:
    http_port, data = free_port(), tmp_path / "data"
    proc = procs.iotpipe(
        "up", "up", "--virtual", "1", "--virtual-wifi", "1", "--rate", "5",
        "--mqtt-port", str(free_port()), "--http", f"127.0.0.1:{http_port}", "--data", str(data),
    )  # fmt: skip
    wait_until(lambda: "Press Ctrl-C" in proc.output() or proc.popen.poll() is not None, 90, "up")
    assert proc.popen.poll() is None, proc.output()
    running = Up(proc, f"http://127.0.0.1:{http_port}/", data)
    wait_until(
        lambda: (
            all(d.get("last") and d.get("meta") for d in running.devices().values())
            and set(running.devices()) == BOARDS
        ),
        30,
        "both boards' readings and meta in the dashboard",
    )
    yield running
    proc.popen.send_signal(signal.SIGINT)
    assert proc.popen.wait(30) == 0


def test_a_wifi_board_and_a_serial_board_reach_the_dashboard_alike(up: Up) -> None:
    out = up.proc.output()
    assert "first reading from wifi-1" in out and "first reading from virtual-1" in out
    # The Wi-Fi board logs in as itself: its own user, made in the broker's data.
    login = json.loads((up.data / "broker/credentials/boards/wifi-1.json").read_text())
    assert login["user"] == "iotpipe-board-wifi-1" and login["device"] == "wifi-1"

    devices = up.devices()
    for device in BOARDS:
        d = devices[device]
        assert d["status"] == "online" and d["late"] is False
        assert set(d["metrics"]) == {"temperature", "humidity"}
        assert d["units"] == {"temperature": "°C", "humidity": "%"}
        assert d["meta"]["interval_ms"] == 200 and d["meta"]["board"] == "unix"

    # "Read now" from the dashboard reaches both: through the bridge, and straight to the
    # Wi-Fi board over MQTT 3.1.1 (its answer to the request's reply_to, allowed by its ACL).
    token = (up.data / "dashboard" / "api-token").read_text().strip()
    for device in sorted(BOARDS):
        status, answer = http(
            f"{up.url}api/devices/{device}/commands", {"cmd": "read"}, token=token
        )
        assert status == 200, answer
        assert answer["ok"] is True and set(answer["result"]["metrics"]) == {
            "temperature",
            "humidity",
        }


@pytest.mark.browser
def test_the_page_shows_both_boards_in_one_chart(up: Up, page: Any) -> None:  # noqa: F811
    page.goto(up.url)
    page.wait_for_function("() => document.querySelector('#conn').textContent === 'live'")
    page.wait_for_function(
        "() => { const d = document.getElementById('chart-temperature');"
        " return d && d.data && d.data.length === 2; }"
    )
    traces = page.evaluate(
        "() => document.getElementById('chart-temperature').data.map((t) => t.name)"
    )
    assert set(traces) == BOARDS
    for device in BOARDS:
        card = page.locator(f"article.card[data-device='{device}']")
        assert card.locator(".status").text_content() == "online"
    # Both keep coming live, without a reload.
    before = page.evaluate(
        "() => document.getElementById('chart-temperature').data.map((t) => t.x.length)"
    )
    page.wait_for_function(
        "(before) => document.getElementById('chart-temperature').data"
        ".every((t, i) => t.x.length > before[i])",
        arg=before,
    )
