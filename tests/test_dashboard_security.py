"""Who may change state through the dashboard: a command needs the API token or the login
session with its CSRF header, a cross-site POST is refused, commands are rate-limited —
against the real dashboard process, the real broker and a real MQTT responder."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from iotpipe.dashboard.auth import COMMANDS_PER_MINUTE, RateLimit
from tests import test_dashboard_support as support
from tests.conftest import Broker, Procs
from tests.test_dashboard_api import Responder, _known
from tests.test_dashboard_support import Publisher, http, start_dashboard

publisher = support.publisher  # fixture


@pytest.fixture
def responder(broker: Broker) -> Iterator[Responder]:
    made = Responder(broker)
    yield made
    made.close()


@pytest.fixture
def dash(
    procs: Procs, broker: Broker, publisher: Publisher, tmp_path: Path
) -> support.RunningDashboard:
    running = start_dashboard(procs, broker, tmp_path / "dash")
    _known(publisher, running, "dev-s")
    return running


def _session_cookie(dash: support.RunningDashboard) -> str:
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        opener.open(f"{dash.url}/login?token={dash.token}", timeout=5)
    except urllib.error.HTTPError as err:
        assert err.code == 303
        cookie = err.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    return cookie.split(";")[0]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def test_a_command_without_credentials_is_401_and_reaches_no_board(
    dash: support.RunningDashboard, responder: Responder
) -> None:
    url = dash.url + "/api/devices/dev-s/commands"
    status, body = http(url, {"cmd": "read"})
    assert status == 401 and "log in" in body["error"]
    status, _ = http(url, {"cmd": "read"}, token="wrong")
    assert status == 401
    time.sleep(0.5)
    assert responder.requests == []
    status, body = http(url, {"cmd": "read"}, token=dash.token)
    assert status == 200, body
    assert len(responder.requests) == 1


def test_a_forged_cross_site_post_is_refused(
    dash: support.RunningDashboard, responder: Responder
) -> None:
    url = dash.url + "/api/devices/dev-s/commands"
    cookie = _session_cookie(dash)
    # What a form on another site can send: the victim's cookie, but not our header.
    status, _ = http(url, {"cmd": "read"}, headers={"Cookie": cookie})
    assert status == 401
    evil = {"Cookie": cookie, "X-Iotpipe-CSRF": "1", "Origin": "http://evil.example"}
    status, body = http(url, {"cmd": "read"}, headers=evil)
    assert status == 403 and "cross-site" in body["error"]
    time.sleep(0.5)
    assert responder.requests == []
    ours = {"Cookie": cookie, "X-Iotpipe-CSRF": "1", "Origin": dash.url}
    status, body = http(url, {"cmd": "read"}, headers=ours)
    assert status == 200, body


def test_login_with_a_wrong_token_is_refused(dash: support.RunningDashboard) -> None:
    status, _ = http(f"{dash.url}/login?token=guess")
    assert status == 403


def test_commands_are_rate_limited_per_client(dash: support.RunningDashboard) -> None:
    url = dash.url + "/api/devices/nobody/commands"
    codes = [http(url, {"cmd": "read"}, token=dash.token)[0] for _ in range(COMMANDS_PER_MINUTE)]
    assert set(codes) == {404}
    status, body = http(url, {"cmd": "read"}, token=dash.token)
    assert status == 429 and "commands a minute" in body["error"]


def test_an_oversized_body_is_413(dash: support.RunningDashboard) -> None:
    url = dash.url + "/api/devices/dev-s/commands"
    status, _ = http(url, {"cmd": "read", "args": {"x": "a" * 20_000}}, token=dash.token)
    assert status == 413


def test_the_rate_limit_forgets_old_events_and_bounds_its_memory() -> None:
    limit = RateLimit(2, window=10)
    assert limit.allow("a", 0) and limit.allow("a", 1) and not limit.allow("a", 2)
    assert limit.allow("a", 10.5)
    for n in range(5000):
        limit.allow(f"c{n}", 20)
    assert len(limit.seen) <= 1024


def test_the_page_sends_security_headers(dash: support.RunningDashboard) -> None:
    with urllib.request.urlopen(dash.url + "/", timeout=5) as response:
        headers = response.headers
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
